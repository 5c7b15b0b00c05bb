package serial

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is the deadline of everything a test waits for: generous, for a
// loaded CI machine. No test asserts how long anything takes.
const wait = 15 * time.Second

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// logRecorder keeps the messages logged, for tests that check a log line.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) logged(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// recorder is the router as the device sees it: an Outlet that records.
type recorder struct {
	frames chan protocols.Frame
	online chan bool // every SetOnline
	err    error     // what Publish returns
}

func newRecorder() *recorder {
	return &recorder{frames: make(chan protocols.Frame, 256), online: make(chan bool, 64)}
}

func (r *recorder) SetOnline(online bool) {
	select {
	case r.online <- online:
	default: // a test that does not look
	}
}

// wantOnline waits for the next SetOnline and checks it.
func (r *recorder) wantOnline(t *testing.T, want bool) {
	t.Helper()
	select {
	case got := <-r.online:
		if got != want {
			t.Fatalf("SetOnline(%v), want SetOnline(%v)", got, want)
		}
	case <-time.After(wait):
		t.Fatalf("no SetOnline(%v)", want)
	}
}

func (r *recorder) Publish(f protocols.Frame) error {
	if r.err != nil {
		return r.err
	}
	r.frames <- f
	return nil
}

func (r *recorder) next(t *testing.T) protocols.Frame {
	t.Helper()
	select {
	case f := <-r.frames:
		return f
	case <-time.After(wait):
		t.Fatal("no frame published")
		return protocols.Frame{}
	}
}

// ptyPair is socat joining two pseudo-terminals: DIR/a for the driver,
// DIR/b for the test playing the device. Stopping it makes both vanish,
// like a USB adapter pulled out.
type ptyPair struct {
	t       *testing.T
	bin     string
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	port    string // DIR/a
	devPath string // DIR/b
}

