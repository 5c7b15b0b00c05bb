package gpio

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// relay runs an output on line 27 of a fake chip.
func relay(t *testing.T, edit func(c *Config)) (*Output, *fakeOutput, *outlet) {
	t.Helper()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) {
		c.Line, c.Direction = 27, DirectionOutput
		if edit != nil {
			edit(c)
		}
	}).(*Output)
	out := run(t, d)
	line := fake.output(t, 27)
	out.wait(t, 1) // the initial value
	return d, line, out
}

func TestOutputInitial(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		initial   int
		activeLow bool
	}{
		{name: "off", initial: 0},
		{name: "on", initial: 1},
		{name: "off, active low", initial: 0, activeLow: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, line, out := relay(t, func(c *Config) { c.Initial, c.ActiveLow = tt.initial, tt.activeLow })
			// The request itself drives the initial value: no other level
			// first.
			if h := line.history(); !slices.Equal(h, []bool{tt.initial == 1}) {
				t.Fatalf("levels %v", h)
			}
			if want := (lineOptions{Consumer: "wsgate:dev", ActiveLow: tt.activeLow, Bias: "as-is"}); line.opts != want {
				t.Fatalf("requested with %+v, want %+v", line.opts, want)
			}
			checkFrames(t, out.all(), []published{{tt.initial, "", -1}}, nil)
		})
	}
}

func TestOutputCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		command   string
		args      string
		want      protocols.Result
		wantLevel bool
	}{
		{name: "get", command: "get", want: ok(`{"value":0}`)},
		{name: "set 1", command: "set", args: `{"value":1}`, want: ok(`{"value":1}`), wantLevel: true},
		{name: "set true", command: "set", args: `{"value":true}`, want: ok(`{"value":1}`), wantLevel: true},
		{name: "set bare true", command: "set", args: `true`, want: ok(`{"value":1}`), wantLevel: true},
		{name: "set bare 1", command: "set", args: `1`, want: ok(`{"value":1}`), wantLevel: true},
		{name: "set on", command: "set", args: `{"value":"on"}`, want: ok(`{"value":1}`), wantLevel: true},
		{name: "set 0", command: "set", args: `{"value":0}`, want: ok(`{"value":0}`)},
		{name: "set without args", command: "set", want: fail(`args: want {"value":0|1}`)},
		{name: "set 2", command: "set", args: `{"value":2}`, want: fail(`args: "{\"value\":2}" is not 0, 1, true, false, on or off`)},
		{name: "set other key", command: "set", args: `{"state":1}`, want: fail(`args: "{\"state\":1}": want {"value": 0|1|true|false|"on"|"off"}`)},
		{name: "pulse without args", command: "pulse", want: fail(`args: want {"ms":N}, N from 1 to 10000`)},
		{name: "pulse string", command: "pulse", args: `{"ms":"100"}`, want: fail(`args: want {"ms":N}, N from 1 to 10000`)},
		{name: "pulse other key", command: "pulse", args: `{"ms":100,"times":2}`, want: fail(`args: want {"ms":N}, N from 1 to 10000`)},
		{name: "pulse 0", command: "pulse", args: `{"ms":0}`, want: fail(`args: ms 0 is not from 1 to 10000 (max_pulse)`)},
		{name: "pulse too long", command: "pulse", args: `{"ms":10001}`, want: fail(`args: ms 10001 is not from 1 to 10000 (max_pulse)`)},
		{name: "unknown", command: "toggle", want: fail("unknown command")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, line, _ := relay(t, nil)
			got := d.Command(context.Background(), protocols.Command{ID: "c", Name: tt.command, Args: json.RawMessage(tt.args)})
			checkResult(t, got, tt.want)
			if line.level() != tt.wantLevel {
				t.Fatalf("level %v, want %v", line.level(), tt.wantLevel)
			}
		})
	}
}

// Changes are published once each; setting the value it has publishes
// nothing.
func TestOutputPublishesChanges(t *testing.T) {
	t.Parallel()
	d, _, out := relay(t, nil)
	ctx := context.Background()
	for _, args := range []string{"1", "1", "0", "0", "1"} {
		if res := d.Command(ctx, protocols.Command{Name: "set", Args: json.RawMessage(args)}); !res.OK {
			t.Fatal(res.Error)
		}
	}
	checkFrames(t, out.wait(t, 4), []published{{0, "", -1}, {1, "", -1}, {0, "", -1}, {1, "", -1}}, nil)
}

