package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/auth"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// Options configure the WebSocket side of the gateway.
type Options struct {
	GatewayID        string
	Listeners        []Listener
	Policy           protocols.Policy
	PingInterval     time.Duration // 0 disables keepalive pings
	PongTimeout      time.Duration // extra time a peer has to answer a ping
	CloseTimeout     time.Duration // time the peer has to answer our close frame
	WriteTimeout     time.Duration
	HandshakeTimeout time.Duration
	MaxMessage       int64 // bytes per message, after decompression
	SendQueue        int   // messages queued to one device before it counts as too slow
	// CommandTimeout is how long a session has to answer a command before
	// the gateway answers it with "timeout" (default 30s).
	CommandTimeout time.Duration
	// AllowedOrigins lists the Origin values browsers may connect from; "*"
	// allows any. Empty allows only requests without Origin or from the
	// same host. Devices send no Origin.
	AllowedOrigins []string
	// Limits bound connections and message rates; SetLimits changes them.
	Limits Limits
	// Access authenticates and authorises devices; SetAccess changes it.
	Access Access
}

// Listener is one address and path devices connect to.
type Listener struct {
	Address   string
	Path      string
	Protocols []string // empty serves every enabled protocol
	Fallback  string   // protocol for clients that offer none
	TLSCert   string   // PEM files; both set means wss://
	TLSKey    string
	// TLSConfig, when set, makes the address wss:// with this configuration
	// instead of the PEM files (for a protocol that brings its own server
	// identity).
	TLSConfig *tls.Config
	// RequestClientCert asks clients of a wss:// address for a certificate
	// without requiring or verifying one, so that protocols can admit
	// clients by it (protocols.Admitter). It applies to TLSCert/TLSKey
	// listeners; a TLSConfig says what it wants itself.
	RequestClientCert bool
	// PingInterval and PongTimeout override the server's keepalive for
	// connections on this listener when positive.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// MaxMessage overrides the server's message size limit when positive.
	MaxMessage  int64
	Compression bool // accept permessage-deflate when the client offers it
	// CompressMin is the smallest message sent compressed; smaller ones
	// are not worth it. 0 means 256 bytes.
	CompressMin int
	// Auth is how devices prove who they are here; AuthMTLS takes client
	// certificates that chain to the PEM bundle ClientCA (read again when
	// it changes) and the device id from DeviceIDFrom.
	Auth         AuthMode
	ClientCA     string
	DeviceIDFrom auth.IDFrom
}

// Server accepts WebSocket connections and runs their sessions.
type Server struct {
	opts     Options
	registry *protocols.Registry
	router   *router.Router
	log      *slog.Logger

	httpServers []*http.Server
	listeners   []net.Listener
	certs       []*certificate // of the listeners with PEM files
	serving     sync.WaitGroup

	pollerOnce sync.Once
	poller     *poller // parks idle connections; started by the first (idle.go)
	alarms     *alarms // the connections' keepalive pings and parked read deadlines

	limits      atomic.Pointer[Limits]
	rateLimited atomic.Uint64 // messages over their connection's rate
	logRate     *logLimiter

	tokens   *auth.Tokens
	acl      atomic.Pointer[auth.ACL]
	throttle *auth.Throttle
	cas      []*caFile // of the mtls listeners
	// Counters of refusals.
	authFailures, authThrottled, forbiddenPublishes, forbiddenCommands atomic.Uint64

	mu       sync.Mutex
	conns    map[*conn]struct{}
	open     int            // connections entered and not yet left
	perAddr  map[string]int // of open, by remote IP
	draining bool
	active   sync.WaitGroup
	refused  map[int]uint64 // handshakes refused, by HTTP status
	upgrades uint64
}

