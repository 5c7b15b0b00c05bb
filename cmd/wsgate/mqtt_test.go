package main

// Tests of the MQTT side that need the real binary: a gateway process that
// is SIGKILLed (its Last Will), restarted over its spool, or restarted while
// the broker is down. The binary is built once per test run, on first use.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/gateway/spool"
)

// binDir holds the binary built for these tests; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wsgate-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// wsgateBinary builds `go build -o DIR/wsgate .` once and returns its path.
func wsgateBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "wsgate")
	buildOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// mqttTestWait bounds what should happen soon; generous for a loaded CI
// machine. Tests assert outcomes, never timing.
const mqttTestWait = 30 * time.Second

// procConfig is the configuration of one gateway process.
type procConfig struct {
	id        string
	mqttURL   string // empty: the embedded broker on embedded
	embedded  string
	spoolDir  string
	wsPort    int
	adminPort int
	keepAlive string
	done      string // the [protocols.done] table's keys; default max_inflight = 512
	mqtt      string // more keys of the [mqtt] table
	extra     string // appended to the file
	logLevel  string // default info
}

func newProcConfig(t *testing.T, id, mqttURL string) procConfig {
	ports := brokertest.FreePorts(t, 2)
	return procConfig{
		id: id, mqttURL: mqttURL, spoolDir: t.TempDir(),
		wsPort: ports[0], adminPort: ports[1], keepAlive: "2s",
	}
}

func (c procConfig) wsURL() string { return fmt.Sprintf("ws://127.0.0.1:%d/", c.wsPort) }

// write writes the TOML file and returns its path.
func (c procConfig) write(t *testing.T) string {
	t.Helper()
	embedded := ""
	if c.embedded != "" {
		embedded = fmt.Sprintf("\n[mqtt.embedded]\naddress = %q\n", c.embedded)
	}
	done := c.done
	if done == "" {
		done = "max_inflight = 512"
	}
	logLevel := c.logLevel
	if logLevel == "" {
		logLevel = "info"
	}
	doc := fmt.Sprintf(`[gateway]
id = %q
shutdown_grace = "10s"

[log]
level = %q

[websocket]
send_queue = 1024
# The devices of these tests send as fast as they can, on purpose.
message_rate = 0

[protocols.done]
%s

[[listeners]]
address = "127.0.0.1:%d"

[mqtt]
url = %q
keepalive = %q
reconnect_min = "100ms"
reconnect_max = "1s"
%s
%s
[spool]
dir = %q

[admin]
address = "127.0.0.1:%d"

[protocols]
order = ["done"]
%s`, c.id, logLevel, done, c.wsPort, c.mqttURL, c.keepAlive, c.mqtt, embedded, c.spoolDir, c.adminPort, c.extra)
	path := filepath.Join(t.TempDir(), "wsgate.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wsgateProc is a running `wsgate run` process.
type wsgateProc struct {
	t      *testing.T
	cfg    procConfig
	path   string // the configuration file
	cmd    *exec.Cmd
	log    *brokertest.Output
	exited chan struct{}
	status int
}

// startWsgate runs the binary with cfg and waits until its WebSocket
// listener accepts connections. It is killed when the test ends, and its
// log is shown if the test failed.
func startWsgate(t *testing.T, cfg procConfig) *wsgateProc {
	t.Helper()
	p := &wsgateProc{t: t, cfg: cfg, path: cfg.write(t), log: &brokertest.Output{}, exited: make(chan struct{})}
	p.cmd = exec.Command(wsgateBinary(t), "run", "-config", p.path)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.status = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("log of wsgate %s (pid %d):\n%s", cfg.id, p.cmd.Process.Pid, p.log.String())
		}
	})
	deadline := time.Now().Add(mqttTestWait)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.wsPort), time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("wsgate exited with %d at start:\n%s", p.status, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate does not listen on %d:\n%s", cfg.wsPort, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// term stops the process with SIGTERM (a graceful shutdown) and returns
// its exit status.
func (p *wsgateProc) term() int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(mqttTestWait):
		p.t.Fatalf("wsgate did not stop after SIGTERM:\n%s", p.log.String())
	}
	return p.status
}

