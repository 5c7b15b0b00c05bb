package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/protocols/module"
)

// testSetup is a config file for one test gateway and where it listens.
type testSetup struct {
	path, wsURL, mqttURL, adminAddr, dir string
}

// testConfig writes a config that runs the whole gateway on free loopback
// ports with the embedded broker and the done protocol; extra is appended
// to it.
func testConfig(t *testing.T, extra string) testSetup {
	t.Helper()
	return writeTestConfig(t, "[protocols]\norder = [\"done\"]\n", extra)
}

// writeTestConfig writes the config of testConfig with the given protocol
// tables; extra follows them.
func writeTestConfig(t *testing.T, protocolTables, extra string) testSetup {
	t.Helper()
	dir := t.TempDir()
	ports := brokertest.FreePorts(t, 3)
	wsPort, mqttPort, adminPort := ports[0], ports[1], ports[2]
	doc := fmt.Sprintf(`
[gateway]
id = "test-gw"
shutdown_grace = "5s"

[log]
level = "warn"

[[listeners]]
address = "127.0.0.1:%d"

[mqtt.embedded]
address = "127.0.0.1:%d"

[spool]
dir = %q

[admin]
address = "127.0.0.1:%d"

%s
%s`, wsPort, mqttPort, dir, adminPort, protocolTables, extra)
	path := filepath.Join(dir, "wsgate.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return testSetup{
		path:      path,
		wsURL:     fmt.Sprintf("ws://127.0.0.1:%d/", wsPort),
		mqttURL:   fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort),
		dir:       dir,
	}
}

// startInProcess runs `wsgate run -config path` in this process until the
// returned stop function is called; stop returns the exit status.
func startInProcess(t *testing.T, path, wsURL string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	status := make(chan int, 1)
	go func() { status <- run(ctx, []string{"run", "-config", path}, &stderr, &stderr) }()
	waitListening(t, wsURL, status, &stderr)
	var once sync.Once
	var code int
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-status:
			case <-time.After(30 * time.Second):
				t.Fatalf("wsgate did not stop; log:\n%s", stderr.String())
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitListening(t *testing.T, wsURL string, status chan int, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: time.Second}
		if c, _, err := d.Dial(wsURL, nil); err == nil {
			c.Close()
			return
		}
		select {
		case code := <-status:
			t.Fatalf("wsgate exited with %d:\n%s", code, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate is not listening on %s:\n%s", wsURL, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func dialDone(t *testing.T, wsURL, device string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "done" {
		t.Fatalf("negotiated %q, want done", got)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"op":"hello","id":"`+device+`"}`)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil || !bytes.Contains(msg, []byte(`"op":"welcome"`)) {
		t.Fatalf("hello: %s %v", msg, err)
	}
	return c
}

func TestGracefulShutdownClosesSessionsWith1001(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ts := testConfig(t, "")
	path, wsURL := ts.path, ts.wsURL
	stop := startInProcess(t, path, wsURL)

	var clients []*websocket.Conn
	for i := range 3 {
		clients = append(clients, dialDone(t, wsURL, fmt.Sprintf("dev-%d", i)))
	}
	codes := make(chan int, len(clients))
	for _, c := range clients {
		go func() {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					code := -1
					if ce, ok := err.(*websocket.CloseError); ok {
						code = ce.Code
					}
					codes <- code
					return
				}
			}
		}()
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	for range clients {
		if code := <-codes; code != websocket.CloseGoingAway {
			t.Errorf("client saw close code %d, want 1001", code)
		}
	}
}

func TestGracefulShutdownCutsUnresponsiveClientsAfterGrace(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ts := testConfig(t, "")
	path, wsURL := ts.path, ts.wsURL
	// A shorter grace and close timeout than the client's silence.
	doc, _ := os.ReadFile(path)
	doc = bytes.Replace(doc, []byte(`shutdown_grace = "5s"`), []byte(`shutdown_grace = "500ms"`), 1)
	doc = append(doc, []byte("\n[websocket]\nclose_timeout = \"30s\"\n")...)
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := startInProcess(t, path, wsURL)
	c := dialDone(t, wsURL, "silent") // never reads again, never answers the close
	defer c.Close()
	if code := stop(); code != 1 {
		t.Fatalf("exit status %d, want 1 (connections cut after the grace period)", code)
	}
}

func TestPythonDeviceEndToEnd(t *testing.T) {
	python := pythonWithWebsockets(t)
	ts := testConfig(t, "")
	wsURL, mqttURL := ts.wsURL, ts.mqttURL
	startInProcess(t, ts.path, wsURL)
	sub := brokertest.Subscribe(t, mqttURL, "wsgate/#")

	cmd := exec.Command(python, "testdata/device.py", wsURL, "py-sensor", "20")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("python client ended before %q; stderr:\n%s", want, stderr.String())
		}
		if got := lines.Text(); got != want {
			t.Fatalf("python client said %q, want %q; stderr:\n%s", got, want, stderr.String())
		}
	}
	expect("subprotocol done")
	expect("welcome welcome 65536")
	expect("acked 20")
	expect("ready")
	for n := 1; n <= 20; n++ {
		m := sub.Next(t, "wsgate/py-sensor/telemetry", 10*time.Second)
		if want := fmt.Sprintf(`{"n": %d}`, n); string(m.Payload) != want {
			t.Fatalf("reading %d: payload %s, want %s (unchanged, in order)", n, m.Payload, want)
		}
	}
	brokertest.Publish(t, mqttURL, "wsgate/py-sensor/cmd/set-interval", []byte(`{"s":60}`), false)
	expect(`cmd set-interval {"s": 60}`)
	result := sub.Next(t, "wsgate/py-sensor/cmd/set-interval/result", 10*time.Second)
	var r struct {
		ID   string          `json:"id"`
		OK   bool            `json:"ok"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(result.Payload, &r); err != nil || !r.OK || r.ID == "" || string(r.Data) != `{"done":1}` {
		t.Fatalf("result %s: %+v %v", result.Payload, r, err)
	}
	expect("closed 1000")
}

// pythonWithWebsockets finds a Python that has the websockets package
// (Debian's python3-websockets is for /usr/bin/python3).
func pythonWithWebsockets(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import websockets").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3 with websockets is required in CI (make test-deps installs python3-websockets)")
	}
	t.Skip("python3 with websockets not installed; run `make test-deps`")
	return ""
}

func TestCheckCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(good, []byte("[gateway]\nid = \"hub-1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("[gateway]\nid = \"hub-1\"\nshutdown_grace = \"soon\"\n\n[websocket]\npingg_interval = \"5s\"\nmax_message = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantOut    []string // lines, in order, in stdout+stderr
	}{
		{"valid", []string{"check", "-config", good}, 0, []string{good + ": ok"}},
		{"example", []string{"check", "-config", "../../config/example.toml"}, 0, []string{"../../config/example.toml: ok"}},
		{"broken", []string{"check", "-config", bad}, 1, []string{
			bad + ":3: gateway.shutdown_grace:",
		}},
		{"several problems", []string{"check", "-config", bad}, 1, []string{bad + ": "}},
		{"missing file", []string{"check", "-config", filepath.Join(dir, "nope.toml")}, 1, []string{"no such file"}},
		{"no file", []string{"check"}, 2, []string{"-config FILE is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			status := run(context.Background(), tt.args, &out, &out)
			if tt.name == "example" && strings.Contains(out.String(), "is not in this build of wsgate") {
				t.Skip("example.toml documents the full build; this test binary leaves protocols out")
			}
			if status != tt.wantStatus {
				t.Fatalf("status %d, want %d; output:\n%s", status, tt.wantStatus, out.String())
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestCheckListsEveryProblem(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.toml")
	doc := "[gateway]\nshutdown_grace = \"0s\"\n\n[websocket]\npingg_interval = \"5s\"\nmax_message = 1\n"
	if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if status := run(context.Background(), []string{"check", "-config", bad}, &out, &out); status != 1 {
		t.Fatalf("status %d, want 1", status)
	}
	want := []string{ // in line order
		bad + ":2: gateway.shutdown_grace: must be a positive duration such as \"10s\"",
		bad + ":5: websocket.pingg_interval: unknown key",
		bad + ":6: websocket.max_message: 1 is outside 128 to 67108864 bytes",
		bad + ": 3 problem(s)",
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestVersionAndProtocols(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if status := run(context.Background(), []string{"version"}, &out, &out); status != 0 || !strings.HasPrefix(out.String(), "wsgate ") {
		t.Fatalf("version: %d %q", status, out.String())
	}
	out.Reset()
	if status := run(context.Background(), []string{"protocols"}, &out, &out); status != 0 {
		t.Fatalf("protocols: %d %q", status, out.String())
	}
	for _, want := range []string{"PREF", "negotiation policy: client", "ws://:8080/"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("protocols output lacks %q:\n%s", want, out.String())
		}
	}
	for i, name := range module.DefaultOrder() {
		if want := fmt.Sprintf(`(?m)^%d\s+%s\s+builtin\s+enabled$`, i+1, name); !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("protocols output does not match %s:\n%s", want, out.String())
		}
	}
	out.Reset()
	if status := run(context.Background(), []string{"frobnicate"}, &out, &out); status != 2 || !strings.Contains(out.String(), "unknown command") {
		t.Fatalf("unknown command: %d %q", status, out.String())
	}
}

func TestAdminEndpoints(t *testing.T) {
	ts := testConfig(t, "")
	startInProcess(t, ts.path, ts.wsURL)
	c := dialDone(t, ts.wsURL, "metered")
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"t","data":1,"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != `{"op":"ack","seq":1}` {
		t.Fatalf("ack: %s %v", msg, err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + ts.adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	status, metrics := get("/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d", status)
	}
	for _, want := range []string{
		"wsgate_devices_attached 1",
		"wsgate_websocket_connections 1",
		"wsgate_mqtt_connected 1",
		"wsgate_mqtt_published_total 1",
		"wsgate_spool_frames 0",
		"go_goroutines",
	} {
		if !strings.Contains(metrics, want+"\n") && !strings.Contains(metrics, want+" ") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if status, body := get("/devices"); status != http.StatusOK || !strings.Contains(body, `"id":"metered"`) {
		t.Errorf("/devices: %d %s", status, body)
	}
	if status, _ := get("/readyz"); status != http.StatusOK {
		t.Errorf("/readyz: %d", status)
	}
	if status, _ := get("/healthz"); status != http.StatusOK {
		t.Errorf("/healthz: %d", status)
	}
}

func TestEmbeddedBrokerPortTakenSaysWhatToDo(t *testing.T) {
	ts := testConfig(t, "")
	port := strings.TrimPrefix(ts.mqttURL, "tcp://")
	ln, err := net.Listen("tcp", port) // another broker holds the port
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out syncBuffer
	if status := run(context.Background(), []string{"run", "-config", ts.path}, &out, &out); status != 1 {
		t.Fatalf("status %d, want 1", status)
	}
	if want := `set mqtt.url = \"` + ts.mqttURL + `\"`; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %s:\n%s", want, out.String())
	}
}

// TestEmbeddedBrokerLoopbackByDefault: by default the embedded broker
// listens on loopback only, so a client on the network cannot reach it.
func TestEmbeddedBrokerLoopbackByDefault(t *testing.T) {
	t.Parallel()
	host, _, err := net.SplitHostPort(config.Default().MQTT.Embedded.Address)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Fatalf("default mqtt.embedded.address %q is not a loopback address", config.Default().MQTT.Embedded.Address)
	}
	// The same default host on a free port, from outside: another
	// address of this machine.
	var outside net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			outside = n.IP
			break
		}
	}
	if outside == nil {
		t.Skip("this machine has no non-loopback IPv4 address to connect from")
	}
	ts := testConfig(t, "")
	startInProcess(t, ts.path, ts.wsURL)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ts.mqttURL, "tcp://"))
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second); err != nil {
		t.Fatalf("the broker is not on %s: %v", host, err)
	} else {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(outside.String(), port), 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("the broker took a connection on %s, a non-loopback address", outside)
	}
}

// TestBadPluginIsSkipped: a plugin that cannot run (its binary is missing,
// or its checksum does not match) is a warning for check, and run logs it
// and serves without it.
func TestBadPluginIsSkipped(t *testing.T) {
	t.Parallel()
	ts := testConfig(t, `
[[plugins]]
path = "/nonexistent/wsgate-plugin"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
protocols = ["lines.v1"]
`)
	var out bytes.Buffer
	if status := run(t.Context(), []string{"check", "-config", ts.path}, &out, &out); status != 0 ||
		!strings.Contains(out.String(), "warning: cannot read") || !strings.Contains(out.String(), "wsgate runs without this plugin") {
		t.Errorf("check: %d\n%s", status, out.String())
	}
	startInProcess(t, ts.path, ts.wsURL)
	dialDone(t, ts.wsURL, "still-served").Close()
}
