package mdns

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	devV4   = netip.MustParseAddr("192.0.2.20")
	devV4b  = netip.MustParseAddr("192.0.2.21")
	devV6   = netip.MustParseAddr("2001:db8::20")
	devLL   = netip.MustParseAddr("fe80::20")
	t0      = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	discard = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// device is a remote node as its announcements describe it.
func device() Service {
	return Service{
		Instance: "Demo Wallbox", Type: "_ship._tcp", Host: "wallbox", Port: 4712,
		TXT: []string{"txtvers=1", "id=Demo-Wallbox-1", "path=/ship/", "register=false"},
	}
}

const shipService = "_ship._tcp.local."

// packet returns a response holding rrs, as received from the wire.
func packet(t *testing.T, rrs ...dns.RR) *dns.Msg {
	t.Helper()
	return wire(t, &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Answer: rrs})
}

// records returns the device's PTR, SRV and TXT records.
func records(t *testing.T, s Service, ttl uint32) []dns.RR {
	z := mustZone(t, s)
	return []dns.RR{z.ptr(ttl), z.srv(ttl), z.txtRR(ttl)}
}

func addrRRs(t *testing.T, s Service, ttl uint32, addrs ...netip.Addr) []dns.RR {
	return mustZone(t, s).addrRRs(addrs, ttl, true, true)
}

// step feeds packets to the cache at a time and returns the events.
func step(c *cache, now time.Time, msgs ...*dns.Msg) []Event {
	for _, m := range msgs {
		c.add(m, mdnsPort, now)
	}
	c.expire(now)
	return c.reconcile()
}

func kinds(evs []Event) []EventKind {
	var out []EventKind
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func TestCacheAddedOnce(t *testing.T) {
	t.Parallel()
	c := newCache(shipService)
	all := packet(t, append(records(t, device(), 120), addrRRs(t, device(), 120, devV4, devV6)...)...)
	evs := step(c, t0, all)
	if len(evs) != 1 || evs[0].Kind != Added {
		t.Fatalf("events %v, want one Added", evs)
	}
	want := device()
	want.Host = "wallbox.local"
	want.Addrs = []netip.Addr{devV4, devV6}
	if got := evs[0].Service; !reflect.DeepEqual(got, want) {
		t.Errorf("service\n got %+v\nwant %+v", got, want)
	}
	// The same answers again (a re-announcement, a reply to another
	// browser's query) change nothing and report nothing.
	for i := 1; i <= 3; i++ {
		if evs := step(c, t0.Add(time.Duration(i)*time.Second), all); len(evs) != 0 {
			t.Fatalf("repeat %d: events %v, want none", i, evs)
		}
	}
}

// avahi answers with one packet per address; the service is reported once
// it has a usable address and updated as more arrive, IPv4 first,
// link-local dropped.
func TestCacheMergesPerAddressPackets(t *testing.T) {
	t.Parallel()
	c := newCache(shipService)
	if evs := step(c, t0, packet(t, records(t, device(), 120)...)); len(evs) != 0 {
		t.Fatalf("without address: events %v", evs)
	}
	qs := c.followUps(t0)
	if len(qs) != 2 || qs[0].Name != "wallbox.local." || qs[0].Qtype != dns.TypeA || qs[1].Qtype != dns.TypeAAAA {
		t.Fatalf("follow-up questions %v, want A and AAAA of wallbox.local.", qs)
	}
	if evs := step(c, t0.Add(100*time.Millisecond), packet(t, addrRRs(t, device(), 120, devLL)...)); len(evs) != 0 {
		t.Fatalf("link-local only: events %v, want none", evs)
	}
	evs := step(c, t0.Add(200*time.Millisecond), packet(t, addrRRs(t, device(), 120, devV6)...))
	if len(evs) != 1 || evs[0].Kind != Added || !reflect.DeepEqual(evs[0].Service.Addrs, []netip.Addr{devV6}) {
		t.Fatalf("events %v, want Added with %v", evs, devV6)
	}
	evs = step(c, t0.Add(300*time.Millisecond), packet(t, addrRRs(t, device(), 120, devV4)...))
	if len(evs) != 1 || evs[0].Kind != Updated || !reflect.DeepEqual(evs[0].Service.Addrs, []netip.Addr{devV4, devV6}) {
		t.Fatalf("events %v, want Updated with IPv4 first", evs)
	}
}

func TestCacheIgnores(t *testing.T) {
	t.Parallel()
	query := packet(t, append(records(t, device(), 120), addrRRs(t, device(), 120, devV4)...)...)
	query.Response = false
	other := device()
	other.Type = "_wsgate._tcp"
	tests := []struct {
		name string
		msg  *dns.Msg
		port int
	}{
		{"not from port 5353", packet(t, append(records(t, device(), 120), addrRRs(t, device(), 120, devV4)...)...), 40000},
		{"a query's known answers", query, mdnsPort},
		{"link-local address only", packet(t, append(records(t, device(), 120), addrRRs(t, device(), 120, devLL)...)...), mdnsPort},
		{"other service type", packet(t, append(records(t, other, 120), addrRRs(t, other, 120, devV4)...)...), mdnsPort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(shipService)
			c.add(tt.msg, tt.port, t0)
			if evs := c.reconcile(); len(evs) != 0 {
				t.Errorf("events %v, want none", evs)
			}
		})
	}
}

