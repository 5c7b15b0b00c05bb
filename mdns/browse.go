package mdns

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultQueryInterval is the longest gap between two browse queries.
// Queries start one second apart and double up to it (RFC 6762 5.2); known
// services are also re-queried at 80 % and 90 % of their TTL.
const DefaultQueryInterval = time.Minute

// Bounds that keep a noisy or hostile link from growing the cache.
const (
	maxEntries      = 256 // instances
	maxHostAddrs    = 16  // addresses per host
	maxFollowUps    = 3   // targeted queries per instance between two browse queries
	maxQuestions    = 32  // per query message
	followUpSpacing = time.Second
)

// EventKind says what happened to a service.
type EventKind int

// Event kinds.
const (
	// Added: a complete service appeared.
	Added EventKind = iota + 1
	// Updated: a reported service changed (TXT, port, host or addresses).
	Updated
	// Removed: a reported service said goodbye, expired, or lost its last
	// usable address; Service is the last value reported.
	Removed
)

func (k EventKind) String() string {
	switch k {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a change of one discovered service.
type Event struct {
	Kind    EventKind
	Service Service
}

// BrowseOptions configures Browse.
type BrowseOptions struct {
	Options
	// Type is the service type to look for, e.g. "_ship._tcp".
	Type string
	// QueryInterval caps the gap between browse queries; zero means
	// DefaultQueryInterval, values below one second mean one second.
	QueryInterval time.Duration
}

// Browse looks for services of opts.Type until ctx is cancelled and
// reports each change through handle. It sends periodic PTR queries for
// the type, listens to every answer and unsolicited announcement on the
// link, asks for missing SRV, TXT and address records, and merges
// everything per instance: a service is reported (Added) once it has a TXT
// record, an SRV record and at least one usable address; repeated answers
// that change nothing are not reported again. What the TXT record says is
// the handler's to judge.
//
// handle is called from the one goroutine that runs the cache, never
// concurrently and never after Browse returned. It must not block for long:
// while it runs, packets wait in a 16-message queue and then in the
// socket's receive buffer, where the kernel drops what overflows (the next
// query recovers them). To hand events to another goroutine, send them to
// a channel from handle, with a select on ctx.Done() if the reader may
// stop.
//
// Browse returns nil after ctx is cancelled and its goroutines have ended,
// or an error wrapping ErrNoMulticast at once when no socket can be opened.
func Browse(ctx context.Context, opts BrowseOptions, handle func(Event)) error {
	if handle == nil {
		return errors.New("mdns: Browse needs a handler")
	}
	if err := validType(opts.Type); err != nil {
		return err
	}
	service := strings.ToLower(opts.Type) + "." + Domain
	interval := opts.QueryInterval
	if interval == 0 {
		interval = DefaultQueryInterval
	}
	interval = max(interval, time.Second)
	log := opts.logger()

	conns, err := openConns(opts.Options)
	if err != nil {
		return err
	}
	type packet struct {
		msg  *dns.Msg
		port int
	}
	pkts := make(chan packet, 16)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			readLoop(c, log, func(m *dns.Msg, src *net.UDPAddr, _ *net.Interface) {
				if !m.Response {
					return // queries, ours looped back included
				}
				select {
				case pkts <- packet{m, src.Port}:
				case <-done:
				}
			})
		})
	}
	defer func() {
		close(done)
		for _, c := range conns {
			c.close()
		}
		wg.Wait()
	}()

	cache := newCache(service)
	gap := time.Second
	var nextQuery, lastQuery time.Time // zero: query at once
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-pkts:
			cache.add(p.msg, p.port, time.Now())
		case <-timer.C:
		}
		now := time.Now()
		cache.expire(now)
		if !now.Before(nextQuery) || cache.refreshDue(now, lastQuery) {
			sendAll(conns, query([]dns.Question{{Name: service, Qtype: dns.TypePTR, Qclass: dns.ClassINET}}), log)
			lastQuery = now
			cache.resetFollowUps()
			if !now.Before(nextQuery) {
				nextQuery, gap = now.Add(gap), min(gap*2, interval)
			}
		}
		if qs := cache.followUps(now); len(qs) > 0 {
			sendAll(conns, query(qs), log)
		}
		for _, ev := range cache.reconcile() {
			handle(ev)
		}
		wake := nextQuery
		if d := cache.nextDeadline(now, lastQuery); !d.IsZero() && d.Before(wake) {
			wake = d
		}
		timer.Reset(max(time.Until(wake), 10*time.Millisecond))
	}
}

