package ship_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// Every test shuts its servers, dials and peers down in t.Cleanup; a
// goroutine still running when the package's tests end is a leak (a
// session's wait for the user's decision, a timer's tick, a dial loop).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testWait bounds every wait for something that should happen soon. It is
// generous on purpose: the tests assert outcomes, never timing.
const testWait = 10 * time.Second

// journal records events of one kind for tests to wait on.
type journal[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced on every add
}

func newJournal[T any]() *journal[T] {
	return &journal[T]{changed: make(chan struct{})}
}

func (j *journal[T]) add(v T) {
	j.mu.Lock()
	j.items = append(j.items, v)
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
}

// find returns the first item that matches.
func (j *journal[T]) find(match func(T) bool) (T, bool) {
	return j.nth(1, match)
}

// nth returns the nth item (counting from 1) that matches.
func (j *journal[T]) nth(n int, match func(T) bool) (T, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, v := range j.items {
		if match(v) {
			if n--; n == 0 {
				return v, true
			}
		}
	}
	var zero T
	return zero, false
}

// wait returns the first item that matches, waiting up to testWait for it.
func (j *journal[T]) wait(t *testing.T, what string, match func(T) bool) T {
	t.Helper()
	return j.waitNth(t, what, 1, match)
}

// waitNth returns the nth item (counting from 1) that matches, waiting up
// to testWait for it.
func (j *journal[T]) waitNth(t *testing.T, what string, n int, match func(T) bool) T {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	for {
		j.mu.Lock()
		changed := j.changed
		j.mu.Unlock()
		if v, ok := j.nth(n, match); ok {
			return v
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s", testWait, what)
		}
	}
}

// logRecord is one captured log line: its level, its message and its
// attributes (those of the logger's With included) as text.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r logRecord) String() string { return fmt.Sprintf("%s %s %v", r.level, r.msg, r.attrs) }

// captureHandler records every log line in a journal, so that tests can
// wait for what a session did (the close code it chose, for one). With
// WSGATE_TEST_LOG set it also prints them.
type captureHandler struct {
	book  *journal[logRecord]
	name  string
	attrs []slog.Attr
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: make(map[string]string)}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.Resolve().String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Resolve().String()
		return true
	})
	h.book.add(rec)
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		fmt.Fprintf(os.Stderr, "[%s] %s\n", h.name, rec)
	}
	return nil
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureHandler{book: h.book, name: h.name, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *captureHandler) WithGroup(string) slog.Handler { return h }

// recordingSink stands in for the MQTT bridge: it records the frames the
// router delivers and acknowledges them at once.
type recordingSink struct{ frames *journal[protocols.Frame] }

