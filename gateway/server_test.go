package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

// TestNegotiation dials with gorilla clients offering subprotocols and
// checks which protocol serves the connection under each policy.
func TestNegotiation(t *testing.T) {
	t.Parallel()
	order := []string{"alpha", "beta", "gamma"}
	tests := []struct {
		name     string
		policy   protocols.Policy
		path     string
		offer    []string
		want     string // "" for a refusal
		wantBody string
	}{
		{"client order", protocols.PolicyClient, "/", []string{"gamma", "alpha"}, "gamma", ""},
		{"server order", protocols.PolicyServer, "/", []string{"gamma", "alpha"}, "alpha", ""},
		{"client skips unknown", protocols.PolicyClient, "/", []string{"mqtt", "beta", "alpha"}, "beta", ""},
		{"server skips unknown", protocols.PolicyServer, "/", []string{"mqtt", "gamma", "beta"}, "beta", ""},
		{"single offer", protocols.PolicyServer, "/", []string{"gamma"}, "gamma", ""},
		{"nothing matches", protocols.PolicyClient, "/", []string{"mqtt", "ship"}, "", "alpha, beta, gamma"},
		{"none offered", protocols.PolicyClient, "/", nil, "", "alpha, beta, gamma"},
		{"restricted, client order", protocols.PolicyClient, "/restricted", []string{"alpha", "gamma", "beta"}, "gamma", ""},
		{"restricted, server order", protocols.PolicyServer, "/restricted", []string{"alpha", "gamma", "beta"}, "beta", ""},
		{"restricted refuses the others", protocols.PolicyServer, "/restricted", []string{"alpha"}, "", "beta, gamma"},
		{"fallback when none offered", protocols.PolicyClient, "/fallback", nil, "", ""},
	}
	servers := map[protocols.Policy]*testGateway{}
	for _, policy := range []protocols.Policy{protocols.PolicyClient, protocols.PolicyServer} {
		opts := baseOptions()
		opts.Policy = policy
		opts.Listeners = []Listener{
			{Address: "127.0.0.1:0", Path: "/"},
			{Address: "127.0.0.1:0", Path: "/restricted", Protocols: []string{"gamma", "beta"}},
			{Address: "127.0.0.1:0", Path: "/fallback", Fallback: "beta"},
		}
		servers[policy] = startGateway(t, opts, order...)
	}
	// One after the other: cases on one gateway that end on the same
	// protocol take their sessions from one queue, and in parallel could
	// take each other's.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := servers[tt.policy]
			ws, resp, err := gw.tryDial(tt.path, tt.offer...)
			if tt.want == "" && tt.path != "/fallback" {
				if err == nil {
					ws.Close()
					t.Fatalf("dial succeeded with %q", ws.Subprotocol())
				}
				if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("dial: %v, response %v, want 400", err, resp)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer ws.Close()
			if got := ws.Subprotocol(); got != tt.want {
				t.Fatalf("subprotocol %q, want %q", got, tt.want)
			}
			if n := len(resp.Header.Values("Sec-WebSocket-Protocol")); tt.want != "" && n != 1 {
				t.Errorf("%d Sec-WebSocket-Protocol headers", n)
			}
			// The chosen protocol, or the fallback, runs the session.
			name := tt.want
			if name == "" {
				name = "beta"
			}
			s := gw.protos[name].next(t)
			if s.info.Subprotocol != name || s.info.Path != tt.path {
				t.Errorf("session info %+v", s.info)
			}
		})
	}
}

// TestNegotiationRefusalBody checks that the 400 names the supported list.
func TestNegotiationRefusalBody(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions(), "alpha", "beta")
	req := upgradeRequest().set("Sec-WebSocket-Protocol", "mqtt")
	resp, body := roundTrip(t, gw.addr, req.String())
	checkResponse(t, handshakeCase{req: req, status: 400, bodyHas: []string{"alpha, beta"}}, resp, body)
}

