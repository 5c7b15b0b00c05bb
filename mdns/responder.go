package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// announceAt are the offsets of the unsolicited announcements after a
// service is added or changed: at least two, one second apart, then
// doubling (RFC 6762 8.3).
var announceAt = []time.Duration{0, time.Second, 3 * time.Second}

// ErrRunning is returned by Run when the Responder is already running.
var ErrRunning = errors.New("mdns: responder already running")

// Responder announces the services of the process and answers queries for
// them, all over one set of sockets. Services may be announced, changed
// and withdrawn before and while it runs.
type Responder struct {
	opts    Options
	log     *slog.Logger
	changed chan struct{} // capacity 1: a change wakes Run

	mu      sync.Mutex
	anns    []*Announcement // in the order announced
	running bool
}

// Announcement is one service of a Responder.
type Announcement struct {
	r    *Responder
	zone *zone // guarded by r.mu; nil once withdrawn
}

// NewResponder returns a Responder for opts. Nothing is sent before Run.
func NewResponder(opts Options) *Responder {
	return &Responder{opts: opts, log: opts.logger(), changed: make(chan struct{}, 1)}
}

// Options returns the options the Responder was made with, for browsing
// on the same interfaces.
func (r *Responder) Options() Options { return r.opts }

// Announce checks svc and adds it; a running Responder announces it at
// once. It fails with ErrInvalidService when svc is invalid or another
// announced service has the same instance name and type.
func (r *Responder) Announce(svc Service) (*Announcement, error) {
	z, err := newZone(svc)
	if err != nil {
		return nil, err
	}
	a := &Announcement{r: r}
	r.mu.Lock()
	err = r.conflict(z, a)
	if err == nil {
		a.zone = z
		r.anns = append(r.anns, a)
	}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	r.wake()
	return a, nil
}

// conflict reports another announced service with z's instance name.
// r.mu is held.
func (r *Responder) conflict(z *zone, self *Announcement) error {
	for _, o := range r.anns {
		if o != self && strings.EqualFold(o.zone.instance, z.instance) {
			return fmt.Errorf("%w: %q is announced already", ErrInvalidService, z.svc.Instance+"."+z.svc.Type)
		}
	}
	return nil
}

// Service returns the announced service with the defaults filled in (the
// host name); after Withdraw, the zero Service.
func (a *Announcement) Service() Service {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	if a.zone == nil {
		return Service{}
	}
	return a.zone.svc
}

// Update replaces the announced service; a running Responder announces the
// change at once (RFC 6762 8.4), with a goodbye for the old instance name
// when that changed. An invalid svc leaves the announcement as it was; so
// does Update after Withdraw, which returns an error.
func (a *Announcement) Update(svc Service) error {
	z, err := newZone(svc)
	if err != nil {
		return err
	}
	r := a.r
	r.mu.Lock()
	switch {
	case a.zone == nil:
		err = errors.New("mdns: update of a withdrawn service")
	default:
		err = r.conflict(z, a)
	}
	if err == nil {
		a.zone = z
	}
	r.mu.Unlock()
	if err == nil {
		r.wake()
	}
	return err
}

// Withdraw removes the service; a running Responder sends its goodbye.
// Calling it again does nothing.
func (a *Announcement) Withdraw() {
	r := a.r
	r.mu.Lock()
	for i, o := range r.anns {
		if o == a {
			r.anns = append(r.anns[:i:i], r.anns[i+1:]...)
			break
		}
	}
	a.zone = nil
	r.mu.Unlock()
	r.wake()
}

func (r *Responder) wake() {
	select {
	case r.changed <- struct{}{}:
	default: // a wake-up is already pending; Run reads the latest state
	}
}

// zones returns the zones of the announced services, in order.
func (r *Responder) zones() []*zone {
	r.mu.Lock()
	defer r.mu.Unlock()
	zs := make([]*zone, len(r.anns))
	for i, a := range r.anns {
		zs[i] = a.zone
	}
	return zs
}

// onWire is what Run last announced for one Announcement, and when it
// announces it next.
type onWire struct {
	zone  *zone
	step  int       // announcements sent since the last change
	start time.Time // of the last change
	due   time.Time // zero: no more announcements until the next change
}

