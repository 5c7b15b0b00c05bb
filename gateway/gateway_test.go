package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// Every test shuts its servers down in t.Cleanup; anything still running
// when the package's tests end is a leak.
//
// Idle connections park after a millisecond instead of parkAfter, so that
// the tests run every kind of wait (idle.go): a goroutine's, parked, and
// woken by bytes, by the read deadline or by Shutdown.
func TestMain(m *testing.M) {
	parkAfter = time.Millisecond
	goleak.VerifyTestMain(m)
}

// testWait is how long a test waits for something that should happen soon. It
// is generous on purpose: tests assert outcomes, never timing, and a loaded
// 2-core CI machine must not make them flake.
const testWait = 10 * time.Second

// sampleKey is the Sec-WebSocket-Key of RFC 6455 section 1.3 and
// sampleAccept its Sec-WebSocket-Accept.
const (
	sampleKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	sampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// echoProtocol is the protocol of these tests. Its sessions echo every data
// message, and text messages starting with "!" drive the outlet:
//
//	!attach ID [TOKEN]      Attach(ID), answered "attached ID" or "error ..."
//	!publish CHANNEL DATA   Publish a QoS 1 frame; its ack is answered "ack CHANNEL",
//	                        a refusal "nack CHANNEL ERROR"
//	!close CODE REASON      Outlet.Close(CODE, REASON)
//	!fail CODE REASON       OnMessage returns a *protocols.CloseError
//	!crash                  OnMessage returns a plain error
//	!panic                  OnMessage panics
//
// Commands are recorded and answered "cmd NAME"; a command named "panic"
// panics.
type echoProtocol struct {
	name     string
	refuse   error // NewSession fails with it
	sessions chan *echoSession
}

func newEchoProtocol(name string) *echoProtocol {
	return &echoProtocol{name: name, sessions: make(chan *echoSession, 256)}
}

func (p *echoProtocol) Name() string { return p.name }

func (p *echoProtocol) NewSession(_ context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	if p.refuse != nil {
		return nil, p.refuse
	}
	s := &echoSession{
		info:     info,
		out:      out,
		commands: make(chan protocols.Command, 16),
		closed:   make(chan struct{}),
	}
	select {
	case p.sessions <- s:
	default: // nobody looks at sessions this late
	}
	return s, nil
}

// next returns the next session the protocol started.
func (p *echoProtocol) next(t *testing.T) *echoSession {
	t.Helper()
	select {
	case s := <-p.sessions:
		return s
	case <-time.After(testWait):
		t.Fatalf("protocol %q started no session", p.name)
		return nil
	}
}

type echoSession struct {
	info     protocols.SessionInfo
	out      protocols.Outlet
	commands chan protocols.Command

	closed   chan struct{}
	closeErr error // set before closed is closed
}

func textMessage(s string) protocols.Message {
	return protocols.Message{Type: protocols.Text, Data: []byte(s)}
}

func (s *echoSession) OnMessage(m protocols.Message) error {
	if m.Type == protocols.Text && bytes.HasPrefix(m.Data, []byte("!")) {
		verb, arg, _ := strings.Cut(string(m.Data[1:]), " ")
		switch verb {
		case "attach":
			id, token, _ := strings.Cut(arg, " ")
			if err := s.out.Attach(protocols.Device{ID: id, Token: token}); err != nil {
				return s.out.Send(textMessage("error " + err.Error()))
			}
			return s.out.Send(textMessage("attached " + id))
		case "publish":
			channel, payload, _ := strings.Cut(arg, " ")
			err := s.out.Publish(protocols.Frame{
				Channel: channel,
				Payload: []byte(payload),
				QoS:     1,
				Ack: func(err error) {
					if err == nil {
						_ = s.out.Send(textMessage("ack " + channel))
					}
				},
			})
			if err != nil {
				return s.out.Send(textMessage("nack " + channel + " " + err.Error()))
			}
			return nil
		case "close", "fail":
			code, reason, _ := strings.Cut(arg, " ")
			n, err := strconv.Atoi(code)
			if err != nil {
				return err
			}
			if verb == "fail" {
				return &protocols.CloseError{Code: n, Reason: reason}
			}
			s.out.Close(n, reason)
			return nil
		case "crash":
			return errors.New("the session crashed")
		case "panic":
			panic("the session panicked")
		}
	}
	// m.Data is only valid during the call (the gateway reuses the buffer),
	// so a message that outlives it is a copy, as protocols/done does.
	return s.out.Send(protocols.Message{Type: m.Type, Data: bytes.Clone(m.Data)})
}

func (s *echoSession) OnCommand(cmd protocols.Command) error {
	if cmd.Name == "panic" {
		panic("the command panicked")
	}
	select {
	case s.commands <- cmd:
	default:
	}
	return s.out.Send(textMessage("cmd " + cmd.Name))
}

func (s *echoSession) Close(err error) {
	s.closeErr = err
	close(s.closed)
}

// waitClosed waits until the gateway has ended the session and returns the
// cause it gave.
func (s *echoSession) waitClosed(t *testing.T) error {
	t.Helper()
	select {
	case <-s.closed:
		return s.closeErr
	case <-time.After(testWait):
		t.Fatalf("session %s was not closed", s.info.ID)
		return nil
	}
}

// recordingSink records the frames the router delivers and acknowledges
// them at once.
type recordingSink struct {
	frames chan protocols.Frame
}

func (s *recordingSink) Deliver(f protocols.Frame) error {
	select {
	case s.frames <- f:
	default:
		return fmt.Errorf("test sink: %w", protocols.ErrBusy)
	}
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

func (s *recordingSink) next(t *testing.T) protocols.Frame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(testWait):
		t.Fatal("the sink received no frame")
		return protocols.Frame{}
	}
}

