package discovery

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// announceAt are the offsets of the unsolicited announcements after a start
// or an Update: at least two, one second apart, then doubling (RFC 6762 8.3).
var announceAt = []time.Duration{0, time.Second, 3 * time.Second}

// ErrRunning is returned by Run when the Announcer is already running.
var ErrRunning = errors.New("discovery: announcer already running")

// Announcer announces one SHIP service and answers queries for it.
type Announcer struct {
	opts    Options
	log     *slog.Logger
	changed chan struct{} // capacity 1: Update wakes Run

	mu      sync.Mutex
	zone    *zone
	running bool
}

// NewAnnouncer checks svc and returns an Announcer for it. Nothing is sent
// before Run.
func NewAnnouncer(svc Service, opts Options) (*Announcer, error) {
	z, err := newZone(svc)
	if err != nil {
		return nil, err
	}
	return &Announcer{opts: opts, log: opts.logger(), changed: make(chan struct{}, 1), zone: z}, nil
}

// Service returns the announced service with the defaults filled in
// (Instance, Host, normalised SKI).
func (a *Announcer) Service() Service {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.zone.svc
}

// Update replaces the announced service; a running Announcer announces the
// change at once (RFC 6762 8.4), sending a goodbye for the old instance
// name when that changed. Use it when the auto-accept flag (register)
// changes, as ship-go does.
func (a *Announcer) Update(svc Service) error {
	z, err := newZone(svc)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.zone = z
	a.mu.Unlock()
	a.wake()
	return nil
}

// SetRegister changes only the register flag (auto-accept), atomically
// with respect to Update.
func (a *Announcer) SetRegister(register bool) {
	a.mu.Lock()
	svc := a.zone.svc
	svc.Register = register
	z, err := newZone(svc) // cannot fail: svc was valid before
	if err == nil {
		a.zone = z
	}
	a.mu.Unlock()
	a.wake()
}

func (a *Announcer) wake() {
	select {
	case a.changed <- struct{}{}:
	default: // a wake-up is already pending; Run reads the latest zone
	}
}

func (a *Announcer) current() *zone {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.zone
}

// Run opens the mDNS sockets, announces the service and answers queries
// until ctx is cancelled; then it sends a goodbye (TTL 0), closes the
// sockets and returns nil once all its goroutines have ended. When no
// socket can be opened it returns an error wrapping ErrNoMulticast at once:
// the caller logs it and carries on without announcing. Run may be called
// again after it returned.
func (a *Announcer) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return ErrRunning
	}
	a.running = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	conns, err := openConns(a.opts)
	if err != nil {
		return err
	}
	r := &responder{a: a, conns: conns, sent: make(map[sentKey]time.Time)}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			readLoop(c, a.log, func(m *dns.Msg, src *net.UDPAddr, ifi *net.Interface) { r.handle(c, m, src, ifi) })
		})
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
		wg.Wait()
	}()

	select {
	case <-a.changed: // an Update before Run: the first announcement has it
	default:
	}
	cur := a.current()
	step := 0
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			r.announce(cur, 0)
			return nil
		case <-a.changed:
			next := a.current()
			if !strings.EqualFold(next.instance, cur.instance) {
				r.announce(cur, 0) // the old name is gone; the rest is replaced by cache-flush
			}
			cur, step, start = next, 0, time.Now()
			timer.Reset(0)
		case <-timer.C:
			r.announce(cur, ttlSeconds)
			if step++; step < len(announceAt) {
				timer.Reset(time.Until(start.Add(announceAt[step])))
			}
		}
	}
}

// responder answers queries on the sockets of one Run.
type responder struct {
	a     *Announcer
	conns []*conn

	mu   sync.Mutex
	sent map[sentKey]time.Time // last multicast of a record per interface
}

type sentKey struct {
	v6      bool
	ifindex int
	record  string
}

// announce multicasts every record on every interface, each interface with
// its own addresses; ttl 0 makes it a goodbye.
func (r *responder) announce(z *zone, ttl uint32) {
	now := time.Now()
	for _, c := range r.conns {
		for i := range c.ifis {
			ifi := &c.ifis[i]
			m := z.announcement(interfaceAddrs(ifi, nil), ttl)
			r.send(c, ifi, m, now)
		}
	}
}

func (r *responder) send(c *conn, ifi *net.Interface, m *dns.Msg, now time.Time) {
	b, err := m.Pack()
	if err != nil {
		r.a.log.Debug("mdns: pack", "err", err)
		return
	}
	if err := c.sendGroup(b, ifi); err != nil {
		r.a.log.Debug("mdns: send", "interface", ifi.Name, "err", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sent) > 256 { // records of replaced zones linger; forget the stale
		for k, t := range r.sent {
			if now.Sub(t) >= time.Second {
				delete(r.sent, k)
			}
		}
	}
	for _, rr := range m.Answer {
		r.sent[sentKey{c.v6, ifi.Index, rr.String()}] = now
	}
}

// handle answers one received message. ifi is nil when the platform did not
// say where the packet came in.
func (r *responder) handle(c *conn, q *dns.Msg, src *net.UDPAddr, ifi *net.Interface) {
	z := r.a.current()
	reply, unicast := z.respond(q, src.Port, interfaceAddrs(ifi, c.ifis))
	if reply == nil {
		return
	}
	if unicast {
		b, err := reply.Pack()
		if err == nil {
			err = c.sendTo(b, src)
		}
		if err != nil {
			r.a.log.Debug("mdns: unicast reply", "to", src, "err", err)
		}
		return
	}
	targets := c.ifis
	if ifi != nil {
		targets = []net.Interface{*ifi}
	}
	now := time.Now()
	for i := range targets {
		m := r.limit(c, &targets[i], reply, now)
		if m != nil {
			r.send(c, &targets[i], m, now)
		}
	}
}

// limit leaves out answers multicast on the interface less than a second
// ago (RFC 6762 6), so a flood of queries cannot make us flood the link. It
// returns nil when nothing is left.
func (r *responder) limit(c *conn, ifi *net.Interface, reply *dns.Msg, now time.Time) *dns.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ans []dns.RR
	for _, rr := range reply.Answer {
		if t, ok := r.sent[sentKey{c.v6, ifi.Index, rr.String()}]; ok && now.Sub(t) < time.Second {
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
