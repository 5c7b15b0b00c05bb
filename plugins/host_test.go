package plugins

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/echo"
)

// Binaries built once for all tests.
var (
	ocppPlugin  string // plugins/examples/ocpp16
	testPlugin  string // plugins/testdata/testplugin, protocol "test-echo"
	clashPlugin string // the same, claiming the built-in name "echo"
	// done and the OCPP example with the contract suite's probes.
	contractDone, contractOCPP string
)

const testWait = 20 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := func(out, pkg string, ldflags string) string {
		path := filepath.Join(dir, out)
		cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", path, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		return path
	}
	ocppPlugin = build("wsgate-ocpp16", "./examples/ocpp16/cmd/wsgate-ocpp16", "")
	testPlugin = build("testplugin", "./testdata/testplugin", "")
	clashPlugin = build("clashplugin", "./testdata/testplugin", "-X main.name=echo")
	contractDone = build("contract-done", "./testdata/contract/done", "")
	contractOCPP = build("contract-ocpp", "./testdata/contract/ocpp", "")
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				code = 1
			}
		}()
		goleak.VerifyTestMain(exitCatcher{m, &code})
	}()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exitCatcher lets TestMain clean up after goleak.VerifyTestMain, which
// exits itself.
type exitCatcher struct {
	m    *testing.M
	code *int
}

func (e exitCatcher) Run() int { *e.code = e.m.Run(); return *e.code }