// testGateway is a real Server on a loopback port with echo protocols.
type testGateway struct {
	srv    *Server
	addr   string // host:port of the first listener
	router *router.Router
	sink   *recordingSink
	protos map[string]*echoProtocol
}

// baseOptions are the options of most tests: one listener on a free port,
// no keepalive, timeouts long enough never to fire by accident.
func baseOptions() Options {
	return Options{
		GatewayID:    "test-gw",
		Listeners:    []Listener{{Address: "127.0.0.1:0", Path: "/"}},
		CloseTimeout: testWait,
		WriteTimeout: testWait,
	}
}

// startGateway starts a server with opts serving echo protocols under
// names, in that server order ("echo" when names is empty), and shuts it
// down when the test ends.
func startGateway(t *testing.T, opts Options, names ...string) *testGateway {
	t.Helper()
	return startGatewayLog(t, opts, testLogger(), names...)
}

// startGatewayLog is startGateway with the server and router logging to log.
func startGatewayLog(t *testing.T, opts Options, log *slog.Logger, names ...string) *testGateway {
	t.Helper()
	if len(names) == 0 {
		names = []string{"echo"}
	}
	registry, err := protocols.NewRegistry(names)
	if err != nil {
		t.Fatal(err)
	}
	gw := &testGateway{
		sink:   &recordingSink{frames: make(chan protocols.Frame, 64)},
		protos: make(map[string]*echoProtocol),
	}
	for _, name := range names {
		p := newEchoProtocol(name)
		gw.protos[name] = p
		if err := registry.Register(p, "test"); err != nil {
			t.Fatal(err)
		}
	}
	gw.router = router.New(gw.sink, log)
	gw.srv, err = New(opts, registry, gw.router, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := gw.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	gw.addr = gw.srv.Addrs()[0].String()
	return gw
}

// testLogger discards logs unless WSGATE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// dial connects a gorilla client to path offering subprotocols; the
// connection is closed when the test ends.
func (gw *testGateway) dial(t *testing.T, path string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	ws, resp, err := gw.tryDial(path, subprotocols...)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s offering %q: %v %s", path, subprotocols, err, status)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

func (gw *testGateway) tryDial(path string, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: testWait, Subprotocols: subprotocols}
	ws, resp, err := d.Dial("ws://"+gw.addr+path, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return ws, resp, err
}

// readText reads the next data message and fails unless it is text equal
// to want.
func readText(t *testing.T, ws *websocket.Conn, want string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	mt, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read %q: %v", want, err)
	}
	if mt != websocket.TextMessage || string(data) != want {
		t.Fatalf("read type %d %q, want text %q", mt, data, want)
	}
}

// readUntilClose reads and discards data messages until the server closes
// the connection, and returns the close frame it sent. The gorilla client
// answers it, completing the closing handshake.
func readUntilClose(t *testing.T, ws *websocket.Conn) *websocket.CloseError {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		return ce
	}
}

func wantCloseCode(t *testing.T, ce *websocket.CloseError, code int) {
	t.Helper()
	if ce.Code != code {
		t.Fatalf("close code %d (%q), want %d", ce.Code, ce.Text, code)
	}
}

// rawConn is a client that speaks WebSocket frames itself, so that tests
// can send what gorilla would not: chosen fragments, no pong, no close
// reply.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

