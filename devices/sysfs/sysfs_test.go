package sysfs

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
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
	want := Config{Interval: 10 * time.Second, Parser: "raw", Channel: "value", QoS: 1, Scale: 1}
	if *c != want {
		t.Fatalf("defaults %+v, want %+v", *c, want)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config func(c *Config)
		want   []string // the joined errors, in order; none when valid
	}{
		{name: "path only", config: func(c *Config) { c.Path = "/sys/class/thermal/thermal_zone0/temp" }},
		{name: "pattern", config: func(c *Config) { c.Path = "/sys/bus/w1/devices/28-*/w1_slave"; c.Parser = ParserW1Slave }},
		{name: "number scaled", config: func(c *Config) {
			c.Path, c.Parser, c.Scale, c.Offset, c.Channel, c.QoS = "/x", ParserNumber, 0.5, -1, "sensors/battery", 0
		}},
		{name: "zero config", config: func(c *Config) { *c = Config{} }, want: []string{
			`path: required: the file to read, e.g. "/sys/class/thermal/thermal_zone0/temp"`,
			`interval: must be at least 10ms, got 0s`,
			`parser: "" is not one of "raw", "number", "thermal", "w1_slave"`,
			`channel: required`,
			`scale: must be a finite number other than 0, got 0`,
		}},
		{name: "everything wrong", config: func(c *Config) {
			*c = Config{Path: "temp", Interval: 10, Parser: "json", Channel: "status", QoS: 2, Scale: 2, Offset: 1}
		}, want: []string{
			`path: "temp" is not an absolute path`,
			`interval: must be at least 10ms, got 10ns`,
			`parser: "json" is not one of "raw", "number", "thermal", "w1_slave"`,
			`channel: "status" starts with cmd or status, which belong to the gateway`,
			`qos: must be 0 or 1, got 2`,
			`scale: applies to parser "number" only`,
			`offset: applies to parser "number" only`,
		}},
		{name: "bad pattern", config: func(c *Config) { c.Path = "/sys/[" }, want: []string{
			`path: "/sys/[" is not a valid pattern: syntax error in pattern`,
		}},
		{name: "channel empty level", config: func(c *Config) { c.Path, c.Channel = "/x", "a//b" }, want: []string{
			`channel: "a//b" has an empty topic level`,
		}},
		{name: "channel wildcard", config: func(c *Config) { c.Path, c.Channel = "/x", "temp/+" }, want: []string{
			`channel: "temp/+" contains a wildcard or NUL`,
		}},
		{name: "channel dollar", config: func(c *Config) { c.Path, c.Channel = "/x", "$SYS" }, want: []string{
			`channel: "$SYS" has a level starting with $`,
		}},
		{name: "channel cmd", config: func(c *Config) { c.Path, c.Channel = "/x", "cmd/read" }, want: []string{
			`channel: "cmd/read" starts with cmd or status, which belong to the gateway`,
		}},
		{name: "non-finite scale", config: func(c *Config) { c.Path, c.Parser, c.Scale = "/x", ParserNumber, 0 }, want: []string{
			`scale: must be a finite number other than 0, got 0`,
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
	devicetest.Sample(t, Sample, Driver, NewConfig)
}

func TestReadings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		parser   string
		content  string
		channel  string
		qos      int
		want     string
		wantQoS  byte
		wantChan string
	}{
		{name: "thermal", parser: ParserThermal, content: "48312\n", want: `{"celsius":48.312}`, wantQoS: 1, wantChan: "value"},
		{name: "w1_slave", parser: ParserW1Slave, content: w1Good, channel: "temperature", want: `{"celsius":23.125}`, wantQoS: 1, wantChan: "temperature"},
		{name: "w1_slave power-on", parser: ParserW1Slave, content: w1PowerOn, want: `{"celsius":85}`, wantQoS: 1, wantChan: "value"},
		{name: "raw qos 0", parser: ParserRaw, content: "charging\n", qos: -1, want: `"charging"`, wantQoS: 0, wantChan: "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "value")
			writeFile(t, path, tt.content)
			c := testConfig(path, tt.parser)
			if tt.channel != "" {
				c.Channel = tt.channel
			}
			if tt.qos < 0 {
				c.QoS = 0
			}
			d := open(t, c)
			out := run(t, d)
			f := out.wait(t, 1)[0]
			if string(f.Payload) != tt.want || f.Channel != tt.wantChan || f.QoS != tt.wantQoS || f.Retain {
				t.Fatalf("frame %q on %q qos %d retain %v; want %s on %q qos %d", f.Payload, f.Channel, f.QoS, f.Retain, tt.want, tt.wantChan, tt.wantQoS)
			}
			if s := d.Stats(); s.Readings == 0 || s.Errors != 0 || s.SkippedCRC != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// A reading with a failed CRC is counted and never published; the next
// good one is.
func TestBadCRCSkipped(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "w1_slave")
	writeFile(t, path, w1Bad)
	d := open(t, testConfig(path, ParserW1Slave))
	out := run(t, d)
	waitFor(t, "two skipped readings", func() bool { return d.Stats().SkippedCRC >= 2 })
	if n := out.len(); n != 0 {
		t.Fatalf("%d frames published for bad CRC readings", n)
	}
	if s := d.Stats(); s.Errors != 0 || s.Readings != 0 {
		t.Fatalf("stats %+v: a bad CRC is neither an error nor a reading", s)
	}
	writeFile(t, path, w1Good)
	if f := out.wait(t, 1)[0]; string(f.Payload) != `{"celsius":23.125}` {
		t.Fatalf("payload %s", f.Payload)
	}
}

// A missing sensor file is counted, logged once and never published;
// polling goes on and picks the file up when it appears.
func TestMissingFileRecovers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "temp")
	logs := &logCounter{}
	c := testConfig(path, ParserThermal)
	dev, err := c.Open("cpu", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*Device)
	out := run(t, d)
	waitFor(t, "three failed readings", func() bool { return d.Stats().Errors >= 3 })
	if n := out.len(); n != 0 {
		t.Fatalf("%d frames published for a missing file", n)
	}
	writeFile(t, path, "51000\n")
	if f := out.wait(t, 1)[0]; string(f.Payload) != `{"celsius":51}` {
		t.Fatalf("payload %s", f.Payload)
	}
	waitFor(t, "the recovery logged", func() bool { return logs.count(slog.LevelInfo) == 1 })
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings for %d failed readings of the same missing file, want 1", n, d.Stats().Errors)
	}
}