// query is an mDNS query: ID 0, no recursion, multicast answers wanted.
func query(qs []dns.Question) *dns.Msg {
	return &dns.Msg{Question: qs}
}

// record is the lifetime of one cached resource record.
type record struct {
	received, expires time.Time
}

func newRecord(now time.Time, ttl uint32) record {
	return record{received: now, expires: now.Add(time.Duration(ttl) * time.Second)}
}

// refreshPoints are the 80 % and 90 % points of the TTL at which RFC 6762
// 5.2 asks to query again.
func (r record) refreshPoints() [2]time.Time {
	life := r.expires.Sub(r.received)
	return [2]time.Time{r.received.Add(life * 8 / 10), r.received.Add(life * 9 / 10)}
}

// entry collects the records of one instance.
type entry struct {
	name                   string // instance FQDN as received (presentation form)
	ptr, srv, txt          record
	hasPTR, hasSRV, hasTXT bool
	target                 string
	port                   uint16
	txtData                []string // unescaped key=value strings
	gone                   bool     // PTR goodbye: report Removed and forget

	reported *Service // last value handed out, nil when not reported
	asked    time.Time
	attempts int
}

// cache is the browse state of one service type; it is used from one
// goroutine only and takes the time as an argument, so tests drive it
// without sockets or clocks.
type cache struct {
	service string                           // lower-case service FQDN, e.g. "_ship._tcp.local."
	entries map[string]*entry                // by lower-case instance FQDN
	hosts   map[string]map[netip.Addr]record // by lower-case host FQDN
}

func newCache(service string) *cache {
	return &cache{service: service, entries: map[string]*entry{}, hosts: map[string]map[netip.Addr]record{}}
}

// entry returns the entry of an instance name, creating it when create is
// set and the cache has room.
func (c *cache) entry(name string, create bool) *entry {
	key := strings.ToLower(name)
	if e, ok := c.entries[key]; ok {
		return e
	}
	if !create || len(c.entries) >= maxEntries {
		return nil
	}
	e := &entry{name: name}
	c.entries[key] = e
	return e
}

