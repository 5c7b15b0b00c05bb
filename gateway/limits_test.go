package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

// dialFrom connects from the loopback address local (127.0.0.2 is as much
// the machine as 127.0.0.1, but another address to the server).
func (gw *testGateway) dialFrom(local string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{
		Subprotocols: []string{"echo"}, HandshakeTimeout: testWait,
		NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext,
	}
	return d.Dial("ws://"+gw.addr+"/", nil)
}

// TestConnectionLimits: the connection past a limit is refused with 503
// before the upgrade, and its place is free again once a connection goes.
func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		limits Limits
		froms  []string // the addresses of the connections that fit
		extra  string   // the address of the one refused
		other  string   // an address still let in
	}{
		{"total", Limits{MaxConnections: 2}, []string{"127.0.0.1", "127.0.0.2"}, "127.0.0.3", ""},
		{"per address", Limits{MaxPerAddress: 2}, []string{"127.0.0.1", "127.0.0.1"}, "127.0.0.1", "127.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions()
			opts.Limits = tt.limits
			gw := startGateway(t, opts)
			var open []*websocket.Conn
			for _, from := range tt.froms {
				ws, _, err := gw.dialFrom(from)
				if err != nil {
					t.Fatalf("connection from %s within the limit: %v", from, err)
				}
				defer ws.Close()
				open = append(open, ws)
			}
			_, resp, err := gw.dialFrom(tt.extra)
			if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("connection past the limit: %v (response %v), want 503 with Retry-After", err, resp)
			}
			if got := gw.srv.Stats().Refused[http.StatusServiceUnavailable]; got != 1 {
				t.Errorf("refusals counted: %d", got)
			}
			if tt.other != "" {
				ws, _, err := gw.dialFrom(tt.other)
				if err != nil {
					t.Fatalf("connection from another address: %v", err)
				}
				ws.Close()
			}
			open[0].Close()
			deadline := time.Now().Add(testWait)
			for {
				ws, _, err := gw.dialFrom(tt.extra)
				if err == nil {
					ws.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no room after a connection went: %v", err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestHTTPConnectionsThatNeverUpgradeDoNotLinger: a client that is refused,
// or asks for something else, or says nothing, loses its connection within
// the handshake timeout instead of holding a goroutine and buffers
// forever.
func TestHTTPConnectionsThatNeverUpgradeDoNotLinger(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.HandshakeTimeout = 300 * time.Millisecond
	gw := startGateway(t, opts)
	tests := []struct {
		name, request string
		wantStatus    string // the status line's start; "" for no response
	}{
		{"refused upgrade, keep-alive", "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.1 400"},
		{"other path, keep-alive", "GET /elsewhere/../../nope HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 "},
		{"silent client", "", ""},
		{"half a request", "GET / HTTP/1.1\r\nHost: x\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(testWait))
			r := bufio.NewReader(c)
			if tt.wantStatus != "" {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, tt.wantStatus) {
					t.Fatalf("status line %q, %v; want %q", line, err, tt.wantStatus)
				}
			}
			_, err = io.Copy(io.Discard, r)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the gateway kept the connection open")
			}
		})
	}
}

// TestMessageRate: a connection over its message rate is held back,
// refused busy, or closed, by the policy.
func TestMessageRate(t *testing.T) {
	t.Parallel()
	// A rate of one message a minute: every message past the burst of 3
	// is over it, however slow the machine.
	limits := func(p RatePolicy) Limits { return Limits{MessageRate: 1.0 / 60, MessageBurst: 3, RatePolicy: p} }

	t.Run("close", func(t *testing.T) {
		t.Parallel()
		opts := baseOptions()
		opts.Limits = limits(RateClose)
		gw := startGateway(t, opts)
		ws := gw.dial(t, "/", "echo")
		for range 3 {
			writeText(t, ws, "m")
			readText(t, ws, "m")
		}
		writeText(t, ws, "one too many")
		ce := readUntilClose(t, ws)
		wantCloseCode(t, ce, protocols.ClosePolicyViolation)
		if !strings.Contains(ce.Text, "message rate") {
			t.Errorf("close reason %q", ce.Text)
		}
		if gw.srv.Stats().RateLimited != 1 {
			t.Errorf("rate limited: %d", gw.srv.Stats().RateLimited)
		}
	})

	t.Run("busy", func(t *testing.T) {
		t.Parallel()
		opts := baseOptions()
		opts.Limits = limits(RateBusy)
		gw := startGateway(t, opts)
		ws := gw.dial(t, "/", "echo")
		writeText(t, ws, "!attach flooder")
		readText(t, ws, "attached flooder")
		writeText(t, ws, "!publish t 1")
		readText(t, ws, "ack t")
		writeText(t, ws, "!publish t 2")
		readText(t, ws, "ack t")
		// The fourth message is over the rate: what it publishes is refused
		// busy, and the connection goes on.
		writeText(t, ws, "!publish t 3")
		_ = ws.SetReadDeadline(time.Now().Add(testWait))
		if _, msg, err := ws.ReadMessage(); err != nil || !strings.HasPrefix(string(msg), "nack t busy") {
			t.Fatalf("got %q, %v; want a busy nack", msg, err)
		}
		writeText(t, ws, "still here")
		readText(t, ws, "still here")
	})

	t.Run("wait", func(t *testing.T) {
		t.Parallel()
		opts := baseOptions()
		opts.Limits = limits(RateWait)
		gw := startGateway(t, opts)
		ws := gw.dial(t, "/", "echo")
		for range 3 {
			writeText(t, ws, "m")
			readText(t, ws, "m")
		}
		// The fourth waits a minute for its turn: the gateway does not
		// read it, and nothing is refused or closed meanwhile.
		writeText(t, ws, "held back")
		_ = ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, msg, err := ws.ReadMessage()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %q, %v; want nothing while the message waits", msg, err)
		}
		if n := gw.srv.Stats().RateLimited; n != 1 {
			t.Errorf("rate limited: %d", n)
		}
		// Shutting down ends the wait (the cleanup checks that nothing
		// leaks and the server stops within its grace).
	})
}

func writeText(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	_ = ws.SetWriteDeadline(time.Now().Add(testWait))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestPublishBeforeAttach is refused: a frame must name its device.
func TestPublishBeforeAttach(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	ws := gw.dial(t, "/", "echo")
	writeText(t, ws, "!publish t 1")
	readText(t, ws, "nack t publish before the session attached a device")
}
