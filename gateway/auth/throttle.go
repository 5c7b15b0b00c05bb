package auth

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// ThrottleOptions configure a Throttle. Zero or negative fields take their
// defaults.
type ThrottleOptions struct {
	After    int           // failures before an address is blocked (default 5)
	Base     time.Duration // first block (default 1s); it doubles with every further failure
	Max      time.Duration // longest block (default 5m)
	Forget   time.Duration // an address without failures for this long is forgotten (default 15m)
	MaxAddrs int           // addresses remembered at most (default 10000); when full, the least recently failed one goes
}

func (o ThrottleOptions) withDefaults() ThrottleOptions {
	if o.After <= 0 {
		o.After = 5
	}
	if o.Base <= 0 {
		o.Base = time.Second
	}
	if o.Max <= 0 {
		o.Max = 5 * time.Minute
	}
	if o.Forget <= 0 {
		o.Forget = 15 * time.Minute
	}
	if o.MaxAddrs <= 0 {
		o.MaxAddrs = 10000
	}
	return o
}

// ThrottleStats are a Throttle's counters, for Prometheus.
type ThrottleStats struct {
	Failures uint64 // failures counted
	Blocked  uint64 // times an address became blocked
	Refused  uint64 // times Blocked answered true
	Addrs    int    // addresses remembered now
}

// Throttle counts authentication failures per source address and blocks
// addresses that keep failing, so that guessing tokens from one place is
// slow. It is safe for concurrent use.
//
// An address is an IP without port; the IPv6 addresses of one /64 count as
// one, since a single host is commonly given a whole /64. Devices behind
// one NAT share their failures, and a success from any of them forgives
// the rest.
//
// Memory stays bounded by MaxAddrs however many addresses fail, at a
// price: an attacker with more addresses than that pushes out the oldest
// records, blocks included. Forgotten addresses are pruned as calls come,
// with no goroutine of its own.
type Throttle struct {
	opt ThrottleOptions

	mu    sync.Mutex
	addrs map[string]*list.Element // of *source
	order *list.List               // of *source, least recently failed first
	stats ThrottleStats
}

// source is one address's record.
type source struct {
	key      string
	failures int
	last     time.Time // of the latest failure
	until    time.Time // blocked before this instant
}

// NewThrottle returns a Throttle with o's settings.
func NewThrottle(o ThrottleOptions) *Throttle {
	return &Throttle{opt: o.withDefaults(), addrs: make(map[string]*list.Element), order: list.New()}
}

// Blocked reports whether addr is blocked at now, and for how much longer.
func (t *Throttle) Blocked(addr string, now time.Time) (retryAfter time.Duration, blocked bool) {
	key := sourceKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(now)
	e, ok := t.addrs[key]
	if !ok {
		return 0, false
	}
	s := e.Value.(*source)
	if !now.Before(s.until) {
		return 0, false
	}
	t.stats.Refused++
	return s.until.Sub(now), true
}

// Fail counts a failure of addr at now and returns how long addr is now
// blocked: 0 for its first After-1 failures, then Base, doubling with each
// further failure up to Max.
func (t *Throttle) Fail(addr string, now time.Time) (blockedFor time.Duration) {
	key := sourceKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prune(now)
	t.stats.Failures++

	var s *source
	if e, ok := t.addrs[key]; ok {
		s = e.Value.(*source)
		t.order.MoveToBack(e)
	} else {
		if len(t.addrs) >= t.opt.MaxAddrs {
			t.remove(t.order.Front())
		}
		s = &source{key: key}
		t.addrs[key] = t.order.PushBack(s)
	}
	s.failures++
	s.last = now
	if s.failures < t.opt.After {
		return 0
	}
	d := t.blockFor(s.failures - t.opt.After)
	if !now.Before(s.until) {
		t.stats.Blocked++
	}
	s.until = now.Add(d)
	return d
}

// blockFor is Base doubled extra times, at most Max.
func (t *Throttle) blockFor(extra int) time.Duration {
	d := t.opt.Base
	for range extra {
		if d >= t.opt.Max/2 {
			return t.opt.Max
		}
		d *= 2
	}
	return min(d, t.opt.Max)
}

// Succeed forgets addr's failures: a device that got in is not punished
// for the tries before.
func (t *Throttle) Succeed(addr string) {
	key := sourceKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.addrs[key]; ok {
		t.remove(e)
	}
}

// Stats returns the counters.
func (t *Throttle) Stats() ThrottleStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Addrs = len(t.addrs)
	return s
}

// prune forgets the least recently failed addresses that have neither
// failed within Forget nor are still blocked. It stops at the first one to
// keep, so each call costs only what it removes.
func (t *Throttle) prune(now time.Time) {
	for e := t.order.Front(); e != nil; e = t.order.Front() {
		s := e.Value.(*source)
		if now.Before(s.last.Add(t.opt.Forget)) || now.Before(s.until) {
			return
		}
		t.remove(e)
	}
}

func (t *Throttle) remove(e *list.Element) {
	delete(t.addrs, t.order.Remove(e).(*source).key)
}

// maxKeyLen bounds what an address that is not an IP costs to remember.
const maxKeyLen = 64

// sourceKey is what failures of addr are counted under: the IP, or for
// IPv6 its /64. A port, if the caller left one, is dropped, since counting
// per port would let every new connection start afresh.
func sourceKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return addr[:min(len(addr), maxKeyLen)]
		}
		ip = ap.Addr()
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}
