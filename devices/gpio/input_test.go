package gpio

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// published is a decoded state frame; At is the index of the burst whose
// first edge is its time, -1 for the value read at start.
type published struct {
	Value int
	Edge  string
	At    int
}

func TestInputEdges(t *testing.T) {
	t.Parallel()
	const R, F = true, false
	tests := []struct {
		name     string
		initial  bool
		edge     string
		debounce time.Duration
		bursts   [][]bool // each settles before the next starts
		want     []published
	}{
		{
			name:   "press and release with bounces",
			bursts: [][]bool{{R, F, R}, {F, R, F}},
			want:   []published{{0, "", -1}, {1, "rising", 0}, {0, "falling", 1}},
		},
		{
			name:    "starts high",
			initial: true,
			bursts:  [][]bool{{F}},
			want:    []published{{1, "", -1}, {0, "falling", 0}},
		},
		{
			name:   "a bounce that ends where it began is no change",
			bursts: [][]bool{{R, F}, {R, F, R, F}, {R}},
			want:   []published{{0, "", -1}, {1, "rising", 2}},
		},
		{
			name:   "rising only",
			edge:   "rising",
			bursts: [][]bool{{R}, {F, R, F}, {R, F, R}},
			want:   []published{{0, "", -1}, {1, "rising", 0}, {1, "rising", 2}},
		},
		{
			name:    "falling only",
			edge:    "falling",
			initial: true,
			bursts:  [][]bool{{F}, {R}, {F}},
			want:    []published{{1, "", -1}, {0, "falling", 0}, {0, "falling", 2}},
		},
		{
			name:     "no debounce",
			debounce: -1,
			bursts:   [][]bool{{R}, {F}, {R, F}, {R}},
			want:     []published{{0, "", -1}, {1, "rising", 0}, {0, "falling", 1}, {1, "rising", 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeChip()
			fake.levels[17] = tt.initial
			d := device(t, fake, func(c *Config) {
				c.Line = 17
				if tt.edge != "" {
					c.Edge = tt.edge
				}
				if tt.debounce < 0 {
					c.Debounce = 0
				}
			})
			out := run(t, d)
			line := fake.input(t, 17)
			starts := make([]time.Time, len(tt.bursts))
			base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
			line.settled(t, 1)
			for i, b := range tt.bursts {
				starts[i] = base.Add(time.Duration(i) * time.Second)
				line.burst(t, starts[i], b...)
				line.settled(t, 2+i)
			}
			frames := out.wait(t, len(tt.want))
			checkFrames(t, frames, tt.want, starts)
		})
	}
}

// Edges that come in several batches within the debounce period make one
// change, timed by its first edge.
func TestInputDebounceAcrossBatches(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) { c.Line, c.Debounce = 17, time.Second })
	out := run(t, d)
	line := fake.input(t, 17)
	line.settled(t, 1)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	line.burst(t, start, true)
	line.burst(t, start.Add(3*time.Millisecond), false)
	line.burst(t, start.Add(6*time.Millisecond), true, false, true)
	line.settled(t, 2)
	checkFrames(t, out.wait(t, 2), []published{{0, "", -1}, {1, "rising", 0}}, []time.Time{start})
}

// When the line cannot be read after an edge, the last edge tells the level.
func TestInputTrustsEdgesWhenReadFails(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) { c.Line = 17 })
	out := run(t, d)
	line := fake.input(t, 17)
	line.settled(t, 1)
	line.mu.Lock()
	line.valueErr = errors.New("read line value: input/output error")
	line.mu.Unlock()
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	line.burst(t, start, true, false, true)
	checkFrames(t, out.wait(t, 2), []published{{0, "", -1}, {1, "rising", 0}}, []time.Time{start})
}

func TestInputRequestOptions(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) { c.Name, c.Bias, c.ActiveLow = "GPIO17", "pull-up", true })
	run(t, d)
	line := fake.input(t, 17)
	want := lineOptions{Consumer: "wsgate:dev", ActiveLow: true, Bias: "pull-up"}
	if line.opts != want {
		t.Fatalf("requested with %+v, want %+v", line.opts, want)
	}
}

func TestInputCommands(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	fake.levels[17] = true
	d := device(t, fake, func(c *Config) { c.Line = 17 })
	ctx := context.Background()
	if res := d.Command(ctx, protocols.Command{ID: "0", Name: "get"}); res.OK || res.Error != errNotRunning.Error() {
		t.Fatalf("get before Run: %+v", res)
	}
	run(t, d)
	fake.input(t, 17).settled(t, 1)
	tests := []struct {
		command, args string
		want          protocols.Result
	}{
		{"get", "", protocols.Result{ID: "c", OK: true, Data: json.RawMessage(`{"value":1}`)}},
		{"set", `{"value":0}`, protocols.Result{ID: "c", Error: `"set" needs direction = "output"; this line is an input`}},
		{"pulse", `{"ms":100}`, protocols.Result{ID: "c", Error: `"pulse" needs direction = "output"; this line is an input`}},
		{"toggle", "", protocols.Result{ID: "c", Error: "unknown command"}},
	}
	for _, tt := range tests {
		got := d.Command(ctx, protocols.Command{ID: "c", Name: tt.command, Args: json.RawMessage(tt.args)})
		if got.ID != tt.want.ID || got.OK != tt.want.OK || string(got.Data) != string(tt.want.Data) || got.Error != tt.want.Error {
			t.Errorf("%s: got %+v (data %s), want %+v (data %s)", tt.command, got, got.Data, tt.want, tt.want.Data)
		}
	}
}

func TestInputRunFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(fake *fakeChip)
		fail    error // ReadEdges fails with it once running
		wantErr string
	}{
		{
			name: "line busy",
			setup: func(fake *fakeChip) {
				fake.requestErr = errors.New(`gpiochip0 line 17 is busy: used by "pigpio": device or resource busy`)
			},
			wantErr: `gpio: gpiochip0 line 17 is busy: used by "pigpio": device or resource busy`,
		},
		{
			name:    "edges cannot be read",
			fail:    errors.New("read gpiochip0 line 17: no such device"),
			wantErr: "gpio: reading edges of line 17: read gpiochip0 line 17: no such device",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeChip()
			d := device(t, fake, func(c *Config) { c.Line = 17 })
			if tt.setup != nil {
				tt.setup(fake)
			}
			done := make(chan error, 1)
			go func() { done <- d.Run(context.Background(), &outlet{}) }()
			if tt.fail != nil {
				line := fake.input(t, 17)
				line.settled(t, 1)
				line.fail(tt.fail)
				defer func() {
					if !line.isClosed() {
						t.Error("the line was not released")
					}
				}()
			}
			select {
			case err := <-done:
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Run: %v, want %s", err, tt.wantErr)
				}
			case <-time.After(deadline):
				t.Fatal("Run did not return")
			}
			if fake.open != fake.shut {
				t.Fatalf("chip opened %d times, closed %d", fake.open, fake.shut)
			}
		})
	}
}

// Run releases the line when its context ends.
func TestInputReleases(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) { c.Line = 17 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, &outlet{}) }()
	line := fake.input(t, 17)
	line.settled(t, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !line.isClosed() || fake.open != fake.shut {
		t.Fatalf("line closed %v, chip opened %d closed %d", line.isClosed(), fake.open, fake.shut)
	}
}

// checkFrames compares state frames with want; starts are the times of the
// bursts.
func checkFrames(t *testing.T, frames []protocols.Frame, want []published, starts []time.Time) {
	t.Helper()
	if len(frames) != len(want) {
		t.Fatalf("%d frames %s, want %d", len(frames), payloads(frames), len(want))
	}
	for i, f := range frames {
		if f.Channel != "state" || f.QoS != 1 || f.Retain {
			t.Errorf("frame %d on %q qos %d retain %v", i, f.Channel, f.QoS, f.Retain)
		}
		var got struct {
			Value *int    `json:"value"`
			Edge  *string `json:"edge"`
			Time  string  `json:"time"`
		}
		dec := json.NewDecoder(strings.NewReader(string(f.Payload)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil || got.Value == nil {
			t.Fatalf("frame %d: %s: %v", i, f.Payload, err)
		}
		w := want[i]
		edge := ""
		if got.Edge != nil {
			edge = *got.Edge
			if edge == "" {
				t.Errorf("frame %d: an empty edge is left out, not sent", i)
			}
		}
		at, err := time.Parse(time.RFC3339Nano, got.Time)
		if err != nil {
			t.Errorf("frame %d: time %q: %v", i, got.Time, err)
		}
		if *got.Value != w.Value || edge != w.Edge || (w.At >= 0 && !at.Equal(starts[w.At])) {
			t.Errorf("frame %d: %s, want value %d edge %q at %v", i, f.Payload, w.Value, w.Edge, w.At)
		}
	}
}

func payloads(frames []protocols.Frame) string {
	var s []string
	for _, f := range frames {
		s = append(s, string(f.Payload))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// A chip that is gone by the time the device runs is Run's error; the
// device manager runs the device again later.
func TestRunChipGone(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{DirectionInput, DirectionOutput} {
		fake := newFakeChip()
		c := NewConfig()
		c.Line, c.Direction = 17, dir
		opens := 0
		c.open = func(path string) (chip, error) {
			if opens++; opens > 1 {
				return nil, errors.New("GPIO chip /dev/gpiochip0 does not exist")
			}
			return fake.opener(path)
		}
		d, err := c.Open("dev", nil)
		if err != nil {
			t.Fatal(err)
		}
		err = d.Run(context.Background(), &outlet{})
		if err == nil || err.Error() != "gpio: GPIO chip /dev/gpiochip0 does not exist" {
			t.Fatalf("%s: Run: %v", dir, err)
		}
	}
}

// A frame the router refuses is logged; the input goes on.
func TestInputPublishRefused(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) { c.Line = 17 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, refusing{}) }()
	line := fake.input(t, 17)
	line.settled(t, 1)
	line.burst(t, time.Now(), true)
	line.settled(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type refusing struct{}

func (refusing) Publish(protocols.Frame) error { return protocols.ErrBusy }
func (refusing) SetOnline(bool)                {}
