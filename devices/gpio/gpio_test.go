package gpio

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/devices/devicetest"
	"github.com/wsgate/wsgate/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deadline bounds every wait: generous, the machine may be loaded.
const deadline = 10 * time.Second

func TestRegistered(t *testing.T) {
	t.Parallel()
	nc, ok := devices.Lookup(Driver)
	if !ok {
		t.Fatalf("driver %q not registered", Driver)
	}
	c, ok := nc().(*Config)
	if !ok {
		t.Fatalf("NewConfig returns %T", nc())
	}
	if c.Chip != "gpiochip0" || c.Line != noLine || c.Name != "" || c.Direction != "input" || c.Edge != "both" ||
		c.Bias != "as-is" || c.Debounce != 20*time.Millisecond || c.Channel != "state" || c.QoS != 1 ||
		c.Initial != 0 || c.ActiveLow || c.MaxPulse != 10*time.Second {
		t.Fatalf("defaults %+v", *c)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config func(c *Config)
		want   []string // the joined errors, in order; none when valid
	}{
		{name: "line only", config: func(c *Config) { c.Line = 17 }},
		{name: "name only", config: func(c *Config) { c.Name = "GPIO17" }},
		{name: "output", config: func(c *Config) {
			c.Line, c.Direction, c.Initial, c.ActiveLow, c.Bias, c.QoS = 27, "output", 1, true, "disabled", 0
		}},
		{name: "chip path", config: func(c *Config) { c.Line, c.Chip = 0, "/dev/gpiochip4" }},
		{name: "no debounce", config: func(c *Config) { c.Line, c.Debounce, c.Edge = 4, 0, "falling" }},
		{name: "no line", config: func(c *Config) {}, want: []string{
			`line: required: the line's offset on the chip (17 for GPIO17 on a Raspberry Pi), or its name = "GPIO17"`,
		}},
		{name: "line and name", config: func(c *Config) { c.Line, c.Name = 17, "GPIO17" }, want: []string{
			`line: set line (an offset) or name, not both`,
		}},
		{name: "negative line", config: func(c *Config) { c.Line = -3 }, want: []string{
			`line: -3 is not a line offset`,
		}},
		{name: "zero config", config: func(c *Config) { *c = Config{} }, want: []string{
			`chip: required: a chip such as "gpiochip0"`,
			`direction: "" is not "input" or "output"`,
			`bias: "" is not "as-is", "pull-up", "pull-down" or "disabled"`,
			`edge: "" is not "rising", "falling" or "both"`,
			`max_pulse: must be at least 1ms, such as "10s", got 0s`,
			`channel: required`,
		}},
		{name: "everything wrong", config: func(c *Config) {
			*c = Config{Chip: "gpio0", Line: 17, Name: "GPIO17", Direction: "in", Bias: "up", Edge: "any",
				Debounce: 20, Initial: 2, MaxPulse: -1, Channel: "cmd/set", QoS: 2}
		}, want: []string{
			`chip: "gpio0" is neither a chip name such as "gpiochip0" nor a path such as "/dev/gpiochip0"`,
			`line: set line (an offset) or name, not both`,
			`direction: "in" is not "input" or "output"`,
			`bias: "up" is not "as-is", "pull-up", "pull-down" or "disabled"`,
			`edge: "any" is not "rising", "falling" or "both"`,
			`debounce: 20ns is less than 1ms; write a duration such as "20ms" (a bare number is nanoseconds), or "0s" for none`,
			`initial: must be 0 or 1, got 2`,
			`max_pulse: must be at least 1ms, such as "10s", got -1ns`,
			`channel: "cmd/set" starts with cmd or status, which belong to the gateway`,
			`qos: must be 0 or 1, got 2`,
		}},
		{name: "negative debounce", config: func(c *Config) { c.Line, c.Debounce = 17, -time.Millisecond }, want: []string{
			`debounce: -1ms is negative`,
		}},
		{name: "initial on input", config: func(c *Config) { c.Line, c.Initial = 17, 1 }, want: []string{
			`initial: applies to direction "output" only`,
		}},
		{name: "channel wildcard", config: func(c *Config) { c.Line, c.Channel = 17, "buttons/#" }, want: []string{
			`channel: "buttons/#" contains a wildcard or NUL`,
		}},
		{name: "channel empty level", config: func(c *Config) { c.Line, c.Channel = 17, "/state" }, want: []string{
			`channel: "/state" has an empty topic level`,
		}},
		{name: "channel status", config: func(c *Config) { c.Line, c.Channel = 17, "status" }, want: []string{
			`channel: "status" starts with cmd or status, which belong to the gateway`,
		}},
		{name: "channel dollar", config: func(c *Config) { c.Line, c.Channel = 17, "$state" }, want: []string{
			`channel: "$state" has a level starting with $`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			tt.config(c)
			got := devicetest.Problems(t, c)
			if g, w := strings.Join(got, "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("got:\n%s\nwant:\n%s", g, w)
			}
			if len(tt.want) == 0 {
				return
			}
			if _, err := c.Open("x", nil); err == nil {
				t.Fatal("Open accepted an invalid config")
			}
		})
	}
}

