package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/protocols"
)

// The tests that start processes do not run in parallel: a script written
// while another test forks could be held open by the child for an
// instant and fail to run ("text file busy").

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is the deadline of everything a test waits for: generous, for a
// loaded CI machine. No test asserts how long anything takes.
const wait = 15 * time.Second

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// recorder is the router as the device sees it: an Outlet that records.
type recorder struct{ frames chan protocols.Frame }

func newRecorder() *recorder { return &recorder{frames: make(chan protocols.Frame, 256)} }

func (r *recorder) SetOnline(bool) {}

func (r *recorder) Publish(f protocols.Frame) error {
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

// logRecorder keeps what is logged, for tests that check a log line.
type logRecorder struct {
	mu      sync.Mutex
	records []string // message, then attributes as key=value
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	s := r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.String()
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, s)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) logged(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

func (l *logRecorder) await(t *testing.T, prefix string) {
	t.Helper()
	for deadline := time.Now().Add(wait); !l.logged(prefix); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing logged as %q; logged %q", prefix, l.records)
		}
	}
}

// runDaemon runs a daemon until stop, which checks that Run returns; stop
// also runs when the test ends.
func runDaemon(t *testing.T, cfg *Config) (d *Daemon, out *recorder, logs *logRecorder, stop func()) {
	t.Helper()
	logs = &logRecorder{}
	dev, err := cfg.Open("sensor", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	d = dev.(*Daemon)
	out = newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, out) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
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
	}
	t.Cleanup(stop)
	return d, out, logs, stop
}

func daemonConfig(command ...string) *Config {
	c := NewConfig()
	c.Mode, c.Command = ModeDaemon, command
	c.RestartMin, c.RestartMax, c.StopGrace = 10*time.Millisecond, 100*time.Millisecond, 5*time.Second
	return c
}

// command sends a command, retrying while the program is not running yet.
func command(t *testing.T, d *Daemon, cmd protocols.Command) protocols.Result {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		res := d.Command(ctx, cmd)
		cancel()
		if res.OK || !strings.Contains(res.Error, "is not running") || time.Now().After(deadline) {
			return res
		}
	}
}

// accept hands a routed frame to a daemon, retrying while the program is
// not running yet.
func accept(t *testing.T, d *Daemon, payload string) error {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		err := d.Accept(protocols.Frame{Device: "kitchen", Channel: "t", Payload: []byte(payload)})
		if !errors.Is(err, protocols.ErrDeviceOffline) || time.Now().After(deadline) {
			return err
		}
	}
}

// gone reports whether a process has ended (a zombie has).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func awaitGone(t *testing.T, what string, pid int) {
	t.Helper()
	for deadline := time.Now().Add(wait); !gone(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
	}
}

// readPID reads a pid a script wrote to a file, waiting for it.
func readPID(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if s := strings.TrimSpace(string(b)); strings.HasSuffix(string(b), "\n") && s != "" {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: %q", path, b)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
	}
}