func TestOutputPulse(t *testing.T) {
	t.Parallel()
	d, line, out := relay(t, nil)
	res := d.Command(context.Background(), protocols.Command{ID: "p", Name: "pulse", Args: json.RawMessage(`{"ms":30}`)})
	checkResult(t, res, protocols.Result{ID: "p", OK: true, Data: json.RawMessage(`{"value":0,"ms":30}`)})
	if h := line.history(); !slices.Equal(h, []bool{false, true, false}) {
		t.Fatalf("levels %v, want off, on, off", h)
	}
	checkFrames(t, out.wait(t, 3), []published{{0, "", -1}, {1, "", -1}, {0, "", -1}}, nil)
}

// A pulse on a line that is already active leaves it inactive.
func TestOutputPulseFromActive(t *testing.T) {
	t.Parallel()
	d, line, _ := relay(t, func(c *Config) { c.Initial = 1 })
	res := d.Command(context.Background(), protocols.Command{ID: "p", Name: "pulse", Args: json.RawMessage(`{"ms":1}`)})
	checkResult(t, res, protocols.Result{ID: "p", OK: true, Data: json.RawMessage(`{"value":0,"ms":1}`)})
	if line.level() {
		t.Fatal("the line is still active")
	}
}

// A pulse is refused when the command's timeout would cut it short.
func TestOutputPulseLongerThanTimeout(t *testing.T) {
	t.Parallel()
	d, line, _ := relay(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	res := d.Command(ctx, protocols.Command{ID: "p", Name: "pulse", Args: json.RawMessage(`{"ms":10000}`)})
	checkResult(t, res, fail("a pulse of 10s would outlast the command timeout"))
	if h := line.history(); len(h) != 1 {
		t.Fatalf("levels %v: the line moved", h)
	}
}

// The pulse's context ending (the command timeout, the gateway stopping)
// sets the line inactive at once.
func TestOutputPulseCancelled(t *testing.T) {
	t.Parallel()
	d, line, _ := relay(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan protocols.Result, 1)
	go func() {
		done <- d.Command(ctx, protocols.Command{ID: "p", Name: "pulse", Args: json.RawMessage(`{"ms":10000}`)})
	}()
	waitFor(t, "the pulse", line.level)
	cancel()
	checkResult(t, <-done, fail("pulse cut short, line set inactive: context canceled"))
	if h := line.history(); !slices.Equal(h, []bool{false, true, false}) {
		t.Fatalf("levels %v, want off, on, off", h)
	}
}

// A set or Accept during a pulse ends it; the later value stays.
func TestOutputPulseSuperseded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(d *Output) error
		want   bool
	}{
		{name: "set on", want: true, change: func(d *Output) error {
			if res := d.Command(context.Background(), protocols.Command{Name: "set", Args: json.RawMessage(`1`)}); !res.OK {
				return errors.New(res.Error)
			}
			return nil
		}},
		{name: "accept off", want: false, change: func(d *Output) error {
			return d.Accept(protocols.Frame{Payload: []byte("off")})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, line, _ := relay(t, nil)
			done := make(chan protocols.Result, 1)
			go func() {
				done <- d.Command(context.Background(), protocols.Command{ID: "p", Name: "pulse", Args: json.RawMessage(`{"ms":10000}`)})
			}()
			waitFor(t, "the pulse", line.level)
			if err := tt.change(d); err != nil {
				t.Fatal(err)
			}
			var res protocols.Result
			select {
			case res = <-done:
			case <-time.After(deadline):
				t.Fatal("the pulse did not end")
			}
			checkResult(t, res, protocols.Result{ID: "p", OK: true, Data: json.RawMessage(`{"value":` + map[bool]string{true: "1", false: "0"}[tt.want] + `,"ms":10000}`)})
			if line.level() != tt.want {
				t.Fatalf("level %v, want %v", line.level(), tt.want)
			}
		})
	}
}

