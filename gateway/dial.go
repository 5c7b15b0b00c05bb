package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

// DialOptions say how the gateway reaches a WebSocket server it connects to
// as a client (devices that wait to be dialled, for example).
type DialOptions struct {
	URL string // ws:// or wss://
	// Subprotocols are offered in this order; empty offers the protocol's
	// name only.
	Subprotocols []string
	TLSConfig    *tls.Config   // for wss://
	Timeout      time.Duration // TCP, TLS and HTTP upgrade; 0: the server's handshake timeout
	// PingInterval, PongTimeout and MaxMessage override the server's
	// when positive.
	PingInterval, PongTimeout time.Duration
	MaxMessage                int64
}

// ErrDraining: the server is shutting down and opens no more connections.
var ErrDraining = errors.New("gateway shutting down")

// Dial connects to a WebSocket server and runs a session of p on the
// connection exactly as on an accepted one (router, send queue, keepalive,
// shutdown), until the connection ends or ctx is cancelled (then it is
// closed as at shutdown: by the session's own closing handshake, or with
// 1001). It returns an error when the connection could not be
// opened, and nil once an opened connection has ended: the session saw why.
func (s *Server) Dial(ctx context.Context, opts DialOptions, p protocols.Protocol) error {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return fmt.Errorf("dial %q: not a ws:// or wss:// URL", opts.URL)
	}
	offered := opts.Subprotocols
	if len(offered) == 0 {
		offered = []string{p.Name()}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = s.opts.HandshakeTimeout
	}
	if err := s.enter(""); err != nil {
		return err
	}
	dialer := websocket.Dialer{
		TLSClientConfig:  opts.TLSConfig,
		HandshakeTimeout: timeout,
		Subprotocols:     offered,
		ReadBufferSize:   readBufferSize,
		WriteBufferPool:  &sync.Pool{},
	}
	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	ws, resp, err := dialer.DialContext(dialCtx, opts.URL, nil)
	cancel()
	if err != nil {
		s.leave("")
		if resp != nil {
			return fmt.Errorf("dial %s: %w (HTTP %s)", opts.URL, err, resp.Status)
		}
		return fmt.Errorf("dial %s: %w", opts.URL, err)
	}
	// gorilla takes whatever the server selected; RFC 6455 section 4.1
	// says to fail a connection whose subprotocol was not offered. None
	// at all is taken as consent to the one protocol this session speaks.
	if sub := ws.Subprotocol(); sub != "" && (!slices.Contains(offered, sub) || sub != p.Name()) {
		s.leave("")
		_ = ws.WriteControl(websocket.CloseMessage, closePayload(protocols.CloseProtocolError, "subprotocol not offered"), time.Now().Add(time.Second))
		_ = ws.Close()
		return fmt.Errorf("dial %s: server selected subprotocol %q, not %q", opts.URL, sub, p.Name())
	}
	info := requestInfo{
		remote:     ws.RemoteAddr().String(),
		path:       u.Path,
		heartbeat:  s.heartbeat(opts.PingInterval, opts.PongTimeout),
		maxMessage: s.opts.MaxMessage,
		outbound:   true,
	}
	if opts.MaxMessage > 0 {
		info.maxMessage = opts.MaxMessage
	}
	if tc, ok := ws.NetConn().(*tls.Conn); ok {
		state := tc.ConnectionState()
		info.tls = &state
	}
	c := s.newConn(ws, nil, nil, p, info)
	stop := context.AfterFunc(ctx, func() { c.goAway("connection no longer wanted") })
	defer stop()
	c.run(p)
	return nil
}