func TestSuppressUnchanged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		suppress bool
	}{
		{name: "suppressed", suppress: true},
		{name: "every reading", suppress: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "value")
			writeFile(t, path, "7\n")
			c := testConfig(path, ParserNumber)
			c.SuppressUnchanged = tt.suppress
			d := open(t, c)
			out := run(t, d)
			waitFor(t, "five readings", func() bool { return d.Stats().Readings >= 5 })
			n := out.len()
			switch {
			case tt.suppress && n != 1:
				t.Fatalf("%d frames for an unchanged value, want 1", n)
			case !tt.suppress && n < 4: // the fifth may still be on its way
				t.Fatalf("%d frames for 5 readings", n)
			}
			writeFile(t, path, "8\n")
			waitFor(t, "the new value", func() bool { return string(out.last().Payload) == "8" })
			if tt.suppress {
				frames := out.all()
				var got []string
				for _, f := range frames {
					got = append(got, string(f.Payload))
				}
				if strings.Join(got, ",") != "7,8" {
					t.Fatalf("payloads %v, want [7 8]", got)
				}
			}
		})
	}
}

func TestPatternPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pattern := filepath.Join(dir, "28-*", "w1_slave")
	c := testConfig(pattern, ParserW1Slave)
	d := open(t, c)
	ctx := context.Background()
	cmd := protocols.Command{ID: "1", Name: "read"}

	res := d.Command(ctx, cmd)
	if res.OK || res.Error != "no file matches "+pattern {
		t.Fatalf("no sensor: %+v", res)
	}
	writeFile(t, filepath.Join(dir, "28-0316a2798aff", "w1_slave"), w1Good)
	if res := d.Command(ctx, cmd); !res.OK || string(res.Data) != `{"celsius":23.125}` {
		t.Fatalf("one sensor: %+v", res)
	}
	writeFile(t, filepath.Join(dir, "28-0316a2798b00", "w1_slave"), w1Good)
	res = d.Command(ctx, cmd)
	if res.OK || !strings.HasPrefix(res.Error, "2 files match "+pattern) {
		t.Fatalf("two sensors: %+v", res)
	}
	if s := d.Stats(); s.Errors != 2 || s.Readings != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	writeFile(t, good, w1Good)
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, w1Bad)
	junk := filepath.Join(dir, "junk")
	writeFile(t, junk, "hello\n")
	tests := []struct {
		name    string
		path    string
		command string
		want    protocols.Result
	}{
		{name: "read", path: good, command: "read", want: protocols.Result{ID: "c1", OK: true, Data: json.RawMessage(`{"celsius":23.125}`)}},
		{name: "read bad crc", path: bad, command: "read", want: protocols.Result{ID: "c1", Error: "1-Wire CRC check failed"}},
		{name: "read missing", path: filepath.Join(dir, "none"), command: "read", want: protocols.Result{ID: "c1", Error: "open " + filepath.Join(dir, "none") + ": no such file or directory"}},
		{name: "read unparsable", path: junk, command: "read", want: protocols.Result{ID: "c1", Error: "parse " + junk + ` as w1_slave: want two lines (crc and t=), got "hello\n"`}},
		{name: "unknown", path: good, command: "reset", want: protocols.Result{ID: "c1", Error: "unknown command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := open(t, testConfig(tt.path, ParserW1Slave))
			got := d.Command(context.Background(), protocols.Command{ID: "c1", Name: tt.command, Args: json.RawMessage(`{}`)})
			if got.ID != tt.want.ID || got.OK != tt.want.OK || string(got.Data) != string(tt.want.Data) || got.Error != tt.want.Error {
				t.Fatalf("got %+v (data %s), want %+v (data %s)", got, got.Data, tt.want, tt.want.Data)
			}
		})
	}
}