// dialRaw opens a TCP connection to addr, closed when the test ends.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(testWait))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// rawUpgrade performs a valid opening handshake on path offering protocol
// and returns the upgraded connection.
func rawUpgrade(t *testing.T, addr, path, protocol string) *rawConn {
	t.Helper()
	return dialRaw(t, addr).upgrade(addr, path, protocol)
}

// rawUpgradeTLS is rawUpgrade over TLS, on a TCP connection made by dial.
func rawUpgradeTLS(t *testing.T, addr, path, protocol string, dial func() (net.Conn, error)) *rawConn {
	t.Helper()
	tcp, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	nc := tls.Client(tcp, &tls.Config{InsecureSkipVerify: true})
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(testWait))
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	return rc.upgrade(addr, path, protocol)
}

// upgrade performs the opening handshake on rc's fresh connection.
func (rc *rawConn) upgrade(addr, path, protocol string) *rawConn {
	t := rc.t
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + sampleKey + "\r\n"
	if protocol != "" {
		req += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	if _, err := io.WriteString(rc.nc, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	return rc
}

type wsFrame struct {
	fin     bool
	rsv     byte // the RSV bits in place (0x40 is RSV1)
	op      byte
	payload []byte
}

// closeCode returns the status code and reason of a close frame.
func (f wsFrame) closeCode() (int, string) {
	if len(f.payload) < 2 {
		return websocket.CloseNoStatusReceived, ""
	}
	return int(binary.BigEndian.Uint16(f.payload)), string(f.payload[2:])
}

// write sends one masked frame, as a client must.
func (rc *rawConn) write(fin bool, op byte, payload []byte) {
	rc.t.Helper()
	b0 := op
	if fin {
		b0 |= 0x80
	}
	buf := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		buf = append(buf, 0x80|byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 0x80|126)
		buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	default:
		buf = append(buf, 0x80|127)
		buf = binary.BigEndian.AppendUint64(buf, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	buf = append(buf, mask[:]...)
	for i, b := range payload {
		buf = append(buf, b^mask[i%4])
	}
	if _, err := rc.nc.Write(buf); err != nil {
		rc.t.Fatalf("write frame: %v", err)
	}
}

// writeClose sends a close frame with code and reason.
func (rc *rawConn) writeClose(code int, reason string) {
	rc.t.Helper()
	rc.write(true, websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
}

// read reads one frame from the server; io.EOF means the server closed TCP.
func (rc *rawConn) read() (wsFrame, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(rc.br, hdr[:]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: hdr[0]&0x80 != 0, rsv: hdr[0] & 0x70, op: hdr[0] & 0x0F}
	if hdr[1]&0x80 != 0 {
		return wsFrame{}, errors.New("the server sent a masked frame")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(rc.br, ext[:]); err != nil {
			return wsFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(rc.br, ext[:]); err != nil {
			return wsFrame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<24 {
		return wsFrame{}, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(rc.br, f.payload); err != nil {
		return wsFrame{}, err
	}
	return f, nil
}

// readFrame reads one frame and fails the test on any error.
func (rc *rawConn) readFrame() wsFrame {
	rc.t.Helper()
	f, err := rc.read()
	if err != nil {
		rc.t.Fatalf("read frame: %v", err)
	}
	return f
}

// readClose skips pings and data frames until a close frame arrives and
// returns its code and reason; the number of pings seen is returned too.
func (rc *rawConn) readClose() (code int, reason string, pings int) {
	rc.t.Helper()
	for {
		f := rc.readFrame()
		switch f.op {
		case websocket.CloseMessage:
			code, reason = f.closeCode()
			return code, reason, pings
		case websocket.PingMessage:
			pings++
		}
	}
}

// expectEOF fails unless the server closes the TCP connection without
// sending anything more.
func (rc *rawConn) expectEOF() {
	rc.t.Helper()
	f, err := rc.read()
	if err == nil {
		rc.t.Fatalf("got frame op %d %q, want the connection closed", f.op, f.payload)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.t.Fatal("the server did not close the connection")
	}
	// io.EOF, or a reset when the server had unread bytes: both end TCP.
}

// eventually polls cond until it holds or the testWait is over.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shutdown shuts the server down within d and returns its error.
func (gw *testGateway) shutdown(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return gw.srv.Shutdown(ctx)
}

var _ protocols.Protocol = (*echoProtocol)(nil)
var _ protocols.Session = (*echoSession)(nil)
var _ router.Sink = (*recordingSink)(nil)