// Stats are the server's counters.
type Stats struct {
	Connections int            // open now
	Upgrades    uint64         // handshakes accepted since start
	Refused     map[int]uint64 // handshakes refused, by HTTP status
	RateLimited uint64         // messages over their connection's rate
	// AuthFailures are failed device authentications; AuthThrottled the
	// attempts refused because their address failed too often.
	AuthFailures, AuthThrottled uint64
	// ForbiddenPublishes and ForbiddenCommands were refused by the access
	// rules (or a device publishing on the gateway's own channels).
	ForbiddenPublishes, ForbiddenCommands uint64
	// ThrottledAddresses are the addresses that failed recently.
	ThrottledAddresses int
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Connections: len(s.conns), Upgrades: s.upgrades, Refused: maps.Clone(s.refused), RateLimited: s.rateLimited.Load(),
		AuthFailures: s.authFailures.Load(), AuthThrottled: s.authThrottled.Load(),
		ForbiddenPublishes: s.forbiddenPublishes.Load(), ForbiddenCommands: s.forbiddenCommands.Load(),
		ThrottledAddresses: s.throttle.Stats().Addrs,
	}
}

func (s *Server) countRefusal(status int) {
	s.mu.Lock()
	s.refused[status]++
	s.mu.Unlock()
}

// New checks opts and prepares a server; Start binds the addresses.
func New(opts Options, registry *protocols.Registry, rt *router.Router, log *slog.Logger) (*Server, error) {
	if len(opts.Listeners) == 0 {
		return nil, errors.New("no listeners configured")
	}
	if opts.SendQueue <= 0 {
		opts.SendQueue = 64
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = 5 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 30 * time.Second
	}
	if !opts.Policy.Valid() {
		opts.Policy = protocols.PolicyClient
	}
	s := &Server{opts: opts, registry: registry, router: rt, log: log, conns: make(map[*conn]struct{}), alarms: newAlarms(),
		perAddr: make(map[string]int), refused: make(map[int]uint64), logRate: newLogLimiter(20, 200)}
	s.SetLimits(opts.Limits)
	if err := s.setupAccess(opts.Access); err != nil {
		return nil, err
	}
	return s, nil
}

// Start binds every listener address and serves in the background until
// Shutdown.
func (s *Server) Start() error {
	byAddr := map[string][]Listener{}
	var addrs []string
	for _, l := range s.opts.Listeners {
		if _, ok := byAddr[l.Address]; !ok {
			addrs = append(addrs, l.Address)
		}
		byAddr[l.Address] = append(byAddr[l.Address], l)
	}
	for _, addr := range addrs {
		group := byAddr[addr]
		mux := http.NewServeMux()
		for _, l := range group {
			path := l.Path
			if path == "" {
				path = "/"
			}
			la, err := s.newListenerAccess(l)
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("listener %s%s: %w", addr, path, err)
			}
			mux.Handle(path, s.handler(l, la))
		}
		hs := &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: s.opts.HandshakeTimeout,
			// A client that never upgrades (a plain HTTP request, refused)
			// is not left holding its connection open.
			IdleTimeout:    s.opts.HandshakeTimeout,
			MaxHeaderBytes: 16 << 10,
			ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		switch {
		case group[0].TLSConfig != nil:
			ln = tls.NewListener(ln, group[0].TLSConfig)
		case group[0].TLSCert != "":
			cert, err := loadCertificate(group[0].TLSCert, group[0].TLSKey, s.log)
			if err != nil {
				ln.Close()
				s.closeListeners()
				return fmt.Errorf("listener %s: %w", addr, err)
			}
			s.certs = append(s.certs, cert)
			c := &tls.Config{GetCertificate: getCertificate(cert), MinVersion: tls.VersionTLS12}
			// Certificates are asked for, and checked by the handler:
			// a refusal is then an HTTP answer that says why.
			if slices.ContainsFunc(group, func(l Listener) bool { return l.RequestClientCert || l.Auth == AuthMTLS }) {
				c.ClientAuth = tls.RequestClientCert
			}
			ln = tls.NewListener(ln, c)
		}
		s.httpServers = append(s.httpServers, hs)
		s.listeners = append(s.listeners, ln)
	}
	for i, hs := range s.httpServers {
		ln := s.listeners[i]
		s.log.Info("listening", "address", ln.Addr().String())
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("listener stopped", "address", ln.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.listeners = nil
	s.httpServers = nil
}

// Addrs returns the bound addresses, in the order of first appearance in
// the listener list.
func (s *Server) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		addrs[i] = ln.Addr()
	}
	return addrs
}