// add merges one received response into the cache.
func (c *cache) add(m *dns.Msg, srcPort int, now time.Time) {
	// RFC 6762 6 and 18: responses come from port 5353, with opcode and
	// rcode zero; anything else is not for us.
	if !m.Response || m.Opcode != dns.OpcodeQuery || m.Rcode != dns.RcodeSuccess || srcPort != mdnsPort {
		return
	}
	rrs := slices.Concat(m.Answer, m.Ns, m.Extra)
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class&^topBit != dns.ClassINET {
			continue
		}
		switch rr := rr.(type) {
		case *dns.PTR:
			if !strings.EqualFold(h.Name, c.service) {
				continue
			}
			if _, ok := splitInstance(rr.Ptr, c.service); !ok {
				continue
			}
			if e := c.entry(rr.Ptr, h.Ttl > 0); e != nil {
				if h.Ttl == 0 {
					e.gone = true // goodbye (RFC 6762 10.1)
				} else {
					e.ptr, e.hasPTR = newRecord(now, h.Ttl), true
				}
			}
		case *dns.SRV:
			if _, ok := splitInstance(h.Name, c.service); !ok {
				continue
			}
			if e := c.entry(h.Name, h.Ttl > 0); e != nil {
				e.srv, e.hasSRV = newRecord(now, h.Ttl), h.Ttl > 0
				e.target, e.port = rr.Target, rr.Port
			}
		case *dns.TXT:
			if _, ok := splitInstance(h.Name, c.service); !ok {
				continue
			}
			if e := c.entry(h.Name, h.Ttl > 0); e != nil {
				e.txt, e.hasTXT = newRecord(now, h.Ttl), h.Ttl > 0
				e.txtData = make([]string, len(rr.Txt))
				for i, s := range rr.Txt {
					e.txtData[i] = unescape(s)
				}
			}
		}
	}
	// Addresses second, and only for hosts an SRV record points to: the
	// link carries every host's records, we keep only what we need.
	wanted := map[string]bool{}
	for _, e := range c.entries {
		if e.hasSRV {
			wanted[strings.ToLower(e.target)] = true
		}
	}
	for _, rr := range rrs {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A)
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA)
		default:
			continue
		}
		h := rr.Header()
		host := strings.ToLower(h.Name)
		if !wanted[host] || h.Class&^topBit != dns.ClassINET || !a.IsValid() {
			continue
		}
		a = a.Unmap()
		set := c.hosts[host]
		if set == nil {
			set = map[netip.Addr]record{}
			c.hosts[host] = set
		}
		if h.Class&topBit != 0 {
			// Cache flush (RFC 6762 10.2): this packet holds the whole
			// address set of this family; what came more than a second
			// earlier is stale.
			for old, r := range set {
				if old.Is4() == a.Is4() && now.Sub(r.received) > time.Second {
					delete(set, old)
				}
			}
		}
		switch {
		case h.Ttl == 0:
			delete(set, a)
		case len(set) < maxHostAddrs || hasKey(set, a):
			set[a] = newRecord(now, h.Ttl)
		}
	}
}

func hasKey(m map[netip.Addr]record, a netip.Addr) bool {
	_, ok := m[a]
	return ok
}

// expire drops records whose TTL has passed.
func (c *cache) expire(now time.Time) {
	for _, e := range c.entries {
		if e.hasPTR && !now.Before(e.ptr.expires) {
			e.hasPTR = false
		}
		if e.hasSRV && !now.Before(e.srv.expires) {
			e.hasSRV = false
		}
		if e.hasTXT && !now.Before(e.txt.expires) {
			e.hasTXT = false
		}
	}
	for host, set := range c.hosts {
		for a, r := range set {
			if !now.Before(r.expires) {
				delete(set, a)
			}
		}
		if len(set) == 0 {
			delete(c.hosts, host)
		}
	}
}

