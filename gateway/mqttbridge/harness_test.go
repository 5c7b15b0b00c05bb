package mqttbridge

// The test harness: real brokers (Mosquitto from PATH, the embedded mochi
// broker), a gateway assembled like cmd/wsgate's runGateway (spool, bridge,
// router, gateway.Server with the done protocol on 127.0.0.1:0) and devices
// that are real WebSocket clients speaking done.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/spool"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done"
)

// Every test closes what it started in t.Cleanup: bridges, gateways,
// brokers, MQTT clients. Anything still running when the package's tests
// end is a leak; nothing is ignored.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds what should happen soon. It is generous on purpose: tests
// assert outcomes, never timing, and a loaded 2-core CI machine must not
// make them flake.
const wait = 30 * time.Second

// eventually polls cond until it holds or wait is over.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// gatewayLogger is the log of one gateway of the test, at debug level:
// shown if the test fails (and as it goes with WSGATE_TEST_LOG set).
func gatewayLogger(t testing.TB, id string) *slog.Logger {
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		return testLogger().With("test", t.Name(), "gateway", id)
	}
	out := &brokertest.Output{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of gateway %s:\n%s", id, out)
		}
	})
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// ---- brokers ----

// brokerKinds are the brokers every integration test runs against.
var brokerKinds = []string{"mosquitto", "embedded"}

// testBroker is a real broker the test can take away and bring back.
type testBroker struct {
	kind string
	// URL is what the gateway connects to, ClientURL what the test's own
	// clients use. They differ for the embedded broker, which the gateway
	// reaches through a cutProxy.
	URL, ClientURL string
	mosquitto      *brokertest.Mosquitto
	proxy          *cutProxy
	// nats is a three-node cluster: URL and ClientURL name its first node,
	// and node(i) gives each gateway its own.
	nats *brokertest.NATSCluster
}

// node returns the URLs a gateway of a clustered broker is given: node i
// first, the others as fallbacks. Other brokers have one URL.
func (b *testBroker) node(i int) (string, []string) {
	if b.nats == nil {
		return b.URL, nil
	}
	urls := b.nats.URLs(i)
	return urls[0], urls[1:]
}

// startBroker starts a broker of kind. Mosquitto runs with persistence and
// goes down for real (SIGTERM, then restarted on the same port and
// directory). The embedded broker keeps no state across a restart, so its
// outages are network cuts between the gateway and the broker.
func startBroker(t *testing.T, kind string) *testBroker {
	t.Helper()
	switch kind {
	case "mosquitto":
		m := brokertest.StartMosquitto(t)
		return &testBroker{kind: kind, URL: m.URL, ClientURL: m.URL, mosquitto: m}
	case "nats":
		c := brokertest.StartNATSCluster(t, 3)
		return &testBroker{kind: kind, URL: c.Nodes[0].URL, ClientURL: c.Nodes[0].URL, nats: c}
	case "embedded":
		url := brokertest.StartEmbedded(t)
		p := startCutProxy(t, strings.TrimPrefix(url, "tcp://"))
		return &testBroker{kind: kind, URL: "tcp://" + p.Addr(), ClientURL: url, proxy: p}
	}
	t.Fatalf("unknown broker kind %q", kind)
	return nil
}

// down makes the broker unreachable for the gateway.
func (b *testBroker) down() {
	if b.mosquitto != nil {
		b.mosquitto.Stop()
	} else {
		b.proxy.cut()
	}
}

// up brings it back.
func (b *testBroker) up() {
	if b.mosquitto != nil {
		b.mosquitto.Start()
	} else {
		b.proxy.restore()
	}
}

// subscribe records every message on filter. Across an outage it misses
// nothing: for Mosquitto it holds a persistent session that the broker
// keeps while it is down; the embedded broker stays up for it.
func (b *testBroker) subscribe(t *testing.T, filter string) *brokertest.Subscriber {
	t.Helper()
	if b.mosquitto != nil {
		return brokertest.SubscribeSession(t, b.ClientURL, filter, brokertest.ClientID("session"))
	}
	return brokertest.Subscribe(t, b.ClientURL, filter)
}

