package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// TestEcho runs messages through a session and back, text and binary, many
// in a row so that the read buffer is reused while replies are queued.
func TestEcho(t *testing.T) {
	t.Parallel()
	// Every message is answered and the client sends them all at once,
	// far more than the send queue holds (64 by default): a device that
	// reads its answers is never cut off as too slow, however far the
	// gateway's reader gets ahead of its writer.
	const n = 500
	gw := startGateway(t, baseOptions())
	ws := gw.dial(t, "/", "echo")
	if got := ws.Subprotocol(); got != "echo" {
		t.Fatalf("subprotocol %q", got)
	}
	s := gw.protos["echo"].next(t)
	if s.info.Subprotocol != "echo" || s.info.Path != "/" || s.info.Gateway != "test-gw" || s.info.ID == "" {
		t.Errorf("session info %+v", s.info)
	}

	go func() {
		for i := range n {
			mt := websocket.TextMessage
			if i%2 == 1 {
				mt = websocket.BinaryMessage
			}
			msg := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*37%3000)
			if err := ws.WriteMessage(mt, msg); err != nil {
				return // the reads below fail the test
			}
		}
	}()
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	for i := range n {
		mt, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		want := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*37%3000)
		if wantType := websocket.TextMessage + i%2; mt != wantType || !bytes.Equal(data, want) {
			t.Fatalf("message %d: type %d, %d bytes %.10q..., want type %d, %d bytes %.10q...",
				i, mt, len(data), data, wantType, len(want), want)
		}
	}
	if n := gw.srv.Connections(); n != 1 {
		t.Errorf("Connections() = %d, want 1", n)
	}
}

// TestPublishAndCommand goes through the router both ways: a frame from the
// device reaches the sink with the attached device id and its ack reaches
// the session; a command for the device reaches the session.
func TestPublishAndCommand(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	ws := gw.dial(t, "/", "echo")
	s := gw.protos["echo"].next(t)

	if err := ws.WriteMessage(websocket.TextMessage, []byte("!attach dev-1")); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "attached dev-1")
	devs := gw.router.Devices()
	if len(devs) != 1 || devs[0].ID != "dev-1" || devs[0].Protocol != "echo" || devs[0].Session != s.info.ID {
		t.Fatalf("router devices %+v", devs)
	}

	if err := ws.WriteMessage(websocket.TextMessage, []byte("!publish sensors/temp 21.5")); err != nil {
		t.Fatal(err)
	}
	f := gw.sink.next(t)
	if f.Device != "dev-1" || f.Channel != "sensors/temp" || string(f.Payload) != "21.5" || f.QoS != 1 {
		t.Errorf("frame %+v", f)
	}
	readText(t, ws, "ack sensors/temp")

	if err := gw.router.Command(protocols.Command{Device: "dev-1", ID: "c1", Name: "reboot"}); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "cmd reboot")
	if cmd := <-s.commands; cmd.ID != "c1" || cmd.Name != "reboot" {
		t.Errorf("command %+v", cmd)
	}

	// A second attach is refused; the session stays up.
	if err := ws.WriteMessage(websocket.TextMessage, []byte("!attach dev-2")); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "error session already attached as dev-1")

	// Leaving takes the device offline.
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(testWait))
	if ce := readUntilClose(t, ws); ce.Code != websocket.CloseNormalClosure {
		t.Errorf("close echoed as %d", ce.Code)
	}
	if err := s.waitClosed(t); err != nil {
		t.Errorf("normal close reported as %v", err)
	}
	if devs := gw.router.Devices(); len(devs) != 0 {
		t.Errorf("devices after close: %+v", devs)
	}
	err := gw.router.Command(protocols.Command{Device: "dev-1", Name: "reboot"})
	if !errors.Is(err, protocols.ErrDeviceOffline) {
		t.Errorf("command to a gone device: %v", err)
	}
}