// addrs returns the usable addresses of a host: no IPv6 link-local, IPv4
// before IPv6 (netip's order), sorted.
func (c *cache) addrs(host string) []netip.Addr {
	var out []netip.Addr
	for a := range c.hosts[strings.ToLower(host)] {
		if usable(a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// complete returns the Service an entry describes, if it is complete.
func (c *cache) complete(e *entry) (Service, bool) {
	if e.gone || !e.hasSRV || !e.hasTXT {
		return Service{}, false
	}
	addrs := c.addrs(e.target)
	if len(addrs) == 0 {
		return Service{}, false
	}
	instance, _ := splitInstance(e.name, c.service)
	return Service{
		Instance: instance, Type: strings.TrimSuffix(c.service, "."+Domain),
		Host: strings.TrimSuffix(e.target, "."), Port: int(e.port), Addrs: addrs, TXT: slices.Clone(e.txtData),
	}, true
}

// reconcile compares every entry with what was reported and returns the
// events, in instance-name order. Entries with nothing left are dropped,
// and so are host addresses no entry points to.
func (c *cache) reconcile() []Event {
	var evs []Event
	for _, key := range slices.Sorted(maps.Keys(c.entries)) {
		e := c.entries[key]
		svc, ok := c.complete(e)
		switch {
		case ok && e.reported == nil:
			evs = append(evs, Event{Added, svc})
			e.reported = &svc
		case ok && !equalService(svc, *e.reported):
			evs = append(evs, Event{Updated, svc})
			e.reported = &svc
		case !ok && e.reported != nil:
			evs = append(evs, Event{Removed, *e.reported})
			e.reported = nil
		}
		if e.gone || !e.hasPTR && !e.hasSRV && !e.hasTXT {
			delete(c.entries, key)
		}
	}
	wanted := map[string]bool{}
	for _, e := range c.entries {
		wanted[strings.ToLower(e.target)] = true
	}
	for host := range c.hosts {
		if !wanted[host] {
			delete(c.hosts, host)
		}
	}
	return evs
}

func equalService(a, b Service) bool {
	return a.Instance == b.Instance && a.Type == b.Type && a.Host == b.Host && a.Port == b.Port &&
		slices.Equal(a.Addrs, b.Addrs) && slices.Equal(a.TXT, b.TXT)
}

// missing returns the questions that would complete an entry: SRV and TXT
// for the instance, or A and AAAA for its host.
func (c *cache) missing(e *entry) []dns.Question {
	if e.gone {
		return nil
	}
	if !e.hasSRV || !e.hasTXT {
		return []dns.Question{
			{Name: e.name, Qtype: dns.TypeSRV, Qclass: dns.ClassINET},
			{Name: e.name, Qtype: dns.TypeTXT, Qclass: dns.ClassINET},
		}
	}
	if len(c.addrs(e.target)) == 0 {
		return []dns.Question{
			{Name: e.target, Qtype: dns.TypeA, Qclass: dns.ClassINET},
			{Name: e.target, Qtype: dns.TypeAAAA, Qclass: dns.ClassINET},
		}
	}
	return nil
}

// followUps returns the targeted questions to send now: at most
// maxFollowUps per instance between two browse queries, a second apart, so
// a host that only has link-local addresses is not asked forever.
func (c *cache) followUps(now time.Time) []dns.Question {
	var qs []dns.Question
	for _, key := range slices.Sorted(maps.Keys(c.entries)) {
		e := c.entries[key]
		need := c.missing(e)
		if len(need) == 0 || e.attempts >= maxFollowUps || now.Sub(e.asked) < followUpSpacing {
			continue
		}
		if len(qs)+len(need) > maxQuestions {
			break
		}
		for _, q := range need {
			if !slices.ContainsFunc(qs, func(x dns.Question) bool { return strings.EqualFold(x.Name, q.Name) && x.Qtype == q.Qtype }) {
				qs = append(qs, q)
			}
		}
		e.asked, e.attempts = now, e.attempts+1
	}
	return qs
}

// resetFollowUps is called after each browse query.
func (c *cache) resetFollowUps() {
	for _, e := range c.entries {
		e.attempts = 0
	}
}

// refreshDue reports whether a cached record passed a refresh point since
// the last browse query.
func (c *cache) refreshDue(now, lastQuery time.Time) bool {
	due := false
	c.eachRecord(func(r record) {
		for _, t := range r.refreshPoints() {
			if t.After(lastQuery) && !t.After(now) {
				due = true
			}
		}
	})
	return due
}

// nextDeadline is the next time the cache needs the loop: an expiry, a
// refresh point or a follow-up query. Zero means none.
func (c *cache) nextDeadline(now, lastQuery time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	c.eachRecord(func(r record) {
		consider(r.expires)
		for _, t := range r.refreshPoints() {
			if t.After(lastQuery) {
				consider(t)
			}
		}
	})
	for _, e := range c.entries {
		if e.attempts < maxFollowUps && len(c.missing(e)) > 0 {
			consider(e.asked.Add(followUpSpacing))
		}
	}
	return next
}

func (c *cache) eachRecord(fn func(record)) {
	for _, e := range c.entries {
		for _, r := range []struct {
			ok bool
			r  record
		}{{e.hasPTR, e.ptr}, {e.hasSRV, e.srv}, {e.hasTXT, e.txt}} {
			if r.ok {
				fn(r.r)
			}
		}
	}
	for _, set := range c.hosts {
		for _, r := range set {
			fn(r)
		}
	}
}