// Shutdown stops accepting, closes every session with 1001 and waits for
// them until ctx ends; connections still open then are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	var errs []error
	for _, hs := range s.httpServers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.serving.Wait()
	for _, c := range conns {
		c.goAway("gateway shutting down")
	}
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			_ = c.ws.NetConn().Close()
			c.wakeParked() // its socket left the poller without an event
		}
		s.mu.Unlock()
		s.log.Warn("grace period over; cut remaining connections", "connections", n)
		<-done
		errs = append(errs, fmt.Errorf("shutdown: %d connections cut: %w", n, ctx.Err()))
	}
	s.stopPoller()
	s.alarms.stop()
	return errors.Join(errs...)
}

// Connections returns the number of open WebSocket connections.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) handler(l Listener, la *listenerAccess) http.Handler {
	negotiation := protocols.Negotiation{Policy: s.opts.Policy, Allowed: l.Protocols, Fallback: l.Fallback}
	plain := &websocket.Upgrader{
		HandshakeTimeout: s.opts.HandshakeTimeout,
		// 0: gorilla reads through the hijacked bufio.Reader, which
		// upgradeWriter makes readBufferSize.
		ReadBufferSize:  0,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true }, // checked before
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	// gorilla accepts any permessage-deflate offer whatever its parameters,
	// so the offer is checked here and the compressing upgrader used only
	// for one this server can honour (deflate.go); the wireConn then states
	// the parameters in the response.
	deflating := *plain
	deflating.EnableCompression = true
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offered, herr := checkHandshake(r)
		if herr == nil && !s.originAllowed(r) {
			herr = refuse(http.StatusForbidden, "origin %q is not allowed", r.Header.Get("Origin"))
		}
		if herr != nil {
			s.refuse(w, r, herr)
			return
		}
		access, herr := s.admitRequest(la, r)
		if herr != nil {
			s.refuse(w, r, herr)
			return
		}
		p, err := s.registry.Negotiate(protocols.Handshake{
			Offered: offered, Path: r.URL.Path, RemoteAddr: r.RemoteAddr, Header: r.Header, TLS: r.TLS,
		}, negotiation)
		if err != nil {
			supported := strings.Join(s.registry.Supported(negotiation), ", ")
			reason := "no supported subprotocol offered; this endpoint serves: " + supported
			var nerr *protocols.NegotiationError
			if errors.As(err, &nerr) && len(nerr.Declined) > 0 {
				reason += " (" + nerr.Reasons() + ")"
			}
			s.refuse(w, r, refuse(http.StatusBadRequest, "%s", reason))
			return
		}
		ip := hostOf(r.RemoteAddr)
		if err := s.enter(ip); err != nil {
			herr := refuse(http.StatusServiceUnavailable, "%v", err)
			herr.Header = http.Header{"Retry-After": {"5"}}
			s.refuse(w, r, herr)
			return
		}
		var header http.Header
		if len(offered) > 0 {
			header = http.Header{"Sec-Websocket-Protocol": {p.Name()}}
		}
		upgrader := plain
		maxMessage := s.opts.MaxMessage
		if l.MaxMessage > 0 {
			maxMessage = l.MaxMessage
		}
		uw := &upgradeWriter{ResponseWriter: w, maxMessage: maxMessage}
		if l.Compression {
			if params, ok := negotiateDeflate(r.Header); ok {
				upgrader = &deflating
				uw.deflate = &params
			}
		}
		ws, err := upgrader.Upgrade(uw, r, header)
		if err != nil {
			s.leave(ip)
			s.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
			return
		}
		compress := uw.conn.compressing()
		if compress {
			_ = ws.SetCompressionLevel(uw.deflate.level())
		}
		// The connection gets a goroutine of its own so that this handler
		// returns and net/http frees its per-request buffers (about 6 KiB
		// an idle connection would otherwise keep).
		go s.serve(ws, uw.conn, uw.reader, p, requestInfo{
			remote: r.RemoteAddr, path: r.URL.Path, tls: r.TLS, compressMin: l.compressMin(compress),
			heartbeat: s.heartbeat(l.PingInterval, l.PongTimeout), maxMessage: maxMessage, auth: access,
		})
	})
}

func (l Listener) compressMin(negotiated bool) int {
	switch {
	case !negotiated:
		return 0
	case l.CompressMin <= 0:
		return 256
	}
	return l.CompressMin
}