// cutProxy forwards TCP connections to a broker until cut: then it closes
// them all and refuses new ones until restored, like a broker that went
// away.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	isCut bool
	conns map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		isCut := p.isCut
		p.mu.Unlock()
		if isCut {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = false
}

// ---- the gateway ----

type gatewayOptions struct {
	id             string
	url            string
	fallbacks      []string    // other nodes of a broker cluster
	tls            *tls.Config // for ssl:// URLs
	spoolDir       string      // default: a fresh temp dir
	limits         spool.Limits
	policy         spool.Policy // default reject
	offlineResults bool
	shareGroup     string
	commandQoS0    bool // subscribe to commands at QoS 0, as on NATS
	clock          func() time.Time
	queue          int
	maxInflight    int
	publishTimeout time.Duration
	keepAlive      time.Duration
	connectTimeout time.Duration
	template       string
	done           *done.Config // default done.DefaultConfig()
	gatewayCmds    GatewayCommander
	qos0Conns      int // mqtt.qos0_connections
}

// testGateway is spool + bridge + router + WebSocket server, wired as
// runGateway wires them.
type testGateway struct {
	t         testing.TB
	id        string
	spool     *spool.Spool
	bridge    *Bridge
	router    *router.Router
	commands  *commandLog
	srv       *gateway.Server
	addr      string
	closeOnce sync.Once
}

// commandLog is the bridge's Commander: the router, with a record of
// every command the bridge handed it.
type commandLog struct {
	*router.Router
	mu   sync.Mutex
	seen []protocols.Command
	// stuck, when set, holds up the commands to stuckDevice until closed:
	// a session busy with its device.
	stuck       chan struct{}
	stuckDevice string
}

func (l *commandLog) Command(cmd protocols.Command) error {
	l.mu.Lock()
	l.seen = append(l.seen, cmd)
	stuck := l.stuck
	if cmd.Device != l.stuckDevice {
		stuck = nil
	}
	l.mu.Unlock()
	if stuck != nil {
		<-stuck
	}
	return l.Router.Command(cmd)
}

func (l *commandLog) forDevice(device string) []protocols.Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []protocols.Command
	for _, c := range l.seen {
		if c.Device == device {
			out = append(out, c)
		}
	}
	return out
}

func startGateway(t testing.TB, o gatewayOptions) *testGateway {
	t.Helper()
	if o.id == "" {
		o.id = "gw-test"
	}
	if o.spoolDir == "" {
		o.spoolDir = t.TempDir()
	}
	if o.policy == "" {
		o.policy = spool.Reject
	}
	if o.template == "" {
		o.template = DefaultUplinkTemplate
	}
	if o.publishTimeout == 0 {
		o.publishTimeout = 10 * time.Second
	}
	if o.keepAlive == 0 {
		o.keepAlive = 10 * time.Second
	}
	if o.connectTimeout == 0 {
		o.connectTimeout = 5 * time.Second
	}
	doneCfg := done.DefaultConfig()
	if o.done != nil {
		doneCfg = *o.done
	}
	log := gatewayLogger(t, o.id)

	sp, err := spool.Open(filepath.Join(o.spoolDir, "spool.db"), o.limits, o.policy)
	if err != nil {
		t.Fatal(err)
	}
	topics, err := NewTopics("wsgate", o.id, o.template)
	if err != nil {
		t.Fatal(err)
	}
	b := New(Config{
		URL: o.url, FallbackURLs: o.fallbacks, TLS: o.tls, ClientID: "wsgate-" + o.id, GatewayID: o.id, Topics: topics,
		KeepAlive: o.keepAlive, ConnectTimeout: o.connectTimeout,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		PublishTimeout: o.publishTimeout, Queue: o.queue, MaxInflight: o.maxInflight,
		OfflineResults: o.offlineResults, ShareGroup: o.shareGroup, CommandQoS: commandQoS(o), Clock: o.clock, Version: "test",
		GatewayCommands: o.gatewayCmds, QoS0Connections: o.qos0Conns,
	}, sp, log)
	rt := router.New(b, log)
	rt.Watch(b)
	cl := &commandLog{Router: rt}
	b.Start(cl)

	registry, err := protocols.NewRegistry([]string{done.Name})
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Register(done.New(doneCfg), "builtin"); err != nil {
		t.Fatal(err)
	}
	srv, err := gateway.New(gateway.Options{
		GatewayID: o.id, Listeners: []gateway.Listener{{Address: "127.0.0.1:0", Path: "/"}},
		PingInterval: 0, PongTimeout: 10 * time.Second, MaxMessage: 64 << 10, SendQueue: 1 << 16,
	}, registry, rt, log)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		_ = b.Close(context.Background())
		_ = sp.Close()
		t.Fatal(err)
	}
	g := &testGateway{t: t, id: o.id, spool: sp, bridge: b, router: rt, commands: cl, srv: srv, addr: srv.Addrs()[0].String()}
	t.Cleanup(g.close)
	return g
}

