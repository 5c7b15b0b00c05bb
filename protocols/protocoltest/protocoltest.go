// Package protocoltest is the contract every protocols.Protocol keeps,
// as one test suite that any implementation, in any deployment, can run:
// compiled into the gateway, or out of process behind plugins/sdk. The
// promise of "one contract, two deployments" is that both pass it alike.
//
// Run serves the protocol under test, wrapped in Faulty (which adds the
// faults and probes the suite needs), on a real gateway.Server over TLS,
// and drives it with real WebSocket clients through the protocol's Driver:
// attach and replace, frames (every field arriving as published), command
// results and the gateway's timeout, a panic closing one session only,
// Publish failing fast with busy, NewSession's close code, GoingAway at
// shutdown, and the TLS state reaching the session.
//
// It depends on the gateway (it runs one); the gateway does not depend
// on it.
package protocoltest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// Driver speaks a protocol as a device does.
type Driver interface {
	// Path is the request path a device with this id connects to.
	Path(device string) string
	// Attach does what makes the session attach as device (a hello),
	// and waits until it has.
	Attach(t testing.TB, c *Conn, device string)
	// Publish sends one reading and waits until the protocol acknowledges
	// it, when it does.
	Publish(t testing.TB, c *Conn, seq int)
	// Command is a command the device understands: its name and
	// arguments.
	Command() (name string, args json.RawMessage)
	// Answer reads the next command from c and answers that it worked.
	Answer(t testing.TB, c *Conn)
}

// Setup is what Run needs.
type Setup struct {
	Driver Driver
	// Register puts Faulty(the protocol under test) into the registry,
	// under the name protocols.Registry was made with (Name).
	Register func(t *testing.T, r *protocols.Registry)
	Name     string
}

// commandTimeout is the gateway's in the suite: long enough for any answer
// on a loaded machine, short enough to wait for.
const commandTimeout = 2 * time.Second

// wait bounds what should happen soon; tests assert outcomes, not timing.
const wait = 15 * time.Second

// Run runs the contract suite.
func Run(t *testing.T, s Setup) {
	tests := []struct {
		name string
		test func(t *testing.T, g *testGateway, s Setup)
	}{
		{"attach and publish", testAttachPublish},
		{"every field of a frame", testFrameFields},
		{"replace", testReplace},
		{"command result", testCommandResult},
		{"command timeout", testCommandTimeout},
		{"panic closes only its session", testPanic},
		{"publish fails fast with busy", testBusy},
		{"NewSession close code", testNewSessionError},
		{"TLS state", testTLS},
		{"GoingAway at shutdown", testGoingAway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, startGateway(t, s), s) })
	}
}

// Conn is a device's connection.
type Conn struct {
	*websocket.Conn
}

// Read returns the next message, failing the test after a while.
func (c *Conn) Read(t testing.TB) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, msg, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return msg
}

// Write sends a text message.
func (c *Conn) Write(t testing.TB, msg []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(wait))
	if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// ReadUntil reads until a message for which match is true and returns it.
func (c *Conn) ReadUntil(t testing.TB, match func([]byte) bool) []byte {
	t.Helper()
	for {
		if msg := c.Read(t); match(msg) {
			return msg
		}
	}
}

// closed reads until the close frame and returns it.
func (c *Conn) closed(t testing.TB) *websocket.CloseError {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
	}
}

// sink records what the router delivers, or refuses it busy.
type sink struct {
	frames chan protocols.Frame
	busy   atomic.Bool
}

func (s *sink) Deliver(f protocols.Frame) error {
	if s.busy.Load() {
		return fmt.Errorf("contract sink: %w", protocols.ErrBusy)
	}
	select {
	case s.frames <- f:
	default:
		return fmt.Errorf("contract sink full: %w", protocols.ErrBusy)
	}
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

// next returns the next frame on channel, skipping others.
func (s *sink) next(t testing.TB, channelPrefix string) protocols.Frame {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case f := <-s.frames:
			if strings.HasPrefix(f.Channel, channelPrefix) {
				return f
			}
		case <-deadline:
			t.Fatalf("no frame on %s*", channelPrefix)
			return protocols.Frame{}
		}
	}
}