// TestDaemon: stdout lines become frames, commands and routed frames
// reach stdin (the scripts echo them back), stderr lines are logged.
func TestDaemon(t *testing.T) {
	type exchange struct {
		cmd     *protocols.Command // sent as a command, or
		payload string             // routed to the device
		want    string             // the frame the script echoes
	}
	tests := []struct {
		name     string
		encoding string
		body     string
		want     []string // published first
		invalid  uint64
		stderr   string
		io       []exchange
	}{
		{
			name: "json", encoding: EncodingJSON,
			body: `echo '{"hello": true}'
echo 'not json'
echo 'oops' >&2
while IFS= read -r line; do printf '%s\n' "$line"; done
`,
			want: []string{`{"hello": true}`}, invalid: 1, stderr: "oops",
			io: []exchange{
				{cmd: &protocols.Command{ID: "c1", Name: "set", Args: json.RawMessage(`{"on": true, "level": [1, 2]}`)},
					want: `{"id":"c1","name":"set","args":{"on":true,"level":[1,2]}}`},
				{cmd: &protocols.Command{ID: "c2", Name: "ping"}, want: `{"id":"c2","name":"ping"}`},
				{payload: `21.5`, want: `21.5`},
				{payload: "{\"a\": [1,\n 2]}", want: `{"a":[1,2]}`},
			},
		},
		{
			name: "text", encoding: EncodingText,
			body: `printf 'hello <world> & "co"\r\n'
printf '\n'
while IFS= read -r line; do printf 'got %s\n' "$line"; done
`,
			want: []string{`"hello <world> & \"co\""`},
			io: []exchange{
				{cmd: &protocols.Command{ID: "c3", Name: "ping"}, want: `"got {\"id\":\"c3\",\"name\":\"ping\"}"`},
				{payload: `plain text`, want: `"got plain text"`},
				{payload: `"a string"`, want: `"got \"a string\""`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := daemonConfig(script(t, t.TempDir(), "daemon.sh", tt.body))
			cfg.Encoding, cfg.Channel, cfg.QoS = tt.encoding, "sensors/out", 0
			d, out, logs, _ := runDaemon(t, cfg)
			for _, want := range tt.want {
				if f := out.next(t); string(f.Payload) != want || f.Channel != "sensors/out" || f.QoS != 0 {
					t.Errorf("published %q on %q QoS %d, want %q on sensors/out QoS 0", f.Payload, f.Channel, f.QoS, want)
				}
			}
			for _, x := range tt.io {
				if x.cmd != nil {
					if res := command(t, d, *x.cmd); !res.OK || res.ID != x.cmd.ID {
						t.Fatalf("command %s: %+v", x.cmd.Name, res)
					}
				} else if err := accept(t, d, x.payload); err != nil {
					t.Fatalf("accept %q: %v", x.payload, err)
				}
				if f := out.next(t); string(f.Payload) != x.want {
					t.Errorf("echoed %q, want %q", f.Payload, x.want)
				}
			}
			if tt.stderr != "" {
				logs.await(t, "program stderr line="+tt.stderr)
			}
			if st := d.Stats(); st.Invalid != tt.invalid || st.Starts != 1 {
				t.Errorf("stats %+v, want %d invalid, 1 start", st, tt.invalid)
			}
		})
	}
}

// TestDaemonRestart: a program that exits is started again, and what it
// left running in its process group is killed.
func TestDaemonRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := daemonConfig(script(t, dir, "daemon.sh", `echo run >> "$1/runs"
n=$(wc -l < "$1/runs")
sleep 30 &
echo $! > "$1/child$n"
echo "run $n"
exit 3
`), dir)
	d, out, logs, _ := runDaemon(t, cfg)
	for _, want := range []string{`"run 1"`, `"run 2"`} {
		if f := out.next(t); string(f.Payload) != want {
			t.Fatalf("published %q, want %q", f.Payload, want)
		}
	}
	awaitGone(t, "the first run's background sleep", readPID(t, filepath.Join(dir, "child1")))
	logs.await(t, "program ended; starting it again err=exit status 3")
	if st := d.Stats(); st.Starts < 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestDaemonStop: a program that ignores SIGTERM gets SIGKILL after the
// grace, and Run returns with nothing left running.
func TestDaemonStop(t *testing.T) {
	dir := t.TempDir()
	cfg := daemonConfig(script(t, dir, "daemon.sh", `trap '' TERM
echo $$ > "$1/pid"
sleep 30 &
echo $! > "$1/child"
echo ready
wait
`), dir)
	cfg.StopGrace = 100 * time.Millisecond
	d, out, logs, stop := runDaemon(t, cfg)
	if f := out.next(t); string(f.Payload) != `"ready"` {
		t.Fatalf("published %q", f.Payload)
	}
	pid, child := readPID(t, filepath.Join(dir, "pid")), readPID(t, filepath.Join(dir, "child"))
	stop()
	if !logs.logged("program did not stop after SIGTERM; killing it") {
		t.Error("no SIGKILL logged")
	}
	awaitGone(t, "the program", pid)
	awaitGone(t, "its child", child)
	res := d.Command(context.Background(), protocols.Command{ID: "c1", Name: "x"})
	if want := "device offline: " + cfg.Command[0] + " is not running"; res.OK || res.Error != want {
		t.Errorf("command to a stopped daemon: %+v, want error %q", res, want)
	}
	if err := d.Accept(protocols.Frame{Payload: []byte("1")}); !errors.Is(err, protocols.ErrDeviceOffline) {
		t.Errorf("Accept to a stopped daemon: %v", err)
	}
}

// TestDaemonBusy: a program that never reads its stdin fills the pipe,
// then the bounded queue; Run still stops it.
func TestDaemonBusy(t *testing.T) {
	dir := t.TempDir()
	cfg := daemonConfig(script(t, dir, "daemon.sh", "echo ready\nexec sleep 30\n"))
	d, out, _, _ := runDaemon(t, cfg)
	out.next(t)
	line := fmt.Sprintf("%q", strings.Repeat("x", 4000))
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		err = d.Accept(protocols.Frame{Payload: []byte(line)})
	}
	if !errors.Is(err, protocols.ErrBusy) {
		t.Fatalf("Accept of a flood: %v, want ErrBusy", err)
	}
	if err := d.Accept(protocols.Frame{Payload: []byte("a\nb")}); !errors.Is(err, protocols.ErrInvalidFrame) {
		t.Errorf("Accept of text with a newline: %v, want ErrInvalidFrame", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res := d.Command(ctx, protocols.Command{ID: "c1", Name: "x", Args: json.RawMessage(`{bad`)}); res.Error != "args are not JSON" {
		t.Errorf("command with bad args: %+v", res)
	}
}

// oneshot opens a oneshot device for a command line.
func oneshot(t *testing.T, cfg *Config) *Oneshot {
	t.Helper()
	dev, err := cfg.Open("relay", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return dev.(*Oneshot)
}

// TestOneshot runs real scripts: arguments reach them verbatim, whatever
// shell syntax they hold, and the result reports the exit status and
// output.
func TestOneshot(t *testing.T) {
	dir := t.TempDir()
	echoArgs := script(t, dir, "args.sh", `for a in "$@"; do printf '<%s>\n' "$a"; done`+"\n")
	exit3 := script(t, dir, "exit3.sh", "echo out\necho err >&2\nexit 3\n")
	chatty := script(t, dir, "chatty.sh", "echo 123456789\necho abcdefgh >&2\n")
	nasty := `on; touch pwned1 && echo $(touch pwned2) ` + "`touch pwned3`" + ` | cat > pwned4 "q" 'q' * ${HOME} a  b
second line`
	nastyArgs, _ := json.Marshal(map[string]any{"state": nasty, "n": 5, "obj": map[string]any{"k": []int{1}}})
	tests := []struct {
		name      string
		command   []string
		maxOutput int
		cmd       protocols.Command
		want      protocols.Result
	}{
		{
			name:    "arguments verbatim",
			command: []string{echoArgs, "{name}", "{args.state}", "--n={args.n}", "{args.obj}", "{args}", "{{{id}}}", "{device}"},
			cmd:     protocols.Command{ID: "c1", Name: "set; reboot", Args: nastyArgs},
			want:    protocols.Result{ID: "c1", OK: true, Data: output(0, "<set; reboot>\n<"+nasty+">\n<--n=5>\n<{\"k\":[1]}>\n<"+string(nastyArgs)+">\n<{c1}>\n<relay>\n", "", false)},
		},
		{
			name:    "no args",
			command: []string{echoArgs, "{name}", "{args}"},
			cmd:     protocols.Command{ID: "c2", Name: "off"},
			want:    protocols.Result{ID: "c2", OK: true, Data: output(0, "<off>\n<>\n", "", false)},
		},
		{
			name:    "missing field",
			command: []string{echoArgs, "{args.state}"},
			cmd:     protocols.Command{ID: "c3", Name: "set", Args: json.RawMessage(`{"on": true}`)},
			want:    protocols.Result{ID: "c3", Error: `{args.state}: args have no field "state"`},
		},
		{
			name:    "exit status",
			command: []string{exit3},
			cmd:     protocols.Command{ID: "c4", Name: "x"},
			want:    protocols.Result{ID: "c4", Error: "exit status 3", Data: output(3, "out\n", "err\n", false)},
		},
		{
			name:    "output truncated",
			command: []string{chatty}, maxOutput: 4,
			cmd:  protocols.Command{ID: "c5", Name: "x"},
			want: protocols.Result{ID: "c5", OK: true, Data: output(0, "1234", "abcd", true)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := NewConfig()
			cfg.Command, cfg.Dir = tt.command, dir
			if tt.maxOutput > 0 {
				cfg.MaxOutput = tt.maxOutput
			}
			res := oneshot(t, cfg).Command(context.Background(), tt.cmd)
			if res.ID != tt.want.ID || res.OK != tt.want.OK || res.Error != tt.want.Error || string(res.Data) != string(tt.want.Data) {
				t.Errorf("result\n got %+v\n     data %s\nwant %+v\n     data %s", res, res.Data, tt.want, tt.want.Data)
			}
		})
	}
	for _, f := range []string{"pwned1", "pwned2", "pwned3", "pwned4"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s exists: an argument went through a shell", f)
		}
	}
}

func output(exit int, stdout, stderr string, truncated bool) json.RawMessage {
	b, err := json.Marshal(Output{Exit: exit, Stdout: stdout, Stderr: stderr, Truncated: truncated})
	if err != nil {
		panic(err)
	}
	return b
}

// TestOneshotTimeout: a program that outlives the timeout is killed with
// everything it started, and the result says so.
func TestOneshotTimeout(t *testing.T) {
	dir := t.TempDir()
	cfg := NewConfig()
	cfg.Command = []string{script(t, dir, "slow.sh", `echo $$ > "$1/pid"
sleep 30 &
echo $! > "$1/child"
echo started
wait
`), dir}
	cfg.Timeout = 500 * time.Millisecond
	res := oneshot(t, cfg).Command(context.Background(), protocols.Command{ID: "c1", Name: "slow"})
	if res.OK || res.Error != "timeout" || res.ID != "c1" {
		t.Errorf("result %+v", res)
	}
	var out Output
	if err := json.Unmarshal(res.Data, &out); err != nil || out.Exit != -1 {
		t.Errorf("data %s: %v", res.Data, err)
	}
	awaitGone(t, "the script", readPID(t, filepath.Join(dir, "pid")))
	awaitGone(t, "its sleep", readPID(t, filepath.Join(dir, "child")))
}

// TestOpen: a bare name is looked up in PATH; a missing program fails at
// Open, one removed later at the command.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	cfg := NewConfig()
	cfg.Command = []string{"true"}
	logs := &logRecorder{}
	dev, err := cfg.Open("x", slog.New(logs))
	if err != nil {
		t.Fatalf("Open of a program in PATH: %v", err)
	}
	if !logs.logged("program found in PATH program=true path=/") {
		t.Errorf("the PATH lookup was not logged: %q", logs.records)
	}
	if res := dev.Command(context.Background(), protocols.Command{ID: "c1", Name: "x"}); !res.OK {
		t.Errorf("true: %+v", res)
	}

	cfg.Command = []string{filepath.Join(dir, "missing")}
	if _, err := cfg.Open("x", slog.New(logs)); err == nil || !strings.HasPrefix(err.Error(), "exec: command: ") {
		t.Errorf("Open of a missing program: %v", err)
	}

	cfg.Command = []string{script(t, dir, "gone.sh", "exit 0\n")}
	dev, err = cfg.Open("x", slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg.Command[0]); err != nil {
		t.Fatal(err)
	}
	if res := dev.Command(context.Background(), protocols.Command{ID: "c2", Name: "x"}); res.OK || !strings.HasPrefix(res.Error, "start: ") {
		t.Errorf("a removed program: %+v", res)
	}

	cfg.Mode = "cron"
	if _, err := cfg.Open("x", slog.New(logs)); err == nil || err.Error() != `exec: mode: "cron" is not "oneshot" or "daemon"` {
		t.Errorf("Open of an invalid config: %v", err)
	}
}