// close shuts down like runGateway: sessions first, then the bridge (which
// settles every accepted frame), then the spool.
func (g *testGateway) close() {
	g.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := g.srv.Shutdown(ctx); err != nil {
			g.t.Errorf("gateway shutdown: %v", err)
		}
		if err := g.bridge.Close(ctx); err != nil {
			g.t.Errorf("bridge close: %v", err)
		}
		if err := g.spool.Close(); err != nil {
			g.t.Errorf("spool close: %v", err)
		}
	})
}

func (g *testGateway) waitConnected(t testing.TB, connected bool) {
	t.Helper()
	eventually(t, fmt.Sprintf("bridge connected=%v", connected), func() bool { return g.bridge.Stats().Connected == connected })
}

// waitSynced waits until the gateway is subscribed and knows the claims
// made before: a device that connects from then on is claimed above them.
func (g *testGateway) waitSynced(t testing.TB) {
	t.Helper()
	eventually(t, "bridge synced", func() bool { return g.bridge.Stats().Synced })
}

// ---- devices ----

// inMsg is a message from the gateway to a device.
type inMsg struct {
	Op      string          `json:"op"`
	Seq     uint64          `json:"seq"`
	Code    string          `json:"code"`
	Reason  string          `json:"reason"`
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Args    json.RawMessage `json:"args"`
	Session string          `json:"session"`
	raw     []byte
}

// device is a WebSocket client speaking done.
type device struct {
	t    testing.TB
	id   string
	ws   *websocket.Conn
	in   chan inMsg // closed when the connection ends
	wmu  sync.Mutex
	done chan struct{}
	// closeCode is the code of the gateway's close frame (0 if none);
	// read once in has been closed.
	closeCode int
	session   string // from the welcome
}

// connectDevice dials the gateway, says hello as id and waits for the
// welcome.
func connectDevice(t testing.TB, addr, id string) *device {
	t.Helper()
	dialer := websocket.Dialer{Subprotocols: []string{done.Name}, HandshakeTimeout: wait}
	ws, resp, err := dialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	resp.Body.Close()
	if ws.Subprotocol() != done.Name {
		t.Fatalf("negotiated %q, want done", ws.Subprotocol())
	}
	d := &device{t: t, id: id, ws: ws, in: make(chan inMsg, 1<<16), done: make(chan struct{})}
	go d.read()
	t.Cleanup(d.close)
	d.send(map[string]any{"op": "hello", "id": id})
	m := d.next("welcome")
	if m.Session == "" {
		t.Fatalf("welcome without a session: %s", m.raw)
	}
	d.session = m.Session
	return d
}

