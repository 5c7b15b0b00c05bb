package ship

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// Name is the WebSocket subprotocol of SHIP (ship.md section 3).
const Name = "ship"

// Channel is the frame channel SPINE datagrams are published on, and the
// command name that sends one: {prefix}/{device}/spine and
// {prefix}/{device}/cmd/spine.
const Channel = "spine"

// Options configure the ship protocol.
type Options struct {
	Identity *identity.Identity
	Trust    *trust.Store
	// AutoAccept trusts every unknown SKI at once (hello "ready");
	// otherwise it waits in the trust store as pending for the user.
	AutoAccept bool
	// TLS is what the TLS layer was configured with; the session uses it
	// to identify the peer again from the connection state.
	TLS identity.TLSOptions
	// Machine holds the timers of section 7; LocalSHIPID, PeerSHIPID and
	// AutoAccept are set per connection.
	Machine machine.Config
	// QoS of the published SPINE datagrams.
	QoS byte
	Log *slog.Logger
}

// Protocol is the ship protocol in the server role: the peer dialled the
// gateway. ForPeer gives the client role for one peer the gateway dials.
type Protocol struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	active map[string]*session // by peer SKI: the session attached for it
	stats  counters
}

type counters struct {
	sessions, complete, rejected, datagramsIn, datagramsOut, dropped atomic.Uint64
}

// New checks opts and returns the protocol.
func New(opts Options) (*Protocol, error) {
	if opts.Identity == nil || opts.Trust == nil {
		return nil, errors.New("ship: identity and trust store are required")
	}
	cfg := opts.Machine
	cfg.LocalSHIPID = opts.Identity.SHIPID
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Protocol{opts: opts, log: opts.Log, active: make(map[string]*session)}, nil
}

// Name implements protocols.Protocol.
func (p *Protocol) Name() string { return Name }

// NewSession implements protocols.Protocol for connections devices opened:
// the gateway is the SHIP server.
func (p *Protocol) NewSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	return p.newSession(ctx, info, out, machine.Server, Target{}, nil)
}

// Identity returns the local SHIP node.
func (p *Protocol) Identity() *identity.Identity { return p.opts.Identity }

// Trust returns the trust store.
func (p *Protocol) Trust() *trust.Store { return p.opts.Trust }

// AutoAccept reports whether unknown peers are trusted without the user.
func (p *Protocol) AutoAccept() bool { return p.opts.AutoAccept }

// ServerTLS returns the TLS configuration of the SHIP listener.
func (p *Protocol) ServerTLS() *tls.Config {
	return identity.ServerTLSConfig(p.opts.Identity, p.opts.TLS)
}

// ListenerTLS returns the TLS configuration of a listener that serves
// SHIP beside other protocols (module.TLSProvider): the SHIP certificate,
// and a client certificate requested, not required; Admit and the session
// check it.
func (p *Protocol) ListenerTLS() *tls.Config {
	return identity.ListenerTLSConfig(p.opts.Identity, p.opts.TLS)
}

// Reasons Admit gives a client it turns away.
var (
	errAdmitNoTLS  = errors.New("SHIP runs over wss:// only")
	errAdmitNoCert = errors.New("SHIP needs a TLS client certificate")
	errAdmitKey    = errors.New("SHIP needs a client certificate with an ECDSA P-256 key")
)

// Admit implements protocols.Admitter: SHIP serves only TLS clients that
// presented a certificate of its kind (an ECDSA P-256 key), so that a
// listener can give "ship, done" clients without one the other protocol.
// The session verifies the certificate in full (VerifyPeer).
func (p *Protocol) Admit(h protocols.Handshake) error {
	switch {
	case h.TLS == nil:
		return errAdmitNoTLS
	case len(h.TLS.PeerCertificates) == 0:
		return errAdmitNoCert
	}
	if key, ok := h.TLS.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); !ok || key.Curve != elliptic.P256() {
		return errAdmitKey
	}
	return nil
}

// Target is a SHIP server the gateway dials.
type Target struct {
	SKI    string // required: the peer must present this key
	SHIPID string // expected accessMethods id; empty accepts any
	URL    string // wss://host:port/path

	configured bool // from the config: its URL and SHIP ID win over discovery's
}

// ForPeer returns the protocol in the client role for dials to t, and the
// TLS configuration that only accepts t's key.
func (p *Protocol) ForPeer(t Target) (protocols.Protocol, *tls.Config) {
	c := p.clientRole(t)
	return c, c.tls
}

func (p *Protocol) clientRole(t Target) *clientRole {
	opts := p.opts.TLS
	opts.ExpectedPeerSKI = t.SKI
	return &clientRole{p: p, target: t, tls: identity.ClientTLSConfig(p.opts.Identity, opts)}
}

// clientRole is the protocol of the connections to one peer.
type clientRole struct {
	p       *Protocol
	target  Target
	tls     *tls.Config
	reached atomic.Bool // a connection reached data exchange
}

func (c *clientRole) Name() string { return Name }

func (c *clientRole) NewSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	return c.p.newSession(ctx, info, out, machine.Client, c.target, &c.reached)
}

// Connected reports whether a session of the peer with this SKI has
// completed its handshake and is attached.
func (p *Protocol) Connected(ski string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.active[ski]
	return ok
}

// claim makes s the session of its peer. An older session of the same peer
// is closed with 1000 "double connection": SHIP 12.2.2 has the node with
// the higher SKI keep the most recent connection. When the peer's SKI is
// the higher one it will close the older connection itself, so keeping the
// newest is the outcome either way; closing it here as well only saves a
// round trip.
func (p *Protocol) claim(s *session) {
	p.mu.Lock()
	old := p.active[s.peer.SKI]
	p.active[s.peer.SKI] = s
	p.mu.Unlock()
	if old != nil && old != s {
		old.log.Info("double connection: closing the older one", "keep_newer", trust.KeepNewer(p.opts.Identity.SKI, s.peer.SKI))
		old.out.Close(protocols.CloseNormal, "double connection")
	}
}

func (p *Protocol) release(s *session) {
	p.mu.Lock()
	if p.active[s.peer.SKI] == s {
		delete(p.active, s.peer.SKI)
	}
	p.mu.Unlock()
}

// Stats are the protocol's counters, for metrics.
type Stats struct {
	Sessions     uint64 // started
	Complete     uint64 // reached data exchange
	Rejected     uint64 // ended because the peer was not trusted
	DatagramsIn  uint64 // published to the router
	DatagramsOut uint64 // sent to peers
	Dropped      uint64 // datagrams that could not be published
	Connected    int    // peers in data exchange now
}

// Stats returns a snapshot of the counters.
func (p *Protocol) Stats() Stats {
	p.mu.Lock()
	n := len(p.active)
	p.mu.Unlock()
	return Stats{
		Sessions: p.stats.sessions.Load(), Complete: p.stats.complete.Load(), Rejected: p.stats.rejected.Load(),
		DatagramsIn: p.stats.datagramsIn.Load(), DatagramsOut: p.stats.datagramsOut.Load(),
		Dropped: p.stats.dropped.Load(), Connected: n,
	}
}

var _ protocols.Admitter = (*Protocol)(nil)

// errNoTLS: SHIP runs over TLS only; the listener is misconfigured.
var errNoTLS = fmt.Errorf("ship: connection without TLS (SHIP needs wss://)")