// TestCommandPanic: a session that panics on a command closes with 1011 and
// the gateway carries on.
func TestCommandPanic(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	ws := gw.dial(t, "/", "echo")
	if err := ws.WriteMessage(websocket.TextMessage, []byte("!attach dev-panic")); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "attached dev-panic")
	err := gw.router.Command(protocols.Command{Device: "dev-panic", ID: "c1", Name: "panic"})
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("command error %v, want a panic reported", err)
	}
	wantCloseCode(t, readUntilClose(t, ws), protocols.CloseInternalError)
	other := gw.dial(t, "/", "echo")
	if err := other.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	readText(t, other, "still here")
}

// TestSessionErrors checks the close code of each way a session can end
// the connection from OnMessage.
func TestSessionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		msg    string
		code   int
		reason string
	}{
		{"close error", "!fail 4001 not today", 4001, "not today"},
		{"policy violation", "!fail 1008 bad hello", protocols.ClosePolicyViolation, "bad hello"},
		{"plain error", "!crash", protocols.CloseInternalError, ""},
		{"panic", "!panic", protocols.CloseInternalError, "internal error"},
	}
	gw := startGateway(t, baseOptions())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ws := gw.dial(t, "/", "echo")
			if err := ws.WriteMessage(websocket.TextMessage, []byte(tt.msg)); err != nil {
				t.Fatal(err)
			}
			ce := readUntilClose(t, ws)
			wantCloseCode(t, ce, tt.code)
			if tt.reason != "" && ce.Text != tt.reason {
				t.Errorf("close reason %q, want %q", ce.Text, tt.reason)
			}
		})
	}
}