func (s recordingSink) Deliver(f protocols.Frame) error {
	f.Payload = bytes.Clone(f.Payload)
	s.frames.add(f)
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

// presenceEvent is one Attached or Detached call of the router.
type presenceEvent struct {
	device   string
	attached bool
}

type presence struct{ events *journal[presenceEvent] }

func (p presence) Attached(d router.Device) { p.events.add(presenceEvent{d.ID, true}) }
func (p presence) Detached(d router.Device) { p.events.add(presenceEvent{d.ID, false}) }

// nodeOptions configure one wsgate SHIP node of a test.
type nodeOptions struct {
	shipID     string // "" for identity.DefaultSHIPID
	autoAccept bool
	machine    machine.Config
	maxMessage int64 // the listener's limit; 0: none
}

// node is one wsgate with the ship protocol: its own identity and trust
// store in a temporary directory, a gateway.Server with a SHIP listener on
// a free loopback port, and a router whose sink records the frames.
type node struct {
	name   string
	id     *identity.Identity
	store  *trust.Store
	p      *ship.Protocol
	srv    *gateway.Server
	rt     *router.Router
	frames *journal[protocols.Frame]
	dev    *journal[presenceEvent]
	logs   *journal[logRecord]
	url    string // wss://127.0.0.1:port/ship/
}

// startNode starts a node and shuts it down when the test ends.
func startNode(t *testing.T, name string, o nodeOptions) *node {
	t.Helper()
	dir := t.TempDir()
	id, err := identity.LoadOrCreate(filepath.Join(dir, "identity"), identity.Subject{CommonName: name, SHIPID: o.shipID})
	if err != nil {
		t.Fatal(err)
	}
	store, err := trust.Open(filepath.Join(dir, "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		name: name, id: id, store: store,
		frames: newJournal[protocols.Frame](), dev: newJournal[presenceEvent](), logs: newJournal[logRecord](),
	}
	log := slog.New(&captureHandler{book: n.logs, name: name})
	n.p, err = ship.New(ship.Options{Identity: id, Trust: store, AutoAccept: o.autoAccept, Machine: o.machine, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	registry, err := protocols.NewRegistry([]string{ship.Name})
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Register(n.p, "builtin"); err != nil {
		t.Fatal(err)
	}
	n.rt = router.New(recordingSink{n.frames}, log)
	n.rt.Watch(presence{n.dev})
	n.srv, err = gateway.New(gateway.Options{
		GatewayID: name,
		Listeners: []gateway.Listener{{
			Address: "127.0.0.1:0", Path: "/ship/", Protocols: []string{ship.Name}, Fallback: ship.Name,
			TLSConfig: n.p.ServerTLS(), MaxMessage: o.maxMessage,
		}},
		CloseTimeout: testWait, WriteTimeout: testWait, HandshakeTimeout: testWait,
	}, registry, n.rt, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := n.srv.Shutdown(ctx); err != nil {
			t.Errorf("%s: shutdown: %v", name, err)
		}
	})
	n.url = "wss://" + n.srv.Addrs()[0].String() + "/ship/"
	return n
}

// waitAttached waits until the node's router has device attached.
func (n *node) waitAttached(t *testing.T, device string) {
	t.Helper()
	n.dev.wait(t, n.name+" attaching "+device, func(e presenceEvent) bool { return e.attached && e.device == device })
}

// waitDetached waits until the node's router has detached device.
func (n *node) waitDetached(t *testing.T, device string) {
	t.Helper()
	n.dev.wait(t, n.name+" detaching "+device, func(e presenceEvent) bool { return !e.attached && e.device == device })
}

// waitEnded waits until the node's session with the peer whose SKI is ski
// has ended. The gateway detaches a device from the router before it
// closes the device's session, so the protocol counts the session out of
// Stats().Connected only after waitDetached has returned.
func (n *node) waitEnded(t *testing.T, ski string) {
	t.Helper()
	n.waitLog(t, "SHIP connection ended", map[string]string{"ski": ski})
}

// waitFrame waits for a frame of device on channel.
func (n *node) waitFrame(t *testing.T, device, channel string) protocols.Frame {
	t.Helper()
	return n.frames.wait(t, fmt.Sprintf("%s: a frame of %s on %q", n.name, device, channel), func(f protocols.Frame) bool {
		return f.Device == device && f.Channel == channel
	})
}

// waitLog waits for a log line with message msg whose attributes contain
// every key and value of want (a value matches when it is contained).
func (n *node) waitLog(t *testing.T, msg string, want map[string]string) logRecord {
	t.Helper()
	return n.logs.wait(t, fmt.Sprintf("%s logging %q with %v", n.name, msg, want), func(r logRecord) bool {
		if r.msg != msg {
			return false
		}
		for k, v := range want {
			if !strings.Contains(r.attrs[k], v) {
				return false
			}
		}
		return true
	})
}

// waitPending waits until ski is pending in the node's trust store.
func (n *node) waitPending(t *testing.T, ski string) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		if e, ok := n.store.Get(ski); ok && e.State == trust.Pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never pending", n.name, ski)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runPeers runs the node's dialler until the test ends: it dials the
// targets through the node's gateway, without the reconnect delays of
// section 7, and it is what ends a session whose peer the user removes or
// rejects.
func (n *node) runPeers(t *testing.T, targets ...ship.Target) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		dial := func(ctx context.Context, url string, tlsConfig *tls.Config, p protocols.Protocol) error {
			return n.srv.Dial(ctx, gateway.DialOptions{URL: url, TLSConfig: tlsConfig}, p)
		}
		delays := []ship.DelayRange{{Max: time.Millisecond}}
		if err := n.p.NewPeers(dial, delays).Run(ctx, targets); err != nil {
			t.Errorf("%s: peers: %v", n.name, err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// dialing is a connection the node dials with gateway.Server.Dial.
type dialing struct {
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// dial connects n as SHIP client to the SHIP server at url whose key is
// ski, expecting SHIP ID shipID ("" accepts any), the way Peers does:
// ForPeer gives the protocol and the TLS configuration. n trusts ski first,
// as Peers.Run does for the configured targets.
func (n *node) dial(t *testing.T, url, ski, shipID string) *dialing {
	t.Helper()
	if err := n.store.Approve(ski); err != nil {
		t.Fatal(err)
	}
	proto, tlsConfig := n.p.ForPeer(ship.Target{SKI: ski, SHIPID: shipID, URL: url})
	ctx, cancel := context.WithCancel(context.Background())
	d := &dialing{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(d.done)
		d.err = n.srv.Dial(ctx, gateway.DialOptions{URL: url, TLSConfig: tlsConfig}, proto)
	}()
	t.Cleanup(func() { cancel(); <-d.done })
	return d
}

// wait waits until the dialled connection has ended and returns Dial's
// error.
func (d *dialing) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-d.done:
		return d.err
	case <-time.After(testWait):
		t.Fatal("the dialled connection did not end")
		return nil
	}
}

// newIdentity makes a SHIP identity for a scripted peer.
func newIdentity(t *testing.T, shipID string) *identity.Identity {
	t.Helper()
	id, err := identity.LoadOrCreate(t.TempDir(), identity.Subject{CommonName: "scripted", SHIPID: shipID})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// wire is one end of a SHIP connection a test scripts by hand.
type wire struct {
	t  *testing.T
	ws *websocket.Conn
}

// dialWire connects a scripted SHIP client with identity id to n's
// listener, checking that it is n (its SKI) and that "ship" is spoken.
func dialWire(t *testing.T, id *identity.Identity, n *node) *wire {
	t.Helper()
	d := websocket.Dialer{
		TLSClientConfig:  identity.ClientTLSConfig(id, identity.TLSOptions{ExpectedPeerSKI: n.id.SKI}),
		Subprotocols:     []string{ship.Name},
		HandshakeTimeout: testWait,
	}
	ws, resp, err := d.Dial(n.url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", n.url, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != ship.Name {
		ws.Close()
		t.Fatalf("subprotocol %q, want %q", got, ship.Name)
	}
	t.Cleanup(func() { ws.Close() })
	return &wire{t: t, ws: ws}
}

func (w *wire) send(msg []byte) {
	w.t.Helper()
	_ = w.ws.SetWriteDeadline(time.Now().Add(testWait))
	if err := w.ws.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		w.t.Fatalf("send %q: %v", msg, err)
	}
}

func (w *wire) sendText(s string) {
	w.t.Helper()
	_ = w.ws.SetWriteDeadline(time.Now().Add(testWait))
	if err := w.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		w.t.Fatalf("send text: %v", err)
	}
}

// next reads the next message, which must be binary.
func (w *wire) next() []byte {
	w.t.Helper()
	_ = w.ws.SetReadDeadline(time.Now().Add(testWait))
	mt, msg, err := w.ws.ReadMessage()
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	if mt != websocket.BinaryMessage {
		w.t.Fatalf("message type %d, want binary: %q", mt, msg)
	}
	return msg
}

// expect reads the next message and checks its bytes.
func (w *wire) expect(want []byte) {
	w.t.Helper()
	if got := w.next(); !bytes.Equal(got, want) {
		w.t.Fatalf("received\n %q\nwant\n %q", got, want)
	}
}

// untilClose reads until the peer's close frame, closes the connection and
// returns the messages before the close frame and the close.
func (w *wire) untilClose() ([][]byte, *websocket.CloseError) {
	w.t.Helper()
	var msgs [][]byte
	_ = w.ws.SetReadDeadline(time.Now().Add(testWait))
	for {
		mt, msg, err := w.ws.ReadMessage()
		var ce *websocket.CloseError
		switch {
		case errors.As(err, &ce):
			// gorilla has answered the close frame; the connection is
			// done, and wsgate need not wait for the TCP close.
			w.ws.Close()
			return msgs, ce
		case err != nil:
			w.t.Fatalf("read until close (after %q): %v", msgs, err)
		case mt != websocket.BinaryMessage:
			w.t.Fatalf("message type %d, want binary: %q", mt, msg)
		}
		msgs = append(msgs, msg)
	}
}

// expectClose reads until the close and checks that exactly before came
// first, then the close code and reason.
func (w *wire) expectClose(before [][]byte, code int, reason string) {
	w.t.Helper()
	w.checkClose(before, code, reason, func(got string) bool { return got == reason })
}

// expectCloseContaining is expectClose for a reason that contains reason.
func (w *wire) expectCloseContaining(before [][]byte, code int, reason string) {
	w.t.Helper()
	w.checkClose(before, code, "…"+reason+"…", func(got string) bool { return strings.Contains(got, reason) })
}

func (w *wire) checkClose(before [][]byte, code int, want string, reasonOK func(string) bool) {
	w.t.Helper()
	msgs, ce := w.untilClose()
	if !slices.EqualFunc(msgs, before, bytes.Equal) {
		w.t.Errorf("before the close received %q, want %q", msgs, before)
	}
	if ce.Code != code || !reasonOK(ce.Text) {
		w.t.Errorf("close %d %q, want %d %q", ce.Code, ce.Text, code, want)
	}
}

// scriptedServer is a SHIP server a test scripts by hand, for wsgate's
// client role: a TLS listener with its own identity and a WebSocket
// upgrader that hands every connection to the test.
type scriptedServer struct {
	id    *identity.Identity
	url   string
	conns chan *websocket.Conn
}

func startScriptedServer(t *testing.T, shipID string) *scriptedServer {
	t.Helper()
	s := &scriptedServer{id: newIdentity(t, shipID), conns: make(chan *websocket.Conn, 4)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{Subprotocols: []string{ship.Name}, HandshakeTimeout: testWait}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			select {
			case s.conns <- ws:
			default:
				ws.Close()
			}
		}),
		ReadHeaderTimeout: testWait,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(tls.NewListener(ln, identity.ServerTLSConfig(s.id, identity.TLSOptions{})))
	}()
	t.Cleanup(func() {
		hs.Close()
		<-served
		for {
			select {
			case ws := <-s.conns:
				ws.Close()
			default:
				return
			}
		}
	})
	s.url = "wss://" + ln.Addr().String() + "/ship/"
	return s
}

// accept waits for wsgate's connection.
func (s *scriptedServer) accept(t *testing.T) *wire {
	t.Helper()
	select {
	case ws := <-s.conns:
		if ws.Subprotocol() != ship.Name {
			t.Fatalf("subprotocol %q", ws.Subprotocol())
		}
		t.Cleanup(func() { ws.Close() })
		return &wire{t: t, ws: ws}
	case <-time.After(testWait):
		t.Fatal("wsgate did not connect")
		return nil
	}
}

// step is one move of a scripted peer: send a message, or receive exactly
// one.
type step struct {
	send, expect []byte
}

// The states a wsgate SHIP server waits in, in handshake order, and the
// stage of the scripted client's handshake that brings it there.
const (
	waitCMI = iota
	waitHello
	waitProtocol
	waitPIN
	waitAccess
	dataExchange
)

var waitNames = []string{"CMI", "hello", "protocol handshake", "PIN", "access methods", "data exchange"}

// clientStages is the scripted client's side of a handshake with a
// trusting wsgate server that says waiting serverWait and SHIP ID
// serverID, with wsgate's exact replies: running stages [0, k) leaves
// wsgate waiting in state k.
func clientStages(serverWait time.Duration, serverID, peerID string) [][]step {
	return [][]step{
		waitCMI:      {{send: shiptest.CMI}, {expect: shiptest.CMI}, {expect: shiptest.Hello("ready", serverWait)}},
		waitHello:    {{send: shiptest.HelloReady}},
		waitProtocol: {{send: shiptest.AnnounceMax}, {expect: shiptest.Select}, {send: shiptest.Select}, {expect: shiptest.PINNone}},
		waitPIN:      {{send: shiptest.PINNone}, {expect: shiptest.AccessMethodsRequest}, {send: shiptest.AccessMethodsRequest}, {expect: shiptest.AccessMethods(serverID)}},
		waitAccess:   {{send: shiptest.AccessMethods(peerID)}},
	}
}

// serverSteps is the scripted server's side of a handshake with a wsgate
// client that says waiting clientWait and SHIP ID clientID, with wsgate's
// exact messages; the server answers with SHIP ID serverID.
func serverSteps(clientWait time.Duration, clientID, serverID string) []step {
	return []step{
		{expect: shiptest.CMI}, {send: shiptest.CMI},
		{expect: shiptest.Hello("ready", clientWait)}, {send: shiptest.HelloReady},
		{expect: shiptest.AnnounceMax}, {send: shiptest.Select}, {expect: shiptest.Select}, {expect: shiptest.PINNone},
		{send: shiptest.PINNone}, {expect: shiptest.AccessMethodsRequest}, {send: shiptest.AccessMethodsRequest}, {expect: shiptest.AccessMethods(clientID)},
		{send: shiptest.AccessMethods(serverID)},
	}
}

// run plays steps.
func (w *wire) run(steps []step) {
	w.t.Helper()
	for _, s := range steps {
		if s.send != nil {
			w.send(s.send)
		} else {
			w.expect(s.expect)
		}
	}
}

// handshakeTo plays the stages before state k.
func (w *wire) handshakeTo(stages [][]step, k int) {
	w.t.Helper()
	for _, st := range stages[:k] {
		w.run(st)
	}
}

// traceDir holds the traces of ship.md section 10 and the plain JSON of
// their data message.
var traceDir = filepath.Join("eebus", "testdata")

// readTrace reads the trace file name of traceDir.
func readTrace(t *testing.T, name string) []shiptest.TraceLine {
	t.Helper()
	return shiptest.ReadTrace(t, filepath.Join(traceDir, name))
}

// tracePlain is the SPINE datagram of the traces' data message in plain
// JSON, compact: what the router must get, and what a spine command sends.
func tracePlain(t *testing.T) []byte {
	t.Helper()
	return shiptest.ReadPlainDatagram(t, filepath.Join(traceDir, "data-plain.json"))
}

// shuffledPlain is tracePlain with the keys of its objects in other
// orders, as a publisher's JSON library may write them, compact.
func shuffledPlain(t *testing.T) []byte {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(traceDir, "datagram-shuffled.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