// kill ends the process with SIGKILL: no goodbye to anyone.
func (p *wsgateProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// metrics scrapes the admin endpoint's counters and gauges (unlabelled
// ones) by name.
func (p *wsgateProc) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", p.cfg.adminPort))
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// waitReady waits until the gateway reports itself connected to the broker
// with its subscriptions in place (/readyz).
func (p *wsgateProc) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(mqttTestWait)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", p.cfg.adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate %s never became ready (connected to its broker, subscribed):\n%s", p.cfg.id, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- a done device ----

type deviceMsg struct {
	Op   string          `json:"op"`
	Seq  uint64          `json:"seq"`
	Code string          `json:"code"`
	ID   string          `json:"id"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args"`
}

// helloDevice connects as id and waits for the welcome.
func helloDevice(url, id string) (*websocket.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"hello","id":"`+id+`"}`)); err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m deviceMsg
	if err := ws.ReadJSON(&m); err != nil || m.Op != "welcome" {
		ws.Close()
		return nil, fmt.Errorf("hello as %s: %+v %v", id, m, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws, nil
}

func readDeviceMsg(t *testing.T, ws *websocket.Conn) deviceMsg {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(mqttTestWait))
	var m deviceMsg
	if err := ws.ReadJSON(&m); err != nil {
		t.Fatalf("device read: %v", err)
	}
	return m
}

type statusMsg struct {
	State    string `json:"state"`
	Protocol string `json:"protocol"`
	Gateway  string `json:"gateway"`
	Since    string `json:"since"`
}

// waitStatus waits for a status in state on topic.
func waitStatus(t *testing.T, sub *brokertest.Subscriber, topic, state string) (statusMsg, brokertest.Message) {
	t.Helper()
	deadline := time.Now().Add(mqttTestWait)
	for {
		m := sub.Next(t, topic, time.Until(deadline))
		var st statusMsg
		if err := json.Unmarshal(m.Payload, &st); err != nil {
			t.Fatalf("status on %s is not JSON: %q", topic, m.Payload)
		}
		if st.State == state {
			return st, m
		}
	}
}

// The gateway's Last Will: a SIGKILLed gateway goes offline at the broker.
// Its device stays "online" (retained) until the gateway comes back with
// the same id and cleans that stale status up.
func TestGatewayLastWillAndStaleCleanup(t *testing.T) {
	t.Parallel()
	mosq := brokertest.StartMosquitto(t)
	sub := brokertest.Subscribe(t, mosq.URL, "wsgate/#")
	cfg := newProcConfig(t, "gw-lwt", mosq.URL)
	gw := startWsgate(t, cfg)
	waitStatus(t, sub, "wsgate/$gateway/gw-lwt/status", "online")

	ws, err := helloDevice(cfg.wsURL(), "lwt-1")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitStatus(t, sub, "wsgate/lwt-1/status", "online")

	gw.kill()
	if st, m := waitStatus(t, sub, "wsgate/$gateway/gw-lwt/status", "offline"); st.Gateway != "gw-lwt" {
		t.Errorf("last will %q", m.Payload)
	}
	late := brokertest.Subscribe(t, mosq.URL, "wsgate/$gateway/gw-lwt/status")
	if m := late.Next(t, "wsgate/$gateway/gw-lwt/status", mqttTestWait); !m.Retained || !strings.Contains(string(m.Payload), `"offline"`) {
		t.Errorf("the last will is not the retained gateway status: %q retained=%v", m.Payload, m.Retained)
	}
	// Nobody could say the device went away: it is still "online".
	late = brokertest.Subscribe(t, mosq.URL, "wsgate/lwt-1/status")
	if m := late.Next(t, "wsgate/lwt-1/status", mqttTestWait); !strings.Contains(string(m.Payload), `"online"`) {
		t.Fatalf("device status after the crash: %q, want the stale online", m.Payload)
	}

	startWsgate(t, cfg)
	if st, m := waitStatus(t, sub, "wsgate/lwt-1/status", "offline"); st.Gateway != "gw-lwt" || st.Protocol != "done" {
		t.Errorf("cleaned status %q", m.Payload)
	}
	late = brokertest.Subscribe(t, mosq.URL, "wsgate/$gateway/gw-lwt/status")
	waitStatus(t, late, "wsgate/$gateway/gw-lwt/status", "online")
}

// The embedded default: without mqtt.url the binary runs its own broker;
// devices publish to it and take commands from it (sent here with the
// real mosquitto_pub).
func TestEmbeddedBrokerEndToEnd(t *testing.T) {
	t.Parallel()
	mosquittoPub := brokertest.Require(t, "mosquitto_pub")
	mqttPort := brokertest.FreePort(t)
	cfg := newProcConfig(t, "gw-emb", "")
	cfg.embedded = fmt.Sprintf("127.0.0.1:%d", mqttPort)
	brokerURL := fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort)
	gw := startWsgate(t, cfg)
	gw.waitReady(t)
	sub := brokertest.Subscribe(t, brokerURL, "wsgate/#")

	ws, err := helloDevice(cfg.wsURL(), "emb-1")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitStatus(t, sub, "wsgate/emb-1/status", "online")
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"t","seq":1,"data":{"t": 21.5}}`)); err != nil {
		t.Fatal(err)
	}
	if m := readDeviceMsg(t, ws); m.Op != "ack" || m.Seq != 1 {
		t.Fatalf("got %+v, want the ack", m)
	}
	if m := sub.Next(t, "wsgate/emb-1/t", mqttTestWait); string(m.Payload) != `{"t": 21.5}` {
		t.Fatalf("payload %q", m.Payload)
	}

	out, err := exec.Command(mosquittoPub, "-h", "127.0.0.1", "-p", strconv.Itoa(mqttPort), "-q", "1",
		"-t", "wsgate/emb-1/cmd/blink", "-m", `{"times":3}`).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	cmd := readDeviceMsg(t, ws)
	if cmd.Op != "cmd" || cmd.Name != "blink" || string(cmd.Args) != `{"times":3}` {
		t.Fatalf("device got %+v", cmd)
	}
	if err := ws.WriteJSON(map[string]any{"op": "res", "id": cmd.ID, "ok": true}); err != nil {
		t.Fatal(err)
	}
	m := sub.Next(t, "wsgate/emb-1/cmd/blink/result", mqttTestWait)
	var r struct {
		ID string `json:"id"`
		OK bool   `json:"ok"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.ID != cmd.ID || !r.OK {
		t.Fatalf("result %q", m.Payload)
	}
	ws.Close()
	waitStatus(t, sub, "wsgate/emb-1/status", "offline")
	if code := gw.term(); code != 0 {
		t.Errorf("wsgate exited with %d after SIGTERM", code)
	}
}

// ---- zero loss ----

// streamer is a device that loses nothing: it keeps every pub it has not
// seen acked, at most window of them, and after each reconnect resends
// them, oldest first, before anything new.
type streamer struct {
	url, id string
	total   uint64
	window  int

	mu       sync.Mutex
	next     uint64 // the next new seq
	unacked  map[uint64]bool
	acked    map[uint64]bool
	retry    []uint64 // nacked seqs, sent again at once
	sent     int      // pubs written, copies included
	resent   int
	nacks    int
	sessions int
	wake     chan struct{}
}

func newStreamer(url, id string, total uint64, window int) *streamer {
	return &streamer{url: url, id: id, total: total, window: window, next: 1,
		unacked: map[uint64]bool{}, acked: map[uint64]bool{}, wake: make(chan struct{}, 1)}
}

func (s *streamer) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

func (s *streamer) allAcked() bool { return s.ackedCount() == int(s.total) }

// run streams until every seq is acked or ctx ends, reconnecting as often
// as it takes.
func (s *streamer) run(ctx context.Context) error {
	for !s.allAcked() {
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d acked: %w", s.ackedCount(), s.total, ctx.Err())
		}
		ws, err := helloDevice(s.url, s.id)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.session(ctx, ws)
	}
	return nil
}

func (s *streamer) session(ctx context.Context, ws *websocket.Conn) {
	defer ws.Close()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			var m deviceMsg
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			s.mu.Lock()
			switch m.Op {
			case "ack":
				delete(s.unacked, m.Seq)
				s.acked[m.Seq] = true
			case "nack":
				s.nacks++
				s.retry = append(s.retry, m.Seq)
			}
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}()
	write := func(seq uint64) bool {
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"op":"pub","ch":"zl","seq":%d,"data":{"seq":%d}}`, seq, seq))
		if err != nil {
			ws.Close() // ends the reader too
			return false
		}
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
		return true
	}

	s.mu.Lock()
	s.sessions++
	resend := slices.Sorted(func(yield func(uint64) bool) {
		for seq := range s.unacked {
			if !yield(seq) {
				return
			}
		}
	})
	s.retry = nil
	s.resent += len(resend)
	s.mu.Unlock()
	for _, seq := range resend {
		if !write(seq) {
			<-readerDone
			return
		}
	}
	for {
		s.mu.Lock()
		if len(s.acked) == int(s.total) {
			s.mu.Unlock()
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), time.Now().Add(time.Second))
			select {
			case <-readerDone:
			case <-time.After(5 * time.Second):
			}
			return
		}
		var seq uint64
		switch {
		case len(s.retry) > 0:
			seq, s.retry = s.retry[0], s.retry[1:]
		case len(s.unacked) < s.window && s.next <= s.total:
			seq = s.next
			s.next++
			s.unacked[seq] = true
		}
		s.mu.Unlock()
		if seq != 0 {
			if !write(seq) {
				<-readerDone
				return
			}
			continue
		}
		select {
		case <-s.wake:
		case <-readerDone:
			return
		case <-ctx.Done():
			ws.Close()
			<-readerDone
			return
		}
	}
}