// Run opens the mDNS sockets once there is a service to announce,
// announces the services and answers queries until ctx is cancelled; then
// it sends a goodbye (TTL 0) for every service, closes the sockets and
// returns nil once all its goroutines have ended. When no socket can be
// opened it returns an error wrapping ErrNoMulticast: the caller logs it
// and carries on without announcing. Run may be called again after it
// returned.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return ErrRunning
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()

	// Nothing to announce, nothing to answer: stay off the network until
	// there is.
	for len(r.zones()) == 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-r.changed:
		}
	}
	conns, err := openConns(r.opts)
	if err != nil {
		return err
	}
	s := &sender{log: r.log, conns: conns, sent: make(map[sentKey]time.Time)}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			readLoop(c, r.log, func(m *dns.Msg, src *net.UDPAddr, ifi *net.Interface) { s.reply(c, r.zones(), m, src, ifi) })
		})
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
		wg.Wait()
	}()

	select {
	case <-r.changed: // changes before Run: the first announcements have them
	default:
	}
	live := map[*Announcement]*onWire{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		r.reconcile(live, s, time.Now())
		for _, w := range live {
			if !w.due.IsZero() && !w.due.After(time.Now()) {
				s.announce(w.zone, ttlSeconds)
				if w.step++; w.step < len(announceAt) {
					w.due = w.start.Add(announceAt[w.step])
				} else {
					w.due = time.Time{}
				}
			}
		}
		var next time.Time
		for _, w := range live {
			if !w.due.IsZero() && (next.IsZero() || w.due.Before(next)) {
				next = w.due
			}
		}
		if next.IsZero() {
			next = time.Now().Add(time.Hour) // nothing due: sleep until a change
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			for _, w := range live {
				s.announce(w.zone, 0)
			}
			return nil
		case <-r.changed:
		case <-timer.C:
		}
	}
}

// reconcile brings live (what is on the wire) up to the announced
// services: goodbyes for the withdrawn ones and for old instance names, a
// fresh series of announcements for the new and changed ones.
func (r *Responder) reconcile(live map[*Announcement]*onWire, s *sender, now time.Time) {
	r.mu.Lock()
	current := make(map[*Announcement]*zone, len(r.anns))
	for _, a := range r.anns {
		current[a] = a.zone
	}
	r.mu.Unlock()
	for a, w := range live {
		z, ok := current[a]
		switch {
		case !ok:
			s.announce(w.zone, 0)
			delete(live, a)
		case z != w.zone:
			if !strings.EqualFold(z.instance, w.zone.instance) {
				s.announce(w.zone, 0) // the old name is gone; the rest is replaced by cache-flush
			}
			live[a] = &onWire{zone: z, start: now, due: now}
		}
	}
	for a, z := range current {
		if _, ok := live[a]; !ok {
			live[a] = &onWire{zone: z, start: now, due: now}
		}
	}
}

// sender writes the messages of one Run.
type sender struct {
	log   *slog.Logger
	conns []*conn

	mu   sync.Mutex
	sent map[sentKey]time.Time // last multicast of a record per interface
}

type sentKey struct {
	v6      bool
	ifindex int
	record  string
}

// announce multicasts every record of z on every interface where z has an
// address, each interface with its own addresses; ttl 0 makes it a
// goodbye.
func (s *sender) announce(z *zone, ttl uint32) {
	now := time.Now()
	for _, c := range s.conns {
		for i := range c.ifis {
			ifi := &c.ifis[i]
			l := linkOf(ifi, nil)
			if len(z.addrs(l)) == 0 {
				continue // z is not reachable there
			}
			s.send(c, ifi, z.announcement(l, ttl), now)
		}
	}
}

func (s *sender) send(c *conn, ifi *net.Interface, m *dns.Msg, now time.Time) {
	b, err := m.Pack()
	if err != nil {
		s.log.Debug("mdns: pack", "err", err)
		return
	}
	if err := c.sendGroup(b, ifi); err != nil {
		s.log.Debug("mdns: send", "interface", ifi.Name, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sent) > 256 { // records of replaced zones linger; forget the stale
		for k, t := range s.sent {
			if now.Sub(t) >= time.Second {
				delete(s.sent, k)
			}
		}
	}
	for _, rr := range m.Answer {
		s.sent[sentKey{c.v6, ifi.Index, rr.String()}] = now
	}
}

// reply answers one received message with the records of zones. ifi is
// nil when the platform did not say where the packet came in.
func (s *sender) reply(c *conn, zones []*zone, q *dns.Msg, src *net.UDPAddr, ifi *net.Interface) {
	reply, unicast := respond(zones, q, src.Port, linkOf(ifi, c.ifis))
	if reply == nil {
		return
	}
	if unicast {
		b, err := reply.Pack()
		if err == nil {
			err = c.sendTo(b, src)
		}
		if err != nil {
			s.log.Debug("mdns: unicast reply", "to", src, "err", err)
		}
		return
	}
	targets := c.ifis
	if ifi != nil {
		targets = []net.Interface{*ifi}
	}
	now := time.Now()
	for i := range targets {
		if m := s.limit(c, &targets[i], reply, now); m != nil {
			s.send(c, &targets[i], m, now)
		}
	}
}

// limit leaves out answers multicast on the interface less than a second
// ago (RFC 6762 6), so a flood of queries cannot make us flood the link. It
// returns nil when nothing is left.
func (s *sender) limit(c *conn, ifi *net.Interface, reply *dns.Msg, now time.Time) *dns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ans []dns.RR
	for _, rr := range reply.Answer {
		if t, ok := s.sent[sentKey{c.v6, ifi.Index, rr.String()}]; ok && now.Sub(t) < time.Second {
			continue
		}
		ans = append(ans, rr)
	}
	if len(ans) == 0 {
		return nil
	}
	m := reply.Copy()
	m.Answer = ans
	return m
}