// TestSample decodes every [[devices]] entry of the sample strictly into
// a Config and validates it.
func TestSample(t *testing.T) {
	t.Parallel()
	entries := devicetest.Sample(t, Sample, Driver, NewConfig)
	if len(entries) != 2 {
		t.Fatalf("the sample has %d [[devices]], want a button and a relay", len(entries))
	}
	for _, e := range entries {
		// Against the fake chip, the button opens as an input and the
		// relay as an output.
		e.Config.open = newFakeChip().opener
		dev, err := e.Config.Open(e.ID, nil)
		if err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		if _, out := dev.(*Output); out != (e.Config.Direction == DirectionOutput) {
			t.Errorf("%s: opened as %T", e.ID, dev)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		config     func(c *Config)
		wantOffset int
		wantErr    string
	}{
		{name: "by offset", config: func(c *Config) { c.Line = 17 }, wantOffset: 17},
		{name: "by name", config: func(c *Config) { c.Name = "GPIO27" }, wantOffset: 27},
		{name: "chip by path", config: func(c *Config) { c.Chip, c.Line = "/dev/gpiochip0", 4 }, wantOffset: 4},
		{name: "unknown name", config: func(c *Config) { c.Name = "GPIO99" }, wantErr: `gpio: gpiochip0 has no line named "GPIO99"`},
		{name: "offset beyond the chip", config: func(c *Config) { c.Line = 28 }, wantErr: `gpio: gpiochip0 has 28 lines (0 to 27), not line 28`},
		{name: "missing chip", config: func(c *Config) { c.Chip, c.Line = "gpiochip9", 1 }, wantErr: `gpio: GPIO chip /dev/gpiochip9 does not exist: file does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeChip()
			c := NewConfig()
			c.open = fake.opener
			tt.config(c)
			dev, err := c.Open("dev", nil)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("got %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in := dev.(*Input)
			if in.offset != tt.wantOffset || in.opts.Consumer != "wsgate:dev" {
				t.Fatalf("offset %d, consumer %q", in.offset, in.opts.Consumer)
			}
			if fake.open != 1 || fake.shut != 1 {
				t.Fatalf("Open opened the chip %d times and closed it %d: it must hold nothing", fake.open, fake.shut)
			}
		})
	}
}

// Only outputs accept routed frames: the router refuses a route to an
// input when the config is loaded.
func TestOnlyOutputsReceive(t *testing.T) {
	t.Parallel()
	var in devices.Device = &Input{}
	var out devices.Device = &Output{}
	if _, ok := in.(devices.Receiver); ok {
		t.Error("an input is a Receiver")
	}
	if _, ok := out.(devices.Receiver); !ok {
		t.Error("an output is not a Receiver")
	}
}

func TestConsumer(t *testing.T) {
	t.Parallel()
	tests := []struct{ id, want string }{
		{"relay", "wsgate:relay"},
		{"a-very-long-device-identifier-for-a-relay", "wsgate:a-very-long-device-ident"},
	}
	for _, tt := range tests {
		if got := consumer(tt.id); got != tt.want || len(got) > maxNameSize-1 {
			t.Errorf("consumer(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

// device opens a device on a fake chip with the config set by edit.
func device(t *testing.T, fake *fakeChip, edit func(c *Config)) devices.Device {
	t.Helper()
	c := NewConfig()
	c.open = fake.opener
	edit(c)
	d, err := c.Open("dev", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run runs d until the test ends and checks that Run then returns nil.
func run(t *testing.T, d devices.Device) *outlet {
	t.Helper()
	out := &outlet{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(deadline):
			t.Error("Run did not return after its context ended")
		}
	})
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// outlet records the frames a device publishes.
type outlet struct {
	mu     sync.Mutex
	frames []protocols.Frame
}

func (o *outlet) SetOnline(bool) {}

func (o *outlet) Publish(f protocols.Frame) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.frames = append(o.frames, f)
	return nil
}

func (o *outlet) all() []protocols.Frame {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]protocols.Frame(nil), o.frames...)
}

// wait returns the frames once there are at least n.
func (o *outlet) wait(t *testing.T, n int) []protocols.Frame {
	t.Helper()
	waitFor(t, "frames", func() bool { return len(o.all()) >= n })
	return o.all()
}