// TestLogAttributes: a connection's log lines name its session, protocol
// and remote address, and the line's own attributes follow.
func TestLogAttributes(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw := startGatewayLog(t, baseOptions(), log)
	ws := gw.dial(t, "/", "echo")
	session := gw.protos["echo"].next(t)
	if err := ws.WriteMessage(websocket.TextMessage, []byte("!crash")); err != nil {
		t.Fatal(err)
	}
	wantCloseCode(t, readUntilClose(t, ws), protocols.CloseInternalError)
	session.waitClosed(t)

	var line map[string]any
	for l := range strings.Lines(buf.String()) {
		if strings.Contains(l, `"msg":"session failed"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]any{
		"level": "ERROR", "session": session.info.ID, "protocol": "echo",
		"remote": ws.LocalAddr().String(), "device": "", "err": "the session crashed",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
}

// lockedBuffer is a bytes.Buffer for a logger that several goroutines use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNewSessionRefused: a protocol that cannot start a session gets the
// connection closed with its CloseError's code and reason, else 1011 with
// the error's text.
func TestNewSessionRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		code   int
		reason string
	}{
		{errors.New("refused by the test"), protocols.CloseInternalError, "refused by the test"},
		{&protocols.CloseError{Code: 4001, Reason: "not a device id"}, 4001, "not a device id"},
	}
	for _, tt := range tests {
		gw := startGateway(t, baseOptions())
		gw.protos["echo"].refuse = tt.err // before any connection: no race
		ws := gw.dial(t, "/", "echo")
		ce := readUntilClose(t, ws)
		wantCloseCode(t, ce, tt.code)
		if ce.Text != tt.reason {
			t.Errorf("reason %q, want %q", ce.Text, tt.reason)
		}
		ws.Close()
		eventually(t, "the connection to end", func() bool { return gw.srv.Connections() == 0 })
	}
}

// TestInvalidUTF8 checks that text that is not UTF-8 closes with 1007, and
// that fragmented text fails at the first fragment that makes it invalid:
// the close frame arrives while the message is still unfinished.
func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())

	t.Run("whole message", func(t *testing.T) {
		t.Parallel()
		ws := gw.dial(t, "/", "echo")
		if err := ws.WriteMessage(websocket.TextMessage, []byte("ok \xff")); err != nil {
			t.Fatal(err)
		}
		wantCloseCode(t, readUntilClose(t, ws), protocols.CloseInvalidPayload)
	})
	t.Run("ends mid-character", func(t *testing.T) {
		t.Parallel()
		ws := gw.dial(t, "/", "echo")
		if err := ws.WriteMessage(websocket.TextMessage, []byte("ok \xe2\x82")); err != nil {
			t.Fatal(err)
		}
		wantCloseCode(t, readUntilClose(t, ws), protocols.CloseInvalidPayload)
	})
	t.Run("binary is not checked", func(t *testing.T) {
		t.Parallel()
		ws := gw.dial(t, "/", "echo")
		if err := ws.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0xfe}); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(testWait))
		mt, data, err := ws.ReadMessage()
		if err != nil || mt != websocket.BinaryMessage || !bytes.Equal(data, []byte{0xff, 0xfe}) {
			t.Fatalf("echo: %d %q %v", mt, data, err)
		}
	})

	fragmented := []struct {
		name  string
		first [][]byte // fragments sent before the close is expected
	}{
		{"invalid byte in the first fragment", [][]byte{[]byte("ab\xc0")}},
		{"first fragment ends with a lone lead byte", [][]byte{[]byte("ab\xc3"), []byte("x")}},
		{"invalid continuation in the second fragment", [][]byte{[]byte("ab\xe2"), []byte("\x82x")}},
		{"surrogate split over fragments", [][]byte{[]byte("\xed"), []byte("\xa0")}},
		{"above U+10FFFF in the first fragment", [][]byte{[]byte("\xf4\x90")}},
	}
	for _, tt := range fragmented {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := rawUpgrade(t, gw.addr, "/", "echo")
			for i, frag := range tt.first {
				op := byte(websocket.TextMessage)
				if i > 0 {
					op = 0 // continuation
				}
				rc.write(false, op, frag)
			}
			// The final fragment is not sent until the close has come.
			code, _, _ := rc.readClose()
			if code != protocols.CloseInvalidPayload {
				t.Fatalf("close code %d, want %d", code, protocols.CloseInvalidPayload)
			}
			rc.writeClose(protocols.CloseInvalidPayload, "")
			rc.expectEOF()
		})
	}

	t.Run("valid text split inside characters", func(t *testing.T) {
		t.Parallel()
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		msg := []byte("é€𝄞!")
		for i, b := range msg { // one byte per fragment
			op := byte(0)
			if i == 0 {
				op = websocket.TextMessage
			}
			rc.write(i == len(msg)-1, op, []byte{b})
		}
		f := rc.readFrame()
		if f.op != websocket.TextMessage || !f.fin || !bytes.Equal(f.payload, msg) {
			t.Fatalf("echo: op %d fin %v %q", f.op, f.fin, f.payload)
		}
	})
}

// TestMessageTooBig checks MaxMessage, in one frame and across fragments.
func TestMessageTooBig(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.MaxMessage = 1024
	gw := startGateway(t, opts)

	t.Run("at the limit", func(t *testing.T) {
		t.Parallel()
		ws := gw.dial(t, "/", "echo")
		msg := strings.Repeat("x", 1024)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		readText(t, ws, msg)
	})
	t.Run("one frame", func(t *testing.T) {
		t.Parallel()
		ws := gw.dial(t, "/", "echo")
		if err := ws.WriteMessage(websocket.BinaryMessage, make([]byte, 1025)); err != nil {
			t.Fatal(err)
		}
		wantCloseCode(t, readUntilClose(t, ws), protocols.CloseMessageTooBig)
	})
	t.Run("fragments", func(t *testing.T) {
		t.Parallel()
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		chunk := bytes.Repeat([]byte("y"), 300)
		for i := range 4 { // 1200 bytes, never finished
			op := byte(0)
			if i == 0 {
				op = websocket.TextMessage
			}
			rc.write(false, op, chunk)
		}
		code, _, _ := rc.readClose()
		if code != protocols.CloseMessageTooBig {
			t.Fatalf("close code %d, want %d", code, protocols.CloseMessageTooBig)
		}
	})
}

// TestMessageTooBigCompressed: the limit applies to the decompressed
// message, so a small deflated frame cannot smuggle in a big message.
func TestMessageTooBigCompressed(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.MaxMessage = 4096
	opts.Listeners[0].Compression = true
	gw := startGateway(t, opts)
	d := websocket.Dialer{HandshakeTimeout: testWait, Subprotocols: []string{"echo"}, EnableCompression: true}
	ws, resp, err := d.Dial("ws://"+gw.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if !strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		t.Fatalf("compression not negotiated: %q", resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	ws.EnableWriteCompression(true)
	small := strings.Repeat("z", 4000)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(small)); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, small)
	if err := ws.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("z"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	wantCloseCode(t, readUntilClose(t, ws), protocols.CloseMessageTooBig)
}

// TestOutletClose: the session closes the connection. Messages it sent
// before arrive first, then the close frame; the server closes TCP once
// the client has answered, and the session hears of the end.
func TestOutletClose(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	s := gw.protos["echo"].next(t)

	if err := s.out.Send(textMessage("last words")); err != nil {
		t.Fatal(err)
	}
	s.out.Close(4000, "bye")
	if err := s.out.Send(textMessage("too late")); !errors.Is(err, protocols.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if f := rc.readFrame(); f.op != websocket.TextMessage || string(f.payload) != "last words" {
		t.Fatalf("frame op %d %q, want the queued message", f.op, f.payload)
	}
	f := rc.readFrame()
	if code, reason := f.closeCode(); f.op != websocket.CloseMessage || code != 4000 || reason != "bye" {
		t.Fatalf("frame op %d %q, want close 4000 bye", f.op, f.payload)
	}
	// Data sent after the server's close frame is ignored.
	rc.write(true, websocket.TextMessage, []byte("ignored"))
	select {
	case <-s.closed:
		t.Fatal("the session ended before the client answered the close frame")
	case <-time.After(20 * time.Millisecond):
	}
	rc.writeClose(4000, "")
	rc.expectEOF()
	rc.nc.Close() // the server closed first, then the client: no lingering
	s.waitClosed(t)
	eventually(t, "the connection to be forgotten", func() bool { return gw.srv.Connections() == 0 })
}

// TestCloseTimeout: a client that never answers the close frame is cut
// after CloseTimeout.
func TestCloseTimeout(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.CloseTimeout = 50 * time.Millisecond
	gw := startGateway(t, opts)
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	s := gw.protos["echo"].next(t)
	s.out.Close(protocols.CloseNormal, "")
	code, _, _ := rc.readClose()
	if code != protocols.CloseNormal {
		t.Fatalf("close code %d", code)
	}
	rc.expectEOF()
	if err := s.waitClosed(t); err == nil {
		t.Error("the session was told the close was clean")
	}
}

// TestCloseTimeoutWhilePinging: pings from a client that never answers the
// close frame do not keep the connection open past CloseTimeout, however
// they interleave with the close.
func TestCloseTimeoutWhilePinging(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.CloseTimeout = 50 * time.Millisecond // no keepalive: only this ends it
	gw := startGateway(t, opts)
	for range 20 {
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		s := gw.protos["echo"].next(t)
		stop := make(chan struct{})
		pinged := make(chan struct{})
		go func() {
			defer close(pinged)
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Errors end the loop: the server has cut us.
				if _, err := rc.nc.Write(maskedPing); err != nil {
					return
				}
			}
		}()
		time.Sleep(time.Millisecond) // let pings flow before the close
		s.out.Close(protocols.CloseNormal, "")
		for {
			f, err := rc.read()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the connection outlived CloseTimeout")
				}
				break // cut
			}
			_ = f // pongs, then the close frame
		}
		close(stop)
		<-pinged
		rc.nc.Close()
	}
}

// maskedPing is a client ping frame with an empty payload.
var maskedPing = []byte{0x89, 0x80, 1, 2, 3, 4}

// TestClientClose: the server answers a client's close frame with the same
// code and closes TCP; the session is told why.
func TestClientClose(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	tests := []struct {
		code    int
		wantErr bool // whether the session is told of a failure
	}{
		{websocket.CloseNormalClosure, false},
		{websocket.CloseGoingAway, false},
		{4002, true},
		{websocket.CloseInternalServerErr, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			t.Parallel()
			rc := rawUpgrade(t, gw.addr, "/", "echo")
			rc.writeClose(tt.code, "client leaves")
			f := rc.readFrame()
			if code, _ := f.closeCode(); f.op != websocket.CloseMessage || code != tt.code {
				t.Fatalf("frame op %d %q, want close %d", f.op, f.payload, tt.code)
			}
			rc.expectEOF()
		})
	}
	t.Run("no status", func(t *testing.T) {
		t.Parallel()
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		rc.write(true, websocket.CloseMessage, nil)
		if f := rc.readFrame(); f.op != websocket.CloseMessage || len(f.payload) != 0 {
			t.Fatalf("frame op %d %q, want an empty close", f.op, f.payload)
		}
		rc.expectEOF()
	})
	t.Run("session cause", func(t *testing.T) {
		t.Parallel()
		// A gateway of its own, so that each session taken from the
		// protocol is the one just dialled.
		gw := startGateway(t, baseOptions())
		for _, tt := range tests {
			rc := rawUpgrade(t, gw.addr, "/", "echo")
			s := gw.protos["echo"].next(t)
			rc.writeClose(tt.code, "")
			rc.readFrame()
			if err := s.waitClosed(t); (err != nil) != tt.wantErr {
				t.Errorf("close %d: session told %v", tt.code, err)
			}
		}
	})
}

// TestPing: a ping from the client is answered with a pong carrying the
// same data.
func TestPing(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	rc.write(true, websocket.PingMessage, []byte("are you there"))
	if f := rc.readFrame(); f.op != websocket.PongMessage || string(f.payload) != "are you there" {
		t.Fatalf("frame op %d %q, want the pong", f.op, f.payload)
	}
	// The connection still works.
	rc.write(true, websocket.TextMessage, []byte("hi"))
	if f := rc.readFrame(); f.op != websocket.TextMessage || string(f.payload) != "hi" {
		t.Fatalf("frame op %d %q, want the echo", f.op, f.payload)
	}
}

// TestKeepalive: with a short PingInterval the server pings; a client that
// answers stays, one that never does is closed with 1001 and cut.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.PingInterval = 20 * time.Millisecond
	opts.PongTimeout = 500 * time.Millisecond // slack, so that a stalled machine still pings first
	gw := startGateway(t, opts)

	t.Run("answering client stays", func(t *testing.T) {
		t.Parallel()
		ws := gw.dial(t, "/", "echo")
		pings := make(chan struct{}, 100)
		ws.SetPingHandler(func(data string) error {
			select {
			case pings <- struct{}{}:
			default:
			}
			return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(testWait))
		})
		readErr := make(chan error, 1)
		got := make(chan string, 1)
		go func() {
			for {
				_, data, err := ws.ReadMessage()
				if err != nil {
					readErr <- err
					return
				}
				got <- string(data)
			}
		}()
		// Many pings: the connection outlives PingInterval+PongTimeout
		// several times over because the client answers.
		for range 15 {
			select {
			case <-pings:
			case err := <-readErr:
				t.Fatalf("connection ended: %v", err)
			case <-time.After(testWait):
				t.Fatal("no ping from the server")
			}
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		select {
		case msg := <-got:
			if msg != "still here" {
				t.Fatalf("echo %q", msg)
			}
		case err := <-readErr:
			t.Fatalf("connection ended: %v", err)
		case <-time.After(testWait):
			t.Fatal("no echo")
		}
		ws.Close()
		<-readErr
	})
	t.Run("silent client is cut", func(t *testing.T) {
		t.Parallel()
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		code, reason, pings := rc.readClose()
		if code != protocols.CloseGoingAway {
			t.Fatalf("close code %d %q, want %d", code, reason, protocols.CloseGoingAway)
		}
		if pings == 0 {
			t.Error("cut without a ping")
		}
		rc.expectEOF()
	})
}

// TestSendQueueOverflow: a device that does not read gets its connection
// closed with 1008 once the send queue is full, and Send does not block on
// the network meanwhile.
func TestSendQueueOverflow(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.SendQueue = 8
	opts.WriteTimeout = time.Minute // the writer waits for the device this long
	gw := startGateway(t, opts)
	// A small receive buffer keeps the kernel from absorbing much.
	d := websocket.Dialer{
		HandshakeTimeout: testWait,
		Subprotocols:     []string{"echo"},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(64 << 10)
			}
			return nc, err
		},
	}
	ws, _, err := d.Dial("ws://"+gw.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	s := gw.protos["echo"].next(t)

	// The client reads nothing until Send has failed. The first 256 KiB
	// messages go out at a pace the writer can follow until the socket
	// buffers are full and it blocks; then the queue fills.
	big := protocols.Message{Type: protocols.Binary, Data: make([]byte, 256<<10)}
	sendErr := make(chan error, 1)
	go func() {
		for i := range 10000 {
			if i < 40 {
				time.Sleep(5 * time.Millisecond)
			}
			if err := s.out.Send(big); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	select {
	case err := <-sendErr:
		if !errors.Is(err, protocols.ErrSendQueueFull) {
			t.Fatalf("Send: %v, want ErrSendQueueFull", err)
		}
	case <-time.After(testWait):
		t.Fatal("Send blocked on a device that does not read")
	}
	if err := s.out.Send(big); !errors.Is(err, protocols.ErrClosed) {
		t.Errorf("Send after overflow: %v, want ErrClosed", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	wantCloseCode(t, readUntilClose(t, ws), protocols.ClosePolicyViolation)
	s.waitClosed(t)
}

// TestEvict: a second session attaching the same device replaces the
// first, which is closed; the router keeps the newest.
func TestEvict(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	p := gw.protos["echo"]

	ws1 := gw.dial(t, "/", "echo")
	s1 := p.next(t)
	if err := ws1.WriteMessage(websocket.TextMessage, []byte("!attach heatpump-7")); err != nil {
		t.Fatal(err)
	}
	readText(t, ws1, "attached heatpump-7")

	ws2 := gw.dial(t, "/", "echo")
	s2 := p.next(t)
	if err := ws2.WriteMessage(websocket.TextMessage, []byte("!attach heatpump-7")); err != nil {
		t.Fatal(err)
	}
	readText(t, ws2, "attached heatpump-7")

	ce := readUntilClose(t, ws1)
	wantCloseCode(t, ce, protocols.CloseReplaced)
	if !strings.Contains(ce.Text, "replaced") {
		t.Errorf("close reason %q", ce.Text)
	}
	s1.waitClosed(t) // its Detach is done by now

	devs := gw.router.Devices()
	if len(devs) != 1 || devs[0].ID != "heatpump-7" || devs[0].Session != s2.info.ID {
		t.Fatalf("router devices %+v, want heatpump-7 on session %s", devs, s2.info.ID)
	}
	if err := gw.router.Command(protocols.Command{Device: "heatpump-7", ID: "1", Name: "defrost"}); err != nil {
		t.Fatal(err)
	}
	readText(t, ws2, "cmd defrost")
	select {
	case <-s2.closed:
		t.Fatal("the newest session was closed")
	default:
	}
}

// TestAttachFromAnotherGoroutine: outlet methods are safe for concurrent
// use, so a session may attach from its own goroutine (after an
// asynchronous authentication, say) rather than from OnMessage.
func TestAttachFromAnotherGoroutine(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	ws := gw.dial(t, "/", "echo")
	s := gw.protos["echo"].next(t)
	if err := s.out.Attach(protocols.Device{ID: "async-1"}); err != nil {
		t.Fatal(err)
	}
	if devs := gw.router.Devices(); len(devs) != 1 || devs[0].ID != "async-1" {
		t.Fatalf("router devices %+v", devs)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("!crash")); err != nil {
		t.Fatal(err)
	}
	wantCloseCode(t, readUntilClose(t, ws), protocols.CloseInternalError)
	s.waitClosed(t)
	if devs := gw.router.Devices(); len(devs) != 0 {
		t.Errorf("devices after close: %+v", devs)
	}
	if err := s.out.Attach(protocols.Device{ID: "async-2"}); err == nil {
		t.Error("Attach after the end succeeded")
	}
}

// TestAttachRacesClose attaches while the connection ends: whichever wins,
// a device whose connection is gone must not stay attached in the router.
func TestAttachRacesClose(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	for i := range 100 {
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		s := gw.protos["echo"].next(t)
		id := fmt.Sprintf("racer-%d", i)
		attached := make(chan error, 1)
		go func() { attached <- s.out.Attach(protocols.Device{ID: id}) }()
		rc.nc.Close()
		<-attached
		s.waitClosed(t)
		eventually(t, "the connection to be forgotten", func() bool { return gw.srv.Connections() == 0 })
		for _, d := range gw.router.Devices() {
			if d.ID == id {
				t.Fatalf("round %d: %s stays attached after its connection ended", i, id)
			}
		}
	}
}

// TestListenerOverrides: a listener's keepalive and message limit replace
// the server's for its connections only.
func TestListenerOverrides(t *testing.T) {
	t.Parallel()
	opts := baseOptions() // no keepalive, no message limit
	opts.MaxMessage = 1024
	opts.Listeners = []Listener{
		{Address: "127.0.0.1:0", Path: "/plain/"},
		{Address: "127.0.0.1:0", Path: "/tuned/", PingInterval: 20 * time.Millisecond, PongTimeout: 300 * time.Millisecond, MaxMessage: 4096},
	}
	gw := startGateway(t, opts)

	// The tuned listener pings and cuts a silent client with 1001.
	rc := rawUpgrade(t, gw.addr, "/tuned/", "echo")
	if code, reason, pings := rc.readClose(); code != protocols.CloseGoingAway || pings == 0 {
		t.Fatalf("tuned: close %d %q after %d pings, want 1001 after pings", code, reason, pings)
	}

	// It takes 2 KiB messages, which the plain listener refuses with 1009.
	big := bytes.Repeat([]byte("x"), 2048)
	tuned := gw.dial(t, "/tuned/", "echo")
	if err := tuned.WriteMessage(websocket.TextMessage, big); err != nil {
		t.Fatal(err)
	}
	readText(t, tuned, string(big))
	plain := gw.dial(t, "/plain/", "echo")
	if err := plain.WriteMessage(websocket.TextMessage, big); err != nil {
		t.Fatal(err)
	}
	wantCloseCode(t, readUntilClose(t, plain), protocols.CloseMessageTooBig)
}

// TestTraffic: the router lists a connection's device with the messages
// read from it and written to it, when it last sent one, and its address.
func TestTraffic(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	ws := gw.dial(t, "/", "echo")
	gw.protos["echo"].next(t)
	before := time.Now()
	for _, m := range []string{"!attach dev-1", "hello", "again"} {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"attached dev-1", "hello", "again"} {
		readText(t, ws, want)
	}
	// A message is counted in before the session has it, and out once
	// written, which may be just after the client has read it.
	var got router.DeviceTraffic
	eventually(t, "3 messages out", func() bool {
		list := gw.router.Traffic()
		if len(list) != 1 {
			t.Fatalf("traffic of %d devices, want 1: %+v", len(list), list)
		}
		got = list[0]
		return got.Out == 3
	})
	if got.ID != "dev-1" || got.In != 3 || got.Address != ws.LocalAddr().String() {
		t.Errorf("traffic %+v; want dev-1 from %s, 3 in", got, ws.LocalAddr())
	}
	if got.Last.Before(before) || got.Last.After(time.Now()) {
		t.Errorf("last message at %v, not between %v and now", got.Last, before)
	}
}