type testGateway struct {
	srv      *gateway.Server
	router   *router.Router
	sink     *sink
	url      string
	shutdown sync.Once
}

// stop shuts the server down (once, whoever asks first).
func (g *testGateway) stop() {
	g.shutdown.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = g.srv.Shutdown(ctx)
	})
}

func startGateway(t *testing.T, s Setup) *testGateway {
	t.Helper()
	registry, err := protocols.NewRegistry([]string{s.Name})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(t, registry)
	log := slog.New(slog.DiscardHandler)
	g := &testGateway{sink: &sink{frames: make(chan protocols.Frame, 1024)}}
	g.router = router.New(g.sink, log)
	g.srv, err = gateway.New(gateway.Options{
		GatewayID:      "contract",
		Listeners:      []gateway.Listener{{Address: "127.0.0.1:0", Path: "/", TLSConfig: serverTLS(t)}},
		CommandTimeout: commandTimeout, CloseTimeout: wait, WriteTimeout: wait, HandshakeTimeout: wait,
	}, registry, g.router, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)
	g.url = "wss://" + g.srv.Addrs()[0].String()
	return g
}

// dial connects a device at path.
func (g *testGateway) dial(t *testing.T, path string, name string) *Conn {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Subprotocols: []string{name}, HandshakeTimeout: wait}
	ws, _, err := d.Dial(g.url+path, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { ws.Close() })
	return &Conn{ws}
}

// device connects a device and attaches it.
func (g *testGateway) device(t *testing.T, s Setup, id string) *Conn {
	t.Helper()
	c := g.dial(t, s.Driver.Path(id), s.Name)
	s.Driver.Attach(t, c, id)
	return c
}

func testAttachPublish(t *testing.T, g *testGateway, s Setup) {
	c := g.device(t, s, "dev-1")
	if devs := g.router.Devices(); len(devs) != 1 || devs[0].ID != "dev-1" || devs[0].Protocol != s.Name {
		t.Fatalf("attached %+v", devs)
	}
	s.Driver.Publish(t, c, 1)
	// The protocol's frame, whatever its channel: it names the device.
	select {
	case f := <-g.sink.frames:
		if f.Device != "dev-1" {
			t.Errorf("frame of %q, want dev-1", f.Device)
		}
	case <-time.After(wait):
		t.Fatal("no frame")
	}
}

// testFrameFields: what a session publishes reaches the router as it was
// published, every field: a plugin's frames cross a process boundary.
func testFrameFields(t *testing.T, g *testGateway, s Setup) {
	c := g.device(t, s, "dev-1")
	c.Write(t, []byte(Magic+"frame"))
	want := fullFrame()
	want.Device = "dev-1"
	checkFrame(t, g.sink.next(t, want.Channel), want, true)
	if answer := string(c.ReadUntil(t, func(m []byte) bool { return strings.HasPrefix(string(m), "frame ") })); answer != "frame <nil>" {
		t.Errorf("the session's ack said %q, want <nil>", answer)
	}
	plain := protocols.Frame{Device: "dev-1", Channel: "contract/frame/plain", Payload: []byte("0")}
	checkFrame(t, g.sink.next(t, plain.Channel), plain, false)
}

// checkFrame compares every field of got with want but the Ack, which must
// be set or not as acked says: a field added to protocols.Frame is
// compared too.
func checkFrame(t *testing.T, got, want protocols.Frame, acked bool) {
	t.Helper()
	hasAck := got.Ack != nil
	got.Ack = nil
	if !reflect.DeepEqual(got, want) || hasAck != acked {
		t.Errorf("frame %+v (ack set: %v), want %+v (ack set: %v)", got, hasAck, want, acked)
	}
}

func testReplace(t *testing.T, g *testGateway, s Setup) {
	first := g.device(t, s, "dev-1")
	second := g.device(t, s, "dev-1")
	if ce := first.closed(t); ce.Code != protocols.CloseReplaced {
		t.Errorf("the replaced session closed with %d %q, want %d", ce.Code, ce.Text, protocols.CloseReplaced)
	}
	s.Driver.Publish(t, second, 1)
}