func TestCacheLifecycle(t *testing.T) {
	t.Parallel()
	c := newCache(shipService)
	addrs := addrRRs(t, device(), 120, devV4)
	step(c, t0, packet(t, append(records(t, device(), 120), addrs...)...))

	// The TXT record changes: a new one with cache-flush.
	reg := device()
	reg.TXT = []string{"txtvers=1", "id=Demo-Wallbox-1", "path=/ship/", "register=true"}
	evs := step(c, t0.Add(time.Second), packet(t, mustZone(t, reg).txtRR(120)))
	if len(evs) != 1 || evs[0].Kind != Updated || !reflect.DeepEqual(evs[0].Service.TXT, reg.TXT) {
		t.Fatalf("events %v, want Updated with register=true", evs)
	}
	// Cache-flush on an address replaces the older ones.
	evs = step(c, t0.Add(5*time.Second), packet(t, addrRRs(t, device(), 120, devV4b)...))
	if len(evs) != 1 || evs[0].Kind != Updated || !reflect.DeepEqual(evs[0].Service.Addrs, []netip.Addr{devV4b}) {
		t.Fatalf("events %v, want Updated with only %v", evs, devV4b)
	}
	// Goodbye.
	evs = step(c, t0.Add(6*time.Second), packet(t, records(t, reg, 0)...))
	if len(evs) != 1 || evs[0].Kind != Removed || evs[0].Service.Instance != "Demo Wallbox" {
		t.Fatalf("events %v, want Removed", evs)
	}
	if len(c.entries) != 0 || len(c.hosts) != 0 {
		t.Errorf("cache keeps %d entries, %d hosts after goodbye", len(c.entries), len(c.hosts))
	}
}

func TestCacheExpiryAndRefresh(t *testing.T) {
	t.Parallel()
	c := newCache(shipService)
	step(c, t0, packet(t, append(records(t, device(), 120), addrRRs(t, device(), 120, devV4)...)...))
	if c.refreshDue(t0.Add(95*time.Second), t0) {
		t.Error("refresh due before 80 % of the TTL")
	}
	if !c.refreshDue(t0.Add(96*time.Second), t0) {
		t.Error("refresh not due at 80 % of the TTL")
	}
	if c.refreshDue(t0.Add(100*time.Second), t0.Add(96*time.Second)) {
		t.Error("refresh due again before 90 %")
	}
	if got := c.nextDeadline(t0.Add(96*time.Second), t0.Add(96*time.Second)); !got.Equal(t0.Add(108 * time.Second)) {
		t.Errorf("next deadline %v, want the 90 %% point %v", got, t0.Add(108*time.Second))
	}
	if evs := step(c, t0.Add(119*time.Second)); len(evs) != 0 {
		t.Fatalf("before expiry: events %v", evs)
	}
	if evs := step(c, t0.Add(120*time.Second)); !reflect.DeepEqual(kinds(evs), []EventKind{Removed}) {
		t.Fatalf("at expiry: events %v, want Removed", evs)
	}
	if len(c.entries) != 0 || len(c.hosts) != 0 {
		t.Errorf("cache keeps %d entries, %d hosts after expiry", len(c.entries), len(c.hosts))
	}
}

// A PTR alone makes the browser ask for SRV and TXT: at most three times a
// second apart until the next browse query.
func TestCacheFollowUps(t *testing.T) {
	t.Parallel()
	c := newCache(shipService)
	step(c, t0, packet(t, records(t, device(), 120)[0]))
	name := `Demo\ Wallbox._ship._tcp.local.`
	want := []dns.Question{{Name: name, Qtype: dns.TypeSRV, Qclass: dns.ClassINET}, {Name: name, Qtype: dns.TypeTXT, Qclass: dns.ClassINET}}
	for i := range maxFollowUps {
		now := t0.Add(time.Duration(i) * time.Second)
		if got := c.followUps(now); !reflect.DeepEqual(got, want) {
			t.Fatalf("attempt %d: %v, want %v", i, got, want)
		}
		if got := c.followUps(now.Add(500 * time.Millisecond)); len(got) != 0 {
			t.Fatalf("attempt %d repeated within a second: %v", i, got)
		}
	}
	if got := c.followUps(t0.Add(10 * time.Second)); len(got) != 0 {
		t.Fatalf("after %d attempts: %v", maxFollowUps, got)
	}
	c.resetFollowUps()
	if got := c.followUps(t0.Add(11 * time.Second)); len(got) != 2 {
		t.Fatalf("after a browse query: %v, want SRV and TXT again", got)
	}
}

func TestCacheBounded(t *testing.T) {
	t.Parallel()
	c := newCache(shipService)
	var rrs []dns.RR
	for i := range maxEntries + 50 {
		rrs = append(rrs, &dns.PTR{Hdr: header(shipService, dns.TypePTR, 120, false), Ptr: fmt.Sprintf("n%d.%s", i, shipService)})
	}
	c.add(&dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: rrs}, mdnsPort, t0)
	if len(c.entries) != maxEntries {
		t.Errorf("%d entries, want the cap %d", len(c.entries), maxEntries)
	}
}