// readBufferSize is the per-connection read buffer: a small one of its own
// instead of net/http's 4 KiB one, as every idle connection keeps it and
// device messages are small (larger ones are read in more calls, not
// refused). It holds a whole control frame, as gorilla needs.
const readBufferSize = 512

// requestInfo is what a connection keeps of its upgrade request.
type requestInfo struct {
	compressMin  int // compress messages of at least this size; 0: never
	remote, path string
	tls          *tls.ConnectionState
	heartbeat    heartbeat
	maxMessage   int64
	outbound     bool      // the gateway dialled the connection
	auth         *connAuth // nil on listeners that do not authenticate devices
}

// heartbeat is a connection's keepalive: a ping every interval, and the
// peer is dead when nothing arrives for interval+timeout. A zero interval
// sends no pings and never times out.
type heartbeat struct {
	interval, timeout time.Duration
}

// heartbeat returns the server's keepalive with a listener's overrides.
func (s *Server) heartbeat(interval, timeout time.Duration) heartbeat {
	h := heartbeat{s.opts.PingInterval, s.opts.PongTimeout}
	if interval > 0 {
		h.interval = interval
	}
	if timeout > 0 {
		h.timeout = timeout
	}
	return h
}

// refuse answers a handshake that is not upgraded, counts it, and logs it
// at info (limited, so that a flood of them cannot fill the disk).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, e *HandshakeError) {
	s.countRefusal(e.Status)
	s.logLimited("refused", "handshake refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", e.Status, "reason", e.Reason)
	writeRefusal(w, e)
}

func writeRefusal(w http.ResponseWriter, e *HandshakeError) {
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	// A client that was refused does not keep the connection: it would
	// otherwise hold a goroutine and buffers until it goes.
	w.Header().Set("Connection", "close")
	http.Error(w, e.Reason, e.Status)
}

// originAllowed applies the Origin policy; devices send no Origin.
func (s *Server) originAllowed(r *http.Request) bool {
	origins := r.Header.Values("Origin")
	if len(origins) > 1 {
		return false // RFC 6454 section 7.3: at most one; which would we check?
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.opts.AllowedOrigins) > 0 {
		return slices.Contains(s.opts.AllowedOrigins, "*") || slices.Contains(s.opts.AllowedOrigins, origin)
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// serve runs an upgraded connection until it ends.
func (s *Server) serve(ws *websocket.Conn, wire *wireConn, br *bufio.Reader, p protocols.Protocol, r requestInfo) {
	s.newConn(ws, wire, br, p, r).run(p)
}

// newConn registers a connection that s.active already counts. wire and br
// (the read buffer gorilla reads through) are nil for a dialled one, which
// never parks: the frames it reads are a server's, and it has no guard to
// follow them.
func (s *Server) newConn(ws *websocket.Conn, wire *wireConn, br *bufio.Reader, p protocols.Protocol, r requestInfo) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	id := newSessionID()
	c := &conn{
		srv:     s,
		ws:      ws,
		wire:    wire,
		br:      br,
		ctx:     ctx,
		cancel:  cancel,
		started: time.Now(),
		info: protocols.SessionInfo{
			ID:             id,
			Subprotocol:    p.Name(),
			RemoteAddr:     r.remote,
			Path:           r.path,
			MaxMessage:     r.maxMessage,
			Heartbeat:      r.heartbeat.interval,
			Gateway:        s.opts.GatewayID,
			TLS:            r.tls,
			CommandTimeout: s.opts.CommandTimeout,
			Outbound:       r.outbound,
		},
		compressMin: r.compressMin,
		heartbeat:   r.heartbeat,
		auth:        r.auth,
		noPark:      wire == nil || !canPark(wire.Conn),
	}
	if r.maxMessage > 0 {
		// The wire guard fails a message that is too big on the wire (at
		// its frame header), readMessage one that inflates beyond the
		// limit; gorilla's own check, on wire bytes, is a backstop that
		// never fires first.
		ws.SetReadLimit(compressedWireLimit(r.maxMessage))
	}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.upgrades++
	draining := s.draining
	s.mu.Unlock()
	if draining { // Shutdown began while this connection was upgrading
		c.Close(protocols.CloseGoingAway, "gateway shutting down")
	}
	c.logAt(slog.LevelDebug, "connection open", "path", r.path, "outbound", r.outbound)
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.leave(c.counted())
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