func testCommandResult(t *testing.T, g *testGateway, s Setup) {
	c := g.device(t, s, "dev-1")
	name, args := s.Driver.Command()
	if err := g.router.Command(protocols.Command{Device: "dev-1", ID: "m1", Name: name, Args: args}); err != nil {
		t.Fatal(err)
	}
	s.Driver.Answer(t, c)
	f := g.sink.next(t, protocols.ResultChannel(name))
	var r protocols.Result
	if err := json.Unmarshal(f.Payload, &r); err != nil || r.ID != "m1" || !r.OK {
		t.Errorf("result %s, want m1 ok", f.Payload)
	}
}

func testCommandTimeout(t *testing.T, g *testGateway, s Setup) {
	_ = g.device(t, s, "dev-1") // never answers
	name, args := s.Driver.Command()
	if err := g.router.Command(protocols.Command{Device: "dev-1", ID: "m1", Name: name, Args: args}); err != nil {
		t.Fatal(err)
	}
	f := g.sink.next(t, protocols.ResultChannel(name))
	if string(f.Payload) != `{"id":"m1","ok":false,"error":"timeout"}` {
		t.Errorf("result %s, want the gateway's timeout", f.Payload)
	}
	select {
	case f := <-g.sink.frames:
		if strings.HasPrefix(f.Channel, "cmd/") {
			t.Errorf("a second result: %s %s", f.Channel, f.Payload)
		}
	case <-time.After(commandTimeout):
	}
}

func testPanic(t *testing.T, g *testGateway, s Setup) {
	victim := g.device(t, s, "dev-1")
	bystander := g.device(t, s, "dev-2")
	victim.Write(t, []byte(Magic+"panic"))
	if ce := victim.closed(t); ce.Code != protocols.CloseInternalError {
		t.Errorf("the panicking session closed with %d %q, want 1011", ce.Code, ce.Text)
	}
	s.Driver.Publish(t, bystander, 1)
	again := g.device(t, s, "dev-3")
	s.Driver.Publish(t, again, 1)
}

func testBusy(t *testing.T, g *testGateway, s Setup) {
	c := g.device(t, s, "dev-1")
	g.sink.busy.Store(true)
	c.Write(t, []byte(Magic+"busy"))
	answer := string(c.ReadUntil(t, func(m []byte) bool { return strings.HasPrefix(string(m), "busy ") }))
	if !IsBusy(answer) {
		t.Errorf("answer %q, want ErrBusy", answer)
	}
	g.sink.busy.Store(false)
	s.Driver.Publish(t, c, 2)
}

func testNewSessionError(t *testing.T, g *testGateway, s Setup) {
	c := g.dial(t, "/refuse", s.Name)
	if ce := c.closed(t); ce.Code != RefuseCode || ce.Text != RefuseReason {
		t.Errorf("closed with %d %q, want %d %q", ce.Code, ce.Text, RefuseCode, RefuseReason)
	}
}

func testTLS(t *testing.T, g *testGateway, s Setup) {
	c := g.device(t, s, "dev-1")
	c.Write(t, []byte(Magic+"tls"))
	answer := string(c.ReadUntil(t, func(m []byte) bool { return strings.HasPrefix(string(m), "tls ") }))
	if answer != fmt.Sprintf("tls %d", tls.VersionTLS13) {
		t.Errorf("the session saw %q, want TLS 1.3", answer)
	}
}

func testGoingAway(t *testing.T, g *testGateway, s Setup) {
	c := g.device(t, s, "dev-1")
	go g.stop()
	c.ReadUntil(t, func(m []byte) bool { return string(m) == "going-away" })
	if ce := c.closed(t); ce.Code != protocols.CloseGoingAway {
		t.Errorf("closed with %d %q, want 1001", ce.Code, ce.Text)
	}
}

// serverTLS is a throwaway certificate for 127.0.0.1.
func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "contract"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
}