func (d *device) read() {
	defer close(d.done)
	defer close(d.in)
	for {
		_, data, err := d.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				d.closeCode = ce.Code
			}
			return
		}
		var m inMsg
		if err := json.Unmarshal(data, &m); err != nil {
			m.Op = "invalid"
		}
		m.raw = data
		d.in <- m
	}
}

func (d *device) send(v any) {
	d.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	d.sendRaw(data)
}

func (d *device) sendRaw(data []byte) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_ = d.ws.SetWriteDeadline(time.Now().Add(wait))
	if err := d.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		d.t.Errorf("device %s: write: %v", d.id, err)
	}
}

// pub sends a pub; data is raw JSON. seq 0 sends none.
func (d *device) pub(ch, data string, seq uint64, qos int, retain bool) {
	chJSON, _ := json.Marshal(ch)
	msg := fmt.Sprintf(`{"op":"pub","ch":%s,"data":%s,"qos":%d,"retain":%v`, chJSON, data, qos, retain)
	if seq > 0 {
		msg += fmt.Sprintf(`,"seq":%d`, seq)
	}
	d.sendRaw([]byte(msg + "}"))
}

// next returns the next message, which must have one of ops.
func (d *device) next(ops ...string) inMsg {
	d.t.Helper()
	return d.nextBefore(time.Now().Add(wait), ops...)
}

// nextBefore is next with a deadline.
func (d *device) nextBefore(deadline time.Time, ops ...string) inMsg {
	d.t.Helper()
	select {
	case m, ok := <-d.in:
		if !ok {
			d.t.Fatalf("device %s: connection closed while waiting for %q", d.id, ops)
		}
		if !contains(ops, m.Op) {
			d.t.Fatalf("device %s: got %s while waiting for %q", d.id, m.raw, ops)
		}
		return m
	case <-time.After(time.Until(deadline)):
		d.t.Fatalf("device %s: no %q in time", d.id, ops)
	}
	return inMsg{}
}

// settle returns the ack or nack of seq, the next message the device gets.
func (d *device) settle(seq uint64) inMsg {
	d.t.Helper()
	m := d.next("ack", "nack")
	if m.Seq != seq {
		d.t.Fatalf("device %s: %s while waiting for the answer to %d", d.id, m.raw, seq)
	}
	return m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitClosed waits until the gateway has closed the connection and
// returns the close code.
func (d *device) waitClosed() int {
	d.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case _, open := <-d.in:
			if !open {
				return d.closeCode
			}
		case <-deadline:
			d.t.Fatalf("device %s: the gateway did not close the connection", d.id)
		}
	}
}

// close says goodbye and waits for the gateway to close the connection.
func (d *device) close() {
	d.wmu.Lock()
	_ = d.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	d.wmu.Unlock()
	select {
	case <-d.done:
	case <-time.After(wait):
	}
	d.ws.Close()
	<-d.done
}

// ---- statuses ----

type statusJSON struct {
	State    string `json:"state"`
	Protocol string `json:"protocol"`
	Gateway  string `json:"gateway"`
	Session  string `json:"session"`
	Stamp    uint64 `json:"stamp"`
	Since    string `json:"since"`
	Version  string `json:"version"`
}

func parseStatus(t testing.TB, m brokertest.Message) statusJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal(m.Payload, &st); err != nil {
		t.Fatalf("status on %s is not JSON: %q", m.Topic, m.Payload)
	}
	if _, err := time.Parse(time.RFC3339, st.Since); err != nil && st.Since != "" {
		t.Fatalf("status since %q is not RFC 3339: %v", st.Since, err)
	}
	return st
}

// nextStatus waits for a status on topic in state.
func nextStatus(t testing.TB, sub *brokertest.Subscriber, topic, state string) (statusJSON, brokertest.Message) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		m := sub.Next(t, topic, time.Until(deadline))
		if st := parseStatus(t, m); st.State == state {
			return st, m
		}
	}
}

func commandQoS(o gatewayOptions) byte {
	if o.commandQoS0 {
		return 0
	}
	return 1
}