// checksum streams the file through the hash, as the host does: reading a
// plugin binary whole would leave tens of MiB for the collector to hand
// back while a benchmark runs.
func checksum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func spec(t testing.TB, path string) Spec {
	return Spec{Path: path, SHA256: checksum(t, path)}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sink records frames and acks them.
type sink struct {
	frames chan protocols.Frame
}

func (s *sink) Deliver(f protocols.Frame) error {
	s.frames <- f
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

// env is a gateway with the built-in echo protocol and a plugin host.
type env struct {
	registry *protocols.Registry
	router   *router.Router
	sink     *sink
	host     *Host
	server   *gateway.Server
	url      string
}

func newEnv(t *testing.T, opts Options, order []string, specs ...Spec) (*env, error) {
	t.Helper()
	registry, err := protocols.NewRegistry(order)
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Register(echo.Protocol{}, "builtin"); err != nil {
		t.Fatal(err)
	}
	e := &env{registry: registry, sink: &sink{frames: make(chan protocols.Frame, 1024)}}
	e.router = router.New(e.sink, quietLog())
	opts.Registry, opts.Reserved = registry, []string{echo.Name}
	if opts.Log == nil {
		opts.Log = quietLog()
	}
	e.host = NewHost(opts)
	startErr := e.host.Start(specs)
	t.Cleanup(e.host.Close)
	srv, err := gateway.New(gateway.Options{
		Listeners:  []gateway.Listener{{Address: "127.0.0.1:0", Path: "/"}},
		MaxMessage: 1 << 20, PingInterval: time.Minute, PongTimeout: time.Minute,
	}, registry, e.router, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	e.server = srv
	e.url = "ws://" + srv.Addrs()[0].String()
	return e, startErr
}

func (e *env) dial(t *testing.T, path, protocol string) *websocket.Conn {
	t.Helper()
	return e.dialFrom(t, "127.0.0.1", path, protocol)
}

// dialFrom connects from a local address of the loopback network, which
// the gateway sees as another device's address.
func (e *env) dialFrom(t *testing.T, from, path, protocol string) *websocket.Conn {
	t.Helper()
	local := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	d := websocket.Dialer{Subprotocols: []string{protocol}, HandshakeTimeout: testWait, NetDialContext: local.DialContext}
	ws, resp, err := d.Dial(e.url+path, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s %s: %v (status %d)", path, protocol, err, status)
	}
	if resp.Header.Get("Sec-WebSocket-Protocol") != protocol {
		t.Fatalf("negotiated %q, want %q", resp.Header.Get("Sec-WebSocket-Protocol"), protocol)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

func send(t *testing.T, ws *websocket.Conn, text string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("waiting for %q: %v", want, err)
	}
	if string(msg) != want {
		t.Fatalf("got %q, want %q", msg, want)
	}
}

func expectClose(t *testing.T, ws *websocket.Conn, code int) {
	t.Helper()
	if ce := readClose(t, ws); ce.Code != code {
		t.Fatalf("connection ended with %v, want close %d", ce, code)
	}
}

// readClose reads until the peer's close frame and returns it; messages
// before it are skipped.
func readClose(t *testing.T, ws *websocket.Conn) *websocket.CloseError {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := errors.AsType[*websocket.CloseError](err)
		if !ok {
			t.Fatalf("connection ended with %v, want a close frame", err)
		}
		return ce
	}
}

func (e *env) nextFrame(t *testing.T) protocols.Frame {
	t.Helper()
	select {
	case f := <-e.sink.frames:
		return f
	case <-time.After(testWait):
		t.Fatal("no frame reached the router")
		return protocols.Frame{}
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOCPPThroughPlugin(t *testing.T) {
	e, err := newEnv(t, Options{}, []string{"ocpp1.6", "echo"}, spec(t, ocppPlugin))
	if err != nil {
		t.Fatal(err)
	}
	ws := e.dial(t, "/ocpp/CP001", "ocpp1.6")
	send(t, ws, `[2,"42","BootNotification",{"chargePointVendor":"ACME","chargePointModel":"W1"}]`)
	f := e.nextFrame(t)
	if f.Device != "CP001" || f.Channel != "BootNotification" || string(f.Payload) != `{"chargePointVendor":"ACME","chargePointModel":"W1"}` {
		t.Fatalf("frame %+v", f)
	}
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var answer []json.RawMessage
	if json.Unmarshal(msg, &answer) != nil || len(answer) != 3 || string(answer[0]) != "3" || string(answer[1]) != `"42"` ||
		!strings.Contains(string(answer[2]), `"status":"Accepted"`) {
		t.Fatalf("BootNotification answered %s", msg)
	}
	send(t, ws, `[2,"43","FirmwareStatusNotification",{}]`)
	expect(t, ws, `[4,"43","NotImplemented","FirmwareStatusNotification is not supported",{}]`)

	// A command from MQTT becomes a CALL; the charge point's answer its result.
	if err := e.router.Command(protocols.Command{Device: "CP001", ID: "m1", Name: "Reset", Args: json.RawMessage(`{"type":"Soft"}`)}); err != nil {
		t.Fatal(err)
	}
	expect(t, ws, `[2,"m1","Reset",{"type":"Soft"}]`)
	send(t, ws, `[3,"m1",{"status":"Accepted"}]`)
	r := e.nextFrame(t)
	if r.Channel != "cmd/Reset/result" || string(r.Payload) != `{"id":"m1","ok":true,"data":{"status":"Accepted"}}` {
		t.Fatalf("result frame %s %s", r.Channel, r.Payload)
	}
	send(t, ws, `not json`)
	expectClose(t, ws, protocols.CloseUnsupportedData)
}

func TestPluginKilledMidSession(t *testing.T) {
	e, err := newEnv(t, Options{RestartMin: 50 * time.Millisecond}, []string{"test-echo", "echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	var plugged []*websocket.Conn
	for i := range 3 {
		ws := e.dial(t, "/", "test-echo")
		send(t, ws, fmt.Sprintf("!attach dev-%d", i))
		expect(t, ws, fmt.Sprintf("attached dev-%d", i))
		plugged = append(plugged, ws)
	}
	builtin := e.dial(t, "/", "echo")
	send(t, builtin, "before")
	expect(t, builtin, "before")

	before := e.host.Status()[0]
	if before.State != "running" || before.PID == 0 {
		t.Fatalf("status %+v", before)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, ws := range plugged {
		expectClose(t, ws, protocols.CloseInternalError)
	}
	send(t, builtin, "after") // other protocols are unaffected
	expect(t, builtin, "after")

	waitFor(t, "the plugin to restart", func() bool {
		s := e.host.Status()[0]
		return s.State == "running" && s.PID != before.PID && s.Restarts == 1
	})
	ws := e.dial(t, "/", "test-echo")
	send(t, ws, "hello again")
	expect(t, ws, "hello again")
}

func TestPluginStallClosesSessionAndRestarts(t *testing.T) {
	opts := Options{RestartMin: 50 * time.Millisecond, StallTimeout: 300 * time.Millisecond, SessionQueue: 2}
	e, err := newEnv(t, opts, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	pid := e.host.Status()[0].PID
	ws := e.dial(t, "/", "test-echo")
	send(t, ws, "!hang")
	// The plugin's session reads no more; once its queues are full the
	// gateway waits StallTimeout, then gives up on it.
	go func() {
		for i := 0; i < 10000; i++ {
			if ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 1024))) != nil {
				return
			}
		}
	}()
	expectClose(t, ws, protocols.CloseInternalError)
	waitFor(t, "the hung plugin to be replaced", func() bool {
		s := e.host.Status()[0]
		return s.State == "running" && s.PID != pid
	})
	fresh := e.dial(t, "/", "test-echo")
	send(t, fresh, "responsive")
	expect(t, fresh, "responsive")
}

func TestPluginDisabledAfterRepeatedFailures(t *testing.T) {
	opts := Options{RestartMin: 20 * time.Millisecond, RestartMax: 20 * time.Millisecond, MaxFailures: 2, StableAfter: time.Hour}
	e, err := newEnv(t, opts, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	// Killed with no session open: no device had a part in it, so each
	// crash is the plugin's own.
	for crash := 1; crash <= 3; crash++ {
		pid := e.host.Status()[0].PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if crash < 3 {
			waitFor(t, "a restart", func() bool {
				s := e.host.Status()[0]
				return s.State == "running" && s.Restarts == crash
			})
		}
	}
	waitFor(t, "the plugin to be disabled", func() bool { return e.host.Status()[0].State == "disabled" })
	if _, ok := e.registry.Lookup("test-echo"); ok {
		t.Error("a disabled plugin's protocol is still registered")
	}
	resp, err := http.Get(strings.Replace(e.url, "ws://", "http://", 1) + "/") // plain GET: a malformed handshake
	if err == nil {
		resp.Body.Close()
	}
	d := websocket.Dialer{Subprotocols: []string{"test-echo"}}
	if _, resp, err := d.Dial(e.url+"/", nil); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("dial to a disabled plugin's protocol: %v, want 400", err)
	}
}

func TestPluginRefused(t *testing.T) {
	good := spec(t, testPlugin)
	tests := []struct {
		name  string
		specs []Spec
		want  string
	}{
		{"checksum mismatch", []Spec{{Path: testPlugin, SHA256: strings.Repeat("ab", 32)}}, "SHA-256 does not match"},
		{"malformed checksum", []Spec{{Path: testPlugin, SHA256: "beef"}}, "64 hex digits"},
		{"missing binary", []Spec{{Path: filepath.Join(t.TempDir(), "nope"), SHA256: good.SHA256}}, "no such file"},
		{"not executable", []Spec{{Path: "host.go", SHA256: checksum(t, "host.go")}}, "not an executable"},
		{"built-in name", []Spec{spec(t, clashPlugin)}, `protocol "echo" is built in`},
		{"name taken by another plugin", []Spec{good, good}, "already registered"},
		{"describes other protocols than declared", []Spec{{Path: testPlugin, SHA256: good.SHA256, Protocols: []string{"ocpp1.6"}}}, `implements "ocpp1.6"`},
		{"missing binary beside a good plugin", []Spec{{Path: filepath.Join(t.TempDir(), "nope"), SHA256: good.SHA256}, good}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logged := captureLog()
			e, err := newEnv(t, Options{Log: log}, []string{"test-echo", "echo"}, tt.specs...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start: %v, want an error containing %q", err, tt.want)
			}
			if !logged(`level=ERROR msg="plugin refused; the gateway runs without it"`) || !logged(strings.ReplaceAll(tt.want, `"`, `\"`)) {
				t.Errorf("the refusal was not logged at error level with its reason %q", tt.want)
			}
			// The gateway keeps running with what it has.
			ws := e.dial(t, "/", "echo")
			send(t, ws, "still up")
			expect(t, ws, "still up")
			if name := "echo"; len(e.registry.Entries()) == 0 || e.registry.Entries()[1].Origin != "builtin" {
				t.Errorf("%s lost its origin: %+v", name, e.registry.Entries())
			}
			if _, ok := e.registry.Lookup("test-echo"); ok { // a good plugin in the list
				ws := e.dial(t, "/", "test-echo")
				send(t, ws, "plugged")
				expect(t, ws, "plugged")
			}
		})
	}
}

func TestCloseLeavesNoProcesses(t *testing.T) {
	e, err := newEnv(t, Options{}, []string{"test-echo", "ocpp1.6"}, spec(t, testPlugin), spec(t, ocppPlugin))
	if err != nil {
		t.Fatal(err)
	}
	ws := e.dial(t, "/", "test-echo")
	send(t, ws, "ping")
	expect(t, ws, "ping")
	var pids []int
	for _, s := range e.host.Status() {
		pids = append(pids, s.PID)
	}
	if len(pids) != 2 {
		t.Fatalf("status %+v", e.host.Status())
	}
	e.host.Close()
	for _, pid := range pids {
		waitFor(t, fmt.Sprintf("process %d to end", pid), func() bool {
			return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
		})
	}
	expectClose(t, ws, protocols.CloseInternalError)
}

func TestPluginLogsReachTheGatewayLog(t *testing.T) {
	log, logged := captureLog()
	e, err := newEnv(t, Options{Log: log, RestartMin: time.Hour}, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	ws := e.dial(t, "/", "test-echo")
	send(t, ws, "!exit")
	expectClose(t, ws, protocols.CloseInternalError)
	waitFor(t, "the plugin's log line", func() bool {
		return logged(`level=ERROR msg="exiting on request"`) && logged("plugin=testplugin")
	})
}

// captureLog returns a logger and a function that reports whether what it
// logged so far contains a string.
func captureLog() (*slog.Logger, func(string) bool) {
	var mu sync.Mutex
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return log, func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(buf.String(), s)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	sums := "# plugins\n" + strings.Repeat("ab", 32) + "  wsgate-ocpp16\n" + strings.Repeat("cd", 32) + " *other\n"
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums), 0o600); err != nil {
		t.Fatal(err)
	}
	specs, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Spec{{Path: filepath.Join(dir, "wsgate-ocpp16"), SHA256: strings.Repeat("ab", 32)}, {Path: filepath.Join(dir, "other"), SHA256: strings.Repeat("cd", 32)}}
	if fmt.Sprint(specs) != fmt.Sprint(want) {
		t.Fatalf("specs %+v, want %+v", specs, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Discover(dir); err == nil || !strings.Contains(err.Error(), "SHA256SUMS:1") {
		t.Fatalf("bad line: %v", err)
	}
	if _, err := Discover(t.TempDir()); err == nil {
		t.Fatal("a directory without SHA256SUMS was accepted")
	}
}