// waitAcked waits until at least n seqs are acked.
func waitAcked(t *testing.T, s *streamer, n int, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(mqttTestWait)
	for s.ackedCount() < n {
		select {
		case err := <-errc:
			t.Fatalf("the device stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d acked", s.ackedCount(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startStreaming runs a streamer of total QoS 1 pubs as device id until
// it has them all acked or the test ends; errc has its end.
func startStreaming(t *testing.T, url, id string, total int) (*streamer, chan error) {
	t.Helper()
	dev := newStreamer(url, id, uint64(total), 256)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	errc := make(chan error, 1)
	go func() { errc <- dev.run(ctx) }()
	t.Cleanup(func() { cancel(); err := <-errc; errc <- err })
	return dev, errc
}

// waitStreamed waits until the streamer has every pub acked.
func waitStreamed(t *testing.T, dev *streamer, errc chan error) {
	t.Helper()
	select {
	case err := <-errc:
		errc <- err // for the cleanup
		if err != nil {
			t.Fatalf("device: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("only %d of %d acked", dev.ackedCount(), dev.total)
	}
}

// Zero loss through broker and gateway restarts: a device streams QoS 1
// pubs with increasing seqs through the real binary to Mosquitto (with
// persistence). Mid-stream Mosquitto is stopped; while it is down the
// gateway is restarted gracefully over its spool (the device reconnects
// and resends what it has not seen acked), then killed with SIGKILL and
// started again (what it acked from the spool was on disk); Mosquitto comes
// back, and the gateway is killed once more while frames are in flight to
// it. A subscriber with a persistent session (clean session false, fixed
// client id, QoS 1), which Mosquitto keeps across its restart, must receive
// every acked seq, first occurrences in seq order; duplicates are allowed.
//
// Mosquitto is stopped with SIGTERM, not SIGKILL: it acknowledges a
// publish before writing it to disk (autosave), so a SIGKILLed Mosquitto
// loses frames it has acked, which no gateway can prevent.
func TestZeroLossAcrossBrokerAndGatewayRestarts(t *testing.T) {
	t.Parallel()
	const total = 20000
	mosq := brokertest.StartMosquitto(t)
	rec := collectSeqs(t, brokertest.SubscribeSession(t, mosq.URL, "wsgate/zl-1/zl", brokertest.ClientID("zl-sub")))

	cfg := newProcConfig(t, "gw-zl", mosq.URL)
	gw := startWsgate(t, cfg)
	gw.waitReady(t)

	dev, errc := startStreaming(t, cfg.wsURL(), "zl-1", total)

	var spooled, replayed float64
	scrape := func() {
		m := gw.metrics(t)
		spooled += m["wsgate_spool_written_total"]
		replayed += m["wsgate_spool_replayed_total"]
	}
	var story []string
	for _, step := range []struct {
		at   int // percent of the seqs acked
		what string
		do   func()
	}{
		{20, "broker stopped (SIGTERM)", mosq.Stop},
		{35, "gateway restarted (SIGTERM) while the broker is down", func() {
			scrape()
			if code := gw.term(); code != 0 {
				t.Errorf("wsgate exited with %d after SIGTERM", code)
			}
			gw = startWsgate(t, cfg)
		}},
		{50, "gateway killed (SIGKILL) and started while the broker is down", func() {
			scrape()
			gw.kill()
			gw = startWsgate(t, cfg)
		}},
		{65, "broker started", mosq.Start},
		{80, "gateway killed (SIGKILL) and started while the broker is up", func() {
			scrape()
			gw.kill()
			gw = startWsgate(t, cfg)
		}},
	} {
		waitAcked(t, dev, total*step.at/100, errc)
		story = append(story, fmt.Sprintf("%s at %d acked", step.what, dev.ackedCount()))
		step.do()
	}

	waitStreamed(t, dev, errc)
	// Every acked seq reaches the subscriber.
	unique := rec.waitUnique(total)
	scrape()
	if code := gw.term(); code != 0 {
		t.Errorf("wsgate exited with %d after SIGTERM", code)
	}
	got := rec.all()
	missing := missingSeqs(unique, total)
	// First occurrences in seq order.
	seen := map[uint64]bool{}
	var last uint64
	outOfOrder := 0
	for _, seq := range got {
		if seen[seq] {
			continue
		}
		seen[seq] = true
		if seq < last {
			if outOfOrder < 5 {
				t.Errorf("seq %d first arrived after %d", seq, last)
			}
			outOfOrder++
		}
		last = seq
	}
	dev.mu.Lock()
	t.Logf("steps: %s", strings.Join(story, "; "))
	t.Logf("device: %d pubs sent (%d resent after reconnects), %d acked, %d nacked, %d sessions",
		dev.sent, dev.resent, len(dev.acked), dev.nacks, dev.sessions)
	t.Logf("subscriber: %d received, %d unique, %d duplicates, %d missing, %d out of order",
		len(got), len(unique), len(got)-len(unique), len(missing), outOfOrder)
	t.Logf("gateways: %v frames spooled, %v replayed (as scraped before each stop)", spooled, replayed)
	nacks, sessions := dev.nacks, dev.sessions
	dev.mu.Unlock()

	if len(missing) > 0 {
		t.Errorf("%d acked seqs never reached the subscriber, e.g. %v", len(missing), missing[:min(10, len(missing))])
	}
	if nacks != 0 {
		t.Errorf("%d nacks: the device's window should never be refused", nacks)
	}
	if sessions < 4 {
		t.Errorf("%d device sessions: the device did not reconnect after each gateway restart", sessions)
	}
	if replayed == 0 {
		t.Errorf("nothing was replayed from the spool: the outage was not covered")
	}
	// Nothing is left behind in the spool.
	sp, err := spool.Open(filepath.Join(cfg.spoolDir, "spool.db"), spool.Limits{}, spool.Reject)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if n := sp.Len(); n != 0 {
		t.Errorf("%d frames left in the spool", n)
	}
}

// seqCollector keeps the seq of every message a subscriber receives, in
// arrival order.
type seqCollector struct {
	mu   sync.Mutex
	seqs []uint64
}

// collectSeqs reads sub until the test ends.
func collectSeqs(t *testing.T, sub *brokertest.Subscriber) *seqCollector {
	t.Helper()
	c := &seqCollector{}
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-sub.Messages:
				var p struct{ Seq uint64 }
				if err := json.Unmarshal(m.Payload, &p); err != nil || p.Seq == 0 {
					t.Errorf("unexpected payload %q", m.Payload)
					continue
				}
				c.mu.Lock()
				c.seqs = append(c.seqs, p.Seq)
				c.mu.Unlock()
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return c
}

func (c *seqCollector) all() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seqs)
}

// waitUnique waits until seqs 1..total have all arrived, or mqttTestWait
// has passed, and returns the set that arrived.
func (c *seqCollector) waitUnique(total int) map[uint64]bool {
	deadline := time.Now().Add(mqttTestWait)
	for {
		unique := map[uint64]bool{}
		for _, seq := range c.all() {
			unique[seq] = true
		}
		if len(unique) == total || time.Now().After(deadline) {
			return unique
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// missingSeqs are the seqs of 1..total not in unique.
func missingSeqs(unique map[uint64]bool, total int) []uint64 {
	var missing []uint64
	for seq := uint64(1); seq <= uint64(total); seq++ {
		if !unique[seq] {
			missing = append(missing, seq)
		}
	}
	return missing
}