// TestShutdown: every session is closed with 1001, the clients answer, and
// Shutdown returns without error; afterwards nothing listens.
func TestShutdown(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, baseOptions())
	const n = 3
	type result struct {
		code int
		err  error
	}
	results := make(chan result, n)
	var sessions []*echoSession
	for range n {
		ws := gw.dial(t, "/", "echo")
		sessions = append(sessions, gw.protos["echo"].next(t))
		go func() {
			_ = ws.SetReadDeadline(time.Now().Add(testWait))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					ws.Close() // the server closed first; now the client
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						results <- result{code: ce.Code}
					} else {
						results <- result{err: err}
					}
					return
				}
			}
		}()
	}
	eventually(t, "all connections to register", func() bool { return gw.srv.Connections() == n })
	if err := gw.shutdown(testWait); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for range n {
		r := <-results
		if r.err != nil || r.code != websocket.CloseGoingAway {
			t.Errorf("client saw %d %v, want close 1001", r.code, r.err)
		}
	}
	for _, s := range sessions {
		s.waitClosed(t)
	}
	if c := gw.srv.Connections(); c != 0 {
		t.Errorf("%d connections after Shutdown", c)
	}
	if nc, err := net.DialTimeout("tcp", gw.addr, testWait); err == nil {
		nc.Close()
		t.Error("still listening after Shutdown")
	}
}

// TestShutdownCutsUnresponsive: a client that never answers the close
// frame makes Shutdown testWait until its context ends, then it is cut and
// Shutdown reports it.
func TestShutdownCutsUnresponsive(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.CloseTimeout = time.Hour // only the context can end the testWait
	gw := startGateway(t, opts)
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	s := gw.protos["echo"].next(t)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := gw.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline", err)
	}
	code, _, _ := rc.readClose()
	if code != protocols.CloseGoingAway {
		t.Errorf("close code %d, want %d", code, protocols.CloseGoingAway)
	}
	rc.expectEOF()
	if err := s.waitClosed(t); err == nil {
		t.Error("the session was told the cut connection closed cleanly")
	}
	if c := gw.srv.Connections(); c != 0 {
		t.Errorf("%d connections after Shutdown", c)
	}
}

// TestListeners: several addresses, each with its own paths.
func TestListeners(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.Listeners = []Listener{
		{Address: "127.0.0.1:0", Path: "/a", Protocols: []string{"alpha"}},
		{Address: "127.0.0.2:0", Path: "/b", Protocols: []string{"beta"}},
	}
	gw := startGateway(t, opts, "alpha", "beta")
	addrs := gw.srv.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("addresses %v", addrs)
	}
	for i, path := range []string{"/a", "/b"} {
		gw.addr = addrs[i].String()
		ws, _, err := gw.tryDial(path, "alpha", "beta")
		if err != nil {
			t.Fatalf("dial %s%s: %v", gw.addr, path, err)
		}
		if want := []string{"alpha", "beta"}[i]; ws.Subprotocol() != want {
			t.Errorf("%s: subprotocol %q, want %q", path, ws.Subprotocol(), want)
		}
		ws.Close()
	}
	// A path of one address does not exist on the other.
	gw.addr = addrs[0].String()
	if _, resp, err := gw.tryDial("/b", "beta"); err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("dial /b on the first address: %v %v, want 404", err, resp)
	}
}

// TestNewValidates checks what New refuses and defaults.
func TestNewValidates(t *testing.T) {
	t.Parallel()
	registry, err := protocols.NewRegistry([]string{"echo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{}, registry, nil, testLogger()); err == nil {
		t.Error("New accepted no listeners")
	}
	srv, err := New(Options{Listeners: []Listener{{Address: "127.0.0.1:0"}}, Policy: "bogus"}, registry, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if srv.opts.Policy != protocols.PolicyClient || srv.opts.SendQueue <= 0 || srv.opts.WriteTimeout <= 0 ||
		srv.opts.CloseTimeout <= 0 || srv.opts.HandshakeTimeout <= 0 {
		t.Errorf("defaults not applied: %+v", srv.opts)
	}
	if !slices.Equal(registry.Order(), []string{"echo"}) {
		t.Error("New changed the registry")
	}
}
