package ship

import (
	"cmp"
	"context"
	"crypto/tls"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// DialFunc opens a WebSocket connection to url and runs p's session on it
// until the connection ends (gateway.Server.Dial). It returns an error
// when the connection could not be opened.
type DialFunc func(ctx context.Context, url string, tlsConfig *tls.Config, p protocols.Protocol) error

// DelayRange is one step of the reconnect delays: a random wait in
// [Min, Max).
type DelayRange struct{ Min, Max time.Duration }

// DefaultReconnectDelays are section 7's: random 0-3 s before the first
// attempt, then 3-10 s, then 10-20 s for every further one. The randomness
// lowers the chance that both nodes dial each other at once.
var DefaultReconnectDelays = []DelayRange{{0, 3 * time.Second}, {3 * time.Second, 10 * time.Second}, {10 * time.Second, 20 * time.Second}}

// Peers dials SHIP servers: the configured targets, and trusted peers that
// discovery reports, each with the reconnect delays of section 7 while it
// is not connected. It also ends the connections of peers the user rejects
// or removes.
type Peers struct {
	p      *Protocol
	dial   DialFunc
	delays []DelayRange

	mu      sync.Mutex
	loops   map[string]*peerLoop // by SKI
	found   map[string]Target    // configured, or discovered (trusted or not)
	running sync.WaitGroup
}

type peerLoop struct {
	mu     sync.Mutex
	target Target
	wake   chan struct{} // the target changed
	cancel context.CancelFunc
}

// NewPeers returns the dialler; delays nil means DefaultReconnectDelays.
func (p *Protocol) NewPeers(dial DialFunc, delays []DelayRange) *Peers {
	if len(delays) == 0 {
		delays = DefaultReconnectDelays
	}
	return &Peers{p: p, dial: dial, delays: delays, loops: make(map[string]*peerLoop), found: make(map[string]Target)}
}

// Run dials the configured targets (their SKIs are trusted: the config
// says so) and follows the trust store until ctx ends, then waits for its
// connections to end.
func (ps *Peers) Run(ctx context.Context, configured []Target) error {
	events, unsubscribe := ps.p.opts.Trust.Subscribe(64)
	defer unsubscribe()
	for _, t := range configured {
		ski, err := identity.NormalizeSKI(t.SKI)
		if err != nil {
			return err
		}
		t.SKI = ski
		approve := ps.p.opts.Trust.Approve
		if t.SHIPID != "" {
			approve = func(ski string) error { return ps.p.opts.Trust.ApproveWithSHIPID(ski, t.SHIPID) }
		}
		if err := approve(ski); err != nil {
			return err
		}
		t.configured = true
		ps.mu.Lock()
		ps.found[ski] = t // dialled again if the user rejects, then approves it
		ps.mu.Unlock()
		ps.ensure(ctx, t)
	}
	// The store drops events a subscriber has no room for; re-reading it
	// now and then applies what a burst made us miss.
	resync := time.NewTicker(time.Minute)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			ps.running.Wait()
			return nil
		case ev := <-events:
			ps.onTrust(ctx, ev)
		case <-resync.C:
			ps.resync(ctx)
		}
	}
}

// Found reports a service discovery saw; it is dialled when its SKI is
// trusted, now or later.
func (ps *Peers) Found(ctx context.Context, t Target) {
	ski, err := identity.NormalizeSKI(t.SKI)
	if err != nil || ski == ps.p.opts.Identity.SKI {
		return
	}
	t.SKI = ski
	ps.mu.Lock()
	if prev, ok := ps.found[ski]; ok && prev.configured {
		// The config's address and SHIP ID win; discovery fills gaps.
		t.URL, t.SHIPID = cmp.Or(prev.URL, t.URL), cmp.Or(prev.SHIPID, t.SHIPID)
		t.configured = true
	}
	ps.found[ski] = t
	ps.mu.Unlock()
	if e, ok := ps.p.opts.Trust.Get(ski); ok && e.State == trust.Trusted {
		ps.ensure(ctx, t)
	}
}