// "read" on a running device publishes the reading like a polled one.
func TestCommandReadPublishes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "value")
	writeFile(t, path, "1\n")
	c := testConfig(path, ParserNumber)
	c.Interval = time.Hour // only the first reading and the command's
	d := open(t, c)
	out := run(t, d)
	out.wait(t, 1)
	writeFile(t, path, "2\n")
	res := d.Command(context.Background(), protocols.Command{ID: "r", Name: "read"})
	if !res.OK || string(res.Data) != "2" {
		t.Fatalf("result %+v", res)
	}
	if f := out.wait(t, 2)[1]; string(f.Payload) != "2" {
		t.Fatalf("published %s", f.Payload)
	}
}

// A command waiting for the poller's reading gives up with its context.
func TestCommandHonoursContext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "value")
	writeFile(t, path, "1\n")
	d := open(t, testConfig(path, ParserNumber))
	d.turn <- struct{}{} // a reading in progress
	defer func() { <-d.turn }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := d.Command(ctx, protocols.Command{ID: "r", Name: "read"})
	if res.OK || res.Error != context.Canceled.Error() {
		t.Fatalf("result %+v", res)
	}
}

func TestPublishRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "value")
	writeFile(t, path, "1\n")
	c := testConfig(path, ParserNumber)
	c.SuppressUnchanged = true
	d := open(t, c)
	out := &outlet{refused: true}
	runWith(t, d, out)
	waitFor(t, "two refused readings", func() bool { return d.Stats().PublishErrors >= 2 })
	out.refuse(false)
	// Not published yet, so not "unchanged": the value goes out.
	if f := out.wait(t, 1)[0]; string(f.Payload) != "1" {
		t.Fatalf("payload %s", f.Payload)
	}
}

// testConfig is a valid config polling path fast.
func testConfig(path, parser string) *Config {
	c := NewConfig()
	c.Path, c.Parser, c.Interval = path, parser, 10*time.Millisecond
	return c
}

func open(t *testing.T, c *Config) *Device {
	t.Helper()
	d, err := c.Open("test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return d.(*Device)
}

// run runs d until the test ends and checks that Run then returns nil.
func run(t *testing.T, d *Device) *outlet {
	t.Helper()
	out := &outlet{}
	runWith(t, d, out)
	return out
}

func runWith(t *testing.T, d *Device, out devices.Outlet) {
	t.Helper()
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
}

// writeFile replaces a file atomically, as sysfs would: a poller never
// sees half of it.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// outlet records the frames a device publishes.
type outlet struct {
	mu      sync.Mutex
	frames  []protocols.Frame
	refused bool
}

func (o *outlet) SetOnline(bool) {}

func (o *outlet) Publish(f protocols.Frame) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refused {
		return protocols.ErrBusy
	}
	o.frames = append(o.frames, f)
	return nil
}

func (o *outlet) refuse(r bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused = r
}

func (o *outlet) all() []protocols.Frame {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]protocols.Frame(nil), o.frames...)
}

func (o *outlet) len() int { return len(o.all()) }

func (o *outlet) last() protocols.Frame {
	all := o.all()
	if len(all) == 0 {
		return protocols.Frame{}
	}
	return all[len(all)-1]
}

// wait returns the frames once there are at least n.
func (o *outlet) wait(t *testing.T, n int) []protocols.Frame {
	t.Helper()
	waitFor(t, "frames", func() bool { return o.len() >= n })
	return o.all()
}

// logCounter is a slog.Handler counting records by level.
type logCounter struct {
	mu     sync.Mutex
	counts map[slog.Level]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[slog.Level]int{}
	}
	l.counts[r.Level]++
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func (l *logCounter) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[level]
}