// Stopping the device during a pulse releases the line inactive.
func TestOutputStopEndsPulse(t *testing.T) {
	t.Parallel()
	fake := newFakeChip()
	d := device(t, fake, func(c *Config) { c.Line, c.Direction = 27, DirectionOutput }).(*Output)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- d.Run(ctx, &outlet{}) }()
	line := fake.output(t, 27)
	done := make(chan protocols.Result, 1)
	go func() {
		done <- d.Command(context.Background(), protocols.Command{ID: "p", Name: "pulse", Args: json.RawMessage(`{"ms":10000}`)})
	}()
	waitFor(t, "the pulse", line.level)
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("Run did not return")
	}
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("the pulse did not end")
	}
	if h := line.history(); !slices.Equal(h, []bool{false, true, false}) || !line.isClosed() {
		t.Fatalf("levels %v, closed %v: want off, on, off and released", h, line.isClosed())
	}
	if res := d.Command(context.Background(), protocols.Command{Name: "set", Args: json.RawMessage(`1`)}); res.Error != errNotRunning.Error() {
		t.Fatalf("set after Run: %+v", res)
	}
	if err := d.Accept(protocols.Frame{Payload: []byte("1")}); !errors.Is(err, errNotRunning) {
		t.Fatalf("Accept after Run: %v", err)
	}
}

func TestOutputAccept(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload string
		want    bool
		wantErr string
	}{
		{payload: "1", want: true},
		{payload: "0"},
		{payload: "true", want: true},
		{payload: "false"},
		{payload: "on", want: true},
		{payload: "OFF"},
		{payload: " On\n", want: true},
		{payload: `"on"`, want: true},
		{payload: `"off"`},
		{payload: `"1"`, want: true},
		{payload: `{"value":1}`, want: true},
		{payload: `{"value":"on"}`, want: true},
		{payload: `{"value":false}`},
		{payload: "", wantErr: `invalid frame: "" is not 0, 1, true, false, on or off`},
		{payload: "2", wantErr: `invalid frame: "2" is not 0, 1, true, false, on or off`},
		{payload: "0.5", wantErr: `invalid frame: "0.5" is not 0, 1, true, false, on or off`},
		{payload: "maybe", wantErr: `invalid frame: "maybe" is not 0, 1, true, false, on or off`},
		{payload: `"yes"`, wantErr: `invalid frame: "\"yes\"" is not 0, 1, true, false, on or off`},
		{payload: `null`, wantErr: `invalid frame: "null" is not 0, 1, true, false, on or off`},
		{payload: `[1]`, wantErr: `invalid frame: "[1]" is not 0, 1, true, false, on or off`},
		{payload: `{"value":{"value":1}}`, wantErr: `invalid frame: "{\"value\":{\"value\":1}}" is not 0, 1, true, false, on or off`},
		{payload: `{"value":1,"at":2}`, wantErr: `invalid frame: "{\"value\":1,\"at\":2}": want {"value": 0|1|true|false|"on"|"off"}`},
	}
	d, line, _ := relay(t, nil)
	for _, tt := range tests {
		// Start from the other level, so that a value that is not set
		// shows.
		if err := d.Accept(protocols.Frame{Payload: []byte(map[bool]string{true: "0", false: "1"}[tt.want])}); err != nil {
			t.Fatal(err)
		}
		err := d.Accept(protocols.Frame{Channel: "state", Payload: []byte(tt.payload)})
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, protocols.ErrInvalidFrame) {
				t.Errorf("Accept(%q) = %v, want %s", tt.payload, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Accept(%q): %v", tt.payload, err)
			continue
		}
		if line.level() != tt.want {
			t.Errorf("Accept(%q): level %v, want %v", tt.payload, line.level(), tt.want)
		}
	}
}

// A failing line is reported, not hidden.
func TestOutputSetFails(t *testing.T) {
	t.Parallel()
	d, line, _ := relay(t, nil)
	line.mu.Lock()
	line.setErr = errors.New("set line value: no such device")
	line.mu.Unlock()
	res := d.Command(context.Background(), protocols.Command{ID: "s", Name: "set", Args: json.RawMessage(`1`)})
	checkResult(t, res, protocols.Result{ID: "s", Error: "set line value: no such device"})
	if err := d.Accept(protocols.Frame{Payload: []byte("1")}); err == nil {
		t.Fatal("Accept on a failing line succeeded")
	}
}

func ok(data string) protocols.Result {
	return protocols.Result{ID: "c", OK: true, Data: json.RawMessage(data)}
}

func fail(msg string) protocols.Result { return protocols.Result{ID: "c", Error: msg} }

func checkResult(t *testing.T, got, want protocols.Result) {
	t.Helper()
	if want.ID == "c" && got.ID == "p" {
		want.ID = "p"
	}
	if got.ID != want.ID || got.OK != want.OK || string(got.Data) != string(want.Data) || got.Error != want.Error {
		t.Fatalf("got %+v (data %s), want %+v (data %s)", got, got.Data, want, want.Data)
	}
}