func (ps *Peers) onTrust(ctx context.Context, ev trust.Event) {
	ski := ev.Entry.SKI
	if ev.Removed || ev.Entry.State == trust.Rejected {
		// Unpair before stopping the dial loop: the gateway answers the
		// stop by calling the session's GoingAway, and the peer sees the
		// reason of whichever close comes first.
		ps.p.mu.Lock()
		s := ps.p.active[ski]
		ps.p.mu.Unlock()
		if s != nil {
			s.log.Info("peer removed or rejected by the user; closing")
			s.unpair()
		}
		ps.stop(ski)
		return
	}
	if ev.Entry.State == trust.Trusted {
		ps.mu.Lock()
		t, ok := ps.found[ski]
		ps.mu.Unlock()
		if ok {
			ps.ensure(ctx, t)
		}
	}
}

// resync applies the whole store after missed events.
func (ps *Peers) resync(ctx context.Context) {
	for _, e := range ps.p.opts.Trust.List() {
		ps.onTrust(ctx, trust.Event{Entry: e})
	}
}

// ensure runs a dial loop for t.SKI, or updates its target (a new
// address from discovery).
func (ps *Peers) ensure(ctx context.Context, t Target) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if l, ok := ps.loops[t.SKI]; ok {
		l.mu.Lock()
		if t.URL != "" {
			l.target.URL = t.URL
		}
		if t.SHIPID != "" {
			l.target.SHIPID = t.SHIPID
		}
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		return
	}
	if ctx.Err() != nil {
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &peerLoop{target: t, wake: make(chan struct{}, 1), cancel: cancel}
	ps.loops[t.SKI] = l
	ps.running.Add(1)
	go func() {
		defer ps.running.Done()
		ps.loop(lctx, l)
	}()
}

func (ps *Peers) stop(ski string) {
	ps.mu.Lock()
	l, ok := ps.loops[ski]
	delete(ps.loops, ski)
	ps.mu.Unlock()
	if ok {
		l.cancel()
	}
}

// loop dials one peer while it is not connected: before every attempt it
// waits the delay of the attempt's step; a connection that reached data
// exchange starts the steps again.
func (ps *Peers) loop(ctx context.Context, l *peerLoop) {
	l.mu.Lock()
	role := ps.p.clientRole(l.target)
	l.mu.Unlock()
	log := ps.p.log.With("peer", role.target.SKI)
	for attempt := 0; ; attempt++ {
		if !sleep(ctx, ps.delay(attempt)) {
			return
		}
		l.mu.Lock()
		t := l.target
		l.mu.Unlock()
		if t.URL == "" { // configured without an address: wait for discovery
			select {
			case <-ctx.Done():
				return
			case <-l.wake:
			}
			attempt = -1
			continue
		}
		if ps.p.Connected(t.SKI) {
			attempt = -1 // it dialled us; check again later
			if !sleep(ctx, ps.delays[len(ps.delays)-1].Max) {
				return
			}
			continue
		}
		if t.SHIPID != role.target.SHIPID || t.URL != role.target.URL {
			role = ps.p.clientRole(t)
		}
		role.reached.Store(false)
		err := ps.dial(ctx, t.URL, role.tls, role)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Info("dialling SHIP peer failed", "url", t.URL, "attempt", attempt+1, "err", err)
		case role.reached.Load():
			log.Info("SHIP connection to peer ended; reconnecting", "url", t.URL)
			attempt = -1
		default:
			log.Info("SHIP connection to peer ended before data exchange", "url", t.URL)
		}
	}
}

func (ps *Peers) delay(attempt int) time.Duration {
	r := ps.delays[min(attempt, len(ps.delays)-1)]
	if r.Max <= r.Min {
		return r.Min
	}
	return r.Min + rand.N(r.Max-r.Min)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
