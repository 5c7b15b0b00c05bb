package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

// peerServer is a WebSocket server for the gateway to dial: it selects
// the subprotocol select (none when empty) and hands each connection to
// the test.
func peerServer(t *testing.T, selected string) (url string, conns chan *websocket.Conn) {
	t.Helper()
	conns = make(chan *websocket.Conn, 4)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var h http.Header
		if selected != "" {
			h = http.Header{"Sec-Websocket-Protocol": {selected}}
		}
		ws, err := up.Upgrade(w, r, h)
		if err != nil {
			return
		}
		conns <- ws
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/devices/x", conns
}

func nextConn(t *testing.T, conns chan *websocket.Conn) *websocket.Conn {
	t.Helper()
	select {
	case ws := <-conns:
		t.Cleanup(func() { ws.Close() })
		return ws
	case <-time.After(testWait):
		t.Fatal("the gateway did not connect")
		return nil
	}
}

// TestDial: a dialled connection runs its session like an accepted one
// (attach, commands, messages both ways) until the context ends it with
// 1001.
func TestDial(t *testing.T) {
	gw := startGateway(t, baseOptions())
	url, conns := peerServer(t, "echo")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dialled := make(chan error, 1)
	go func() { dialled <- gw.srv.Dial(ctx, DialOptions{URL: url}, gw.protos["echo"]) }()
	peer := nextConn(t, conns)
	s := gw.protos["echo"].next(t)
	if !s.info.Outbound || s.info.Subprotocol != "echo" || s.info.Path != "/devices/x" || s.info.RemoteAddr == "" {
		t.Fatalf("session info %+v", s.info)
	}

	if err := peer.WriteMessage(websocket.TextMessage, []byte("!attach dialled-1")); err != nil {
		t.Fatal(err)
	}
	readText(t, peer, "attached dialled-1")
	if err := gw.router.Command(protocols.Command{Device: "dialled-1", ID: "c1", Name: "reboot"}); err != nil {
		t.Fatal(err)
	}
	readText(t, peer, "cmd reboot")
	if err := peer.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	readText(t, peer, "hello")
	if gw.srv.Connections() != 1 {
		t.Fatalf("%d connections, want the dialled one", gw.srv.Connections())
	}

	cancel()
	wantCloseCode(t, readUntilClose(t, peer), protocols.CloseGoingAway)
	peer.Close()
	select {
	case err := <-dialled:
		if err != nil {
			t.Fatalf("Dial after a connection that ran: %v", err)
		}
	case <-time.After(testWait):
		t.Fatal("Dial did not return after its context ended")
	}
	if err := s.waitClosed(t); err != nil {
		t.Logf("session closed with %v", err)
	}
	eventually(t, "the connection forgotten", func() bool { return gw.srv.Connections() == 0 })
}

func TestDialRefusals(t *testing.T) {
	gw := startGateway(t, baseOptions())
	wrongURL, _ := peerServer(t, "other")
	noneURL, noneConns := peerServer(t, "")
	for _, tc := range []struct {
		name string
		url  string
		want string
	}{
		{"not a WebSocket URL", "http://127.0.0.1:1/", "not a ws:// or wss:// URL"},
		{"nothing listening", "ws://127.0.0.1:1/", "dial ws://127.0.0.1:1/"},
		{"subprotocol not offered", wrongURL, `selected subprotocol "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := gw.srv.Dial(context.Background(), DialOptions{URL: tc.url, Timeout: testWait}, gw.protos["echo"])
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// A server that selects no subprotocol gets the one offered.
	ctx, cancel := context.WithCancel(context.Background())
	dialled := make(chan error, 1)
	go func() { dialled <- gw.srv.Dial(ctx, DialOptions{URL: noneURL}, gw.protos["echo"]) }()
	peer := nextConn(t, noneConns)
	gw.protos["echo"].next(t)
	cancel()
	wantCloseCode(t, readUntilClose(t, peer), protocols.CloseGoingAway)
	peer.Close()
	if err := <-dialled; err != nil {
		t.Fatal(err)
	}

	// Refused dials leave nothing behind: shutdown finishes at once, and
	// a draining server dials no more.
	if err := gw.shutdown(testWait); err != nil {
		t.Fatal(err)
	}
	if err := gw.srv.Dial(context.Background(), DialOptions{URL: noneURL}, gw.protos["echo"]); !errors.Is(err, ErrDraining) {
		t.Fatalf("Dial while draining: %v, want ErrDraining", err)
	}
}