func startPTYs(t *testing.T) *ptyPair {
	t.Helper()
	dir := t.TempDir()
	p := &ptyPair{t: t, bin: brokertest.Require(t, "socat"), dir: dir,
		port: filepath.Join(dir, "a"), devPath: filepath.Join(dir, "b")}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *ptyPair) start() {
	p.t.Helper()
	log := filepath.Join(p.dir, "socat.log")
	logFile, err := os.Create(log)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logFile.Close()
	p.cmd = exec.Command(p.bin, "-d", "-d",
		"pty,raw,echo=0,link="+p.port, "pty,raw,echo=0,link="+p.devPath)
	p.cmd.Stderr = logFile
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start socat: %v", err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(p.cmd, p.exited)
	deadline := time.Now().Add(wait)
	for {
		b, _ := os.ReadFile(log)
		if strings.Contains(string(b), "starting data transfer loop") {
			return
		}
		select {
		case <-p.exited:
			p.t.Fatalf("socat exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("socat not ready: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends socat with SIGTERM, which removes the links.
func (p *ptyPair) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(wait):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// deviceEnd is the test's end of the line, the serial device.
type deviceEnd struct {
	t *testing.T
	f *os.File
	r *bufio.Reader
}

func (p *ptyPair) device() *deviceEnd {
	p.t.Helper()
	f, err := os.OpenFile(p.devPath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { f.Close() })
	return &deviceEnd{t: p.t, f: f, r: bufio.NewReader(f)}
}

func (e *deviceEnd) write(s string) {
	e.t.Helper()
	if _, err := e.f.Write([]byte(s)); err != nil {
		e.t.Fatalf("device write: %v", err)
	}
}

// read returns the next n bytes the driver wrote.
func (e *deviceEnd) read(n int) string {
	e.t.Helper()
	if err := e.f.SetReadDeadline(time.Now().Add(wait)); err != nil {
		e.t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(e.r, b); err != nil {
		e.t.Fatalf("device read: %v (got %q)", err, b)
	}
	return string(b)
}

// runWith runs a device until the test ends, then checks that Run returns.
func runWith(t *testing.T, cfg *Config, out *recorder) *Device {
	t.Helper()
	dev, err := cfg.Open("dev1", discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dev.Run(ctx, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(wait):
			t.Error("Run did not return after its context ended")
		}
	})
	return dev.(*Device)
}

func testConfig(port string) *Config {
	c := NewConfig()
	c.Port = port
	c.ReopenMin, c.ReopenMax = 10*time.Millisecond, 100*time.Millisecond
	return c
}

// command runs a command, retrying while the port is not open yet.
func command(t *testing.T, dev *Device, args string) protocols.Result {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		res := dev.Command(ctx, protocols.Command{ID: "c1", Name: "send", Args: json.RawMessage(args)})
		cancel()
		if res.OK || !strings.Contains(res.Error, "is not open") || time.Now().After(deadline) {
			return res
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// accept hands a routed frame to the device, retrying while the port is
// not open yet.
func accept(t *testing.T, dev *Device, payload string) error {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := dev.Accept(protocols.Frame{Device: "kitchen", Channel: "line1", Payload: []byte(payload)})
		if !errors.Is(err, protocols.ErrDeviceOffline) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPort runs each framing and encoding over a real pseudo-terminal:
// what the device writes is published, commands and routed frames reach
// the device, byte for byte.
func TestPort(t *testing.T) {
	t.Parallel()
	type out struct {
		via  string // "command" or "accept"
		data string // the args or payload
		want string // the bytes on the wire
	}
	tests := []struct {
		name              string
		framing, encoding string
		maxLine           int
		in                string   // written by the device
		want              []string // payloads published
		invalid, oversize uint64
		out               []out
	}{
		{
			name: "lines text", framing: FramingLines, encoding: EncodingText,
			in:   "hello world\r\n\n<b>&</b> \"q\"\n",
			want: []string{`"hello world"`, `"<b>&</b> \"q\""`},
			out: []out{
				{"command", `"LED ON"`, "LED ON\n"},
				{"command", `{"led": 1}`, "{\"led\":1}\n"},
				{"accept", `21.5`, "21.5\n"},
				{"accept", `"Kitchen 21.5 C"`, "Kitchen 21.5 C\n"},
			},
		},
		{
			name: "lines text too long", framing: FramingLines, encoding: EncodingText, maxLine: 8,
			in:       "12345678\n123456789\n" + strings.Repeat("x", 5000) + "\nok\n",
			want:     []string{`"12345678"`, `"ok"`},
			oversize: 2,
		},
		{
			name: "lines json", framing: FramingLines, encoding: EncodingJSON,
			in:      "{\"t\": 21.5}\r\nnot json\n[1,2]\n\"s\"\n",
			want:    []string{`{"t": 21.5}`, `[1,2]`, `"s"`},
			invalid: 1,
			out: []out{
				{"command", `{ "set": [1, 2] }`, "{\"set\":[1,2]}\n"},
				{"command", `"hi"`, "\"hi\"\n"},
				{"accept", `{"t":21.5}`, "{\"t\":21.5}\n"},
			},
		},
		{
			name: "lines hex", framing: FramingLines, encoding: EncodingHex,
			in:   "\x01\x02AB\xff\n",
			want: []string{`"01024142ff"`},
			out: []out{
				{"command", `"48690d"`, "Hi\r\n"},
				{"accept", `"00ff"`, "\x00\xff\n"},
			},
		},
		{
			name: "length-prefixed hex", framing: FramingLength, encoding: EncodingHex,
			in:   "\x00\x03\x00\x0a\xff" + "\x00\x00" + "\x00\x01\x0a",
			want: []string{`"000aff"`, `"0a"`},
			out: []out{
				{"command", `"0a0b0c"`, "\x00\x03\x0a\x0b\x0c"},
				{"accept", `""`, "\x00\x00"},
			},
		},
		{
			name: "length-prefixed text", framing: FramingLength, encoding: EncodingText, maxLine: 5,
			in:       "\x00\x05hello" + "\x00\x07toolong" + "\x00\x04a\nb\n",
			want:     []string{`"hello"`, `"a\nb\n"`},
			oversize: 1,
			out: []out{
				{"command", `"a\nb"`, "\x00\x03a\nb"},
				{"accept", `[1]`, "\x00\x03[1]"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ptys := startPTYs(t)
			cfg := testConfig(ptys.port)
			cfg.Framing, cfg.Encoding, cfg.Channel, cfg.QoS = tt.framing, tt.encoding, "serial/rx", 0
			if tt.maxLine > 0 {
				cfg.MaxLine = tt.maxLine
			}
			rec := newRecorder()
			dev := runWith(t, cfg, rec)
			end := ptys.device()
			end.write(tt.in)
			for _, want := range tt.want {
				f := rec.next(t)
				if string(f.Payload) != want || f.Channel != "serial/rx" || f.QoS != 0 {
					t.Errorf("published %q on %q QoS %d, want %q on serial/rx QoS 0", f.Payload, f.Channel, f.QoS, want)
				}
			}
			for _, o := range tt.out {
				switch o.via {
				case "command":
					if res := command(t, dev, o.data); !res.OK || res.Error != "" {
						t.Fatalf("command %s: %+v", o.data, res)
					}
				case "accept":
					if err := accept(t, dev, o.data); err != nil {
						t.Fatalf("accept %s: %v", o.data, err)
					}
				}
				if got := end.read(len(o.want)); got != o.want {
					t.Errorf("%s %s wrote %q, want %q", o.via, o.data, got, o.want)
				}
			}
			// A frame is counted once Publish returned.
			want := Stats{Frames: uint64(len(tt.want)), Invalid: tt.invalid, Oversize: tt.oversize, Written: uint64(len(tt.out)), Opens: 1}
			for deadline := time.Now().Add(wait); dev.Stats() != want && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if st := dev.Stats(); st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
		})
	}
}

// TestUnplug pulls the "adapter" (socat ends, both ptys and their links
// vanish) and plugs it back: the driver reports the port down meanwhile,
// reopens it and carries on in both directions.
func TestUnplug(t *testing.T) {
	t.Parallel()
	ptys := startPTYs(t)
	rec := newRecorder()
	dev := runWith(t, testConfig(ptys.port), rec)
	rec.wantOnline(t, true) // the status follows the port
	end := ptys.device()
	end.write("before\n")
	if f := rec.next(t); string(f.Payload) != `"before"` {
		t.Fatalf("published %q", f.Payload)
	}
	if res := command(t, dev, `"ping"`); !res.OK {
		t.Fatalf("command: %+v", res)
	}
	if got := end.read(5); got != "ping\n" {
		t.Fatalf("wrote %q", got)
	}

	ptys.stop()
	end.f.Close()
	rec.wantOnline(t, false)
	// Once the driver notices, it refuses writes instead of queueing them
	// for a port that is gone.
	deadline := time.Now().Add(wait)
	for {
		err := dev.Accept(protocols.Frame{Payload: []byte(`"lost"`)})
		if errors.Is(err, protocols.ErrDeviceOffline) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Accept with the port gone: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := dev.Command(context.Background(), protocols.Command{ID: "c2", Name: "send", Args: json.RawMessage(`"x"`)})
	if want := "device offline: serial port " + ptys.port + " is not open"; res.OK || res.Error != want {
		t.Errorf("command with the port gone: %+v, want error %q", res, want)
	}

	ptys.start()
	rec.wantOnline(t, true)
	end = ptys.device()
	end.write("after\n")
	if f := rec.next(t); string(f.Payload) != `"after"` {
		t.Fatalf("published %q after the replug", f.Payload)
	}
	if res := command(t, dev, `"pong"`); !res.OK {
		t.Fatalf("command after the replug: %+v", res)
	}
	if got := end.read(5); got != "pong\n" {
		t.Fatalf("wrote %q after the replug", got)
	}
	if st := dev.Stats(); st.Opens < 2 {
		t.Errorf("stats %+v: the port was not reopened", st)
	}
}

// TestRouterBusy: frames the router refuses are dropped and counted; the
// device keeps reading.
func TestRouterBusy(t *testing.T) {
	t.Parallel()
	ptys := startPTYs(t)
	rec := newRecorder()
	rec.err = protocols.ErrBusy
	dev := runWith(t, testConfig(ptys.port), rec)
	ptys.device().write("one\ntwo\n")
	for deadline := time.Now().Add(wait); dev.Stats().Dropped < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the refused frames were not counted", dev.Stats())
		}
	}
	if st := dev.Stats(); st.Frames != 0 || st.Dropped != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestBusy fills the write queue of a port whose device reads nothing:
// the queue is bounded and the overflow is refused with ErrBusy. Run ends
// all the same, leaving the blocked write to finish (or fail) on its own.
func TestBusy(t *testing.T) {
	t.Parallel()
	ptys := startPTYs(t)
	cfg := testConfig(ptys.port)
	logs := &logRecorder{}
	dev, err := cfg.Open("dev1", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	d := dev.(*Device)
	d.writeGrace = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, newRecorder()) }()
	defer cancel()
	end := ptys.device()
	if err := accept(t, d, `"first"`); err != nil {
		t.Fatal(err)
	}
	// 4 KiB per frame fills the ptys' buffers, then the queue.
	line := fmt.Sprintf("%q", strings.Repeat("x", 4000))
	// Twice: socat between the ptys may still be passing data on after the
	// first refusal; by the second every buffer on the way is full and the
	// write is blocked for good.
	for range 2 {
		err = nil
		for i := 0; i < 10000 && err == nil; i++ {
			err = d.Accept(protocols.Frame{Payload: []byte(line)})
		}
		if !errors.Is(err, protocols.ErrBusy) {
			t.Fatalf("Accept of a flood: %v, want ErrBusy", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return with a write blocked")
	}
	if !logs.logged("a write to the serial port is blocked") {
		t.Error("the blocked write was not logged")
	}
	// The device reads at last: the blocked write ends and its goroutine
	// closes the port.
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.Discard, end.f)
	}()
	d.stuck.Wait()
	end.f.Close()
	<-copied
}

// TestEncodeErrors covers what is refused before anything is queued.
func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		framing, encoding string
		args              string
		want              string
	}{
		{"no args", FramingLines, EncodingText, ``, "no args: nothing to write"},
		{"newline in a line", FramingLines, EncodingText, `"a\nb"`, "args: contains a newline, which framing lines cannot carry"},
		{"hex of a number", FramingLines, EncodingHex, `12`, "args: encoding hex takes a JSON string of hex digits"},
		{"hex digits", FramingLines, EncodingHex, `"0g"`, `args: "0g" is not hex digits`},
		{"hex of a newline", FramingLines, EncodingHex, `"0a"`, "args: contains a newline, which framing lines cannot carry"},
		{"not JSON", FramingLength, EncodingJSON, `{oops`, "args: encoding json takes a JSON value"},
		{"too long", FramingLength, EncodingText, `"` + strings.Repeat("x", 4097) + `"`, "args: 4097 bytes are more than max_line (4096)"},
		{"port not open", FramingLines, EncodingText, `"fine"`, "device offline: serial port /dev/ttyUSB0 is not open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := NewConfig()
			cfg.Port, cfg.Framing, cfg.Encoding = "/dev/ttyUSB0", tt.framing, tt.encoding
			dev, err := cfg.Open("dev1", discard())
			if err != nil {
				t.Fatal(err)
			}
			res := dev.Command(context.Background(), protocols.Command{ID: "c1", Name: "send", Args: json.RawMessage(tt.args)})
			if res.OK || res.Error != tt.want || res.ID != "c1" {
				t.Errorf("result %+v, want error %q", res, tt.want)
			}
			err = dev.(*Device).Accept(protocols.Frame{Payload: []byte(tt.args)})
			switch {
			case tt.name == "no args":
			case tt.name == "port not open":
				if !errors.Is(err, protocols.ErrDeviceOffline) {
					t.Errorf("Accept: %v, want ErrDeviceOffline", err)
				}
			case !errors.Is(err, protocols.ErrInvalidFrame):
				t.Errorf("Accept: %v, want ErrInvalidFrame", err)
			}
		})
	}
}
