package discovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// multicastOrSkip skips the test unless WSGATE_TEST_MDNS=1 asks for it
// and a packet sent to the IPv4 mDNS group comes back through multicast
// loopback, which the round trip needs. These tests announce on the real
// network (loopback has no multicast), and test traffic stays on loopback
// unless someone asks otherwise: run them with
//
//	WSGATE_TEST_MDNS=1 go test -run 'RoundTrip|LegacyUnicast' ./protocols/ship/discovery/
//
// The DNS-level tests in zone_test.go and browse_test.go cover the
// responder and the browser without sockets.
func multicastOrSkip(t *testing.T) *conn {
	t.Helper()
	if os.Getenv("WSGATE_TEST_MDNS") != "1" {
		t.Skip("announces on the LAN: set WSGATE_TEST_MDNS=1 to run")
	}
	skip := t.Skipf
	conns, err := openConns(Options{DisableIPv6: true})
	if err != nil {
		skip("mDNS multicast unavailable here: %v", err)
	}
	c := conns[0]
	defer c.close()
	probe := make([]byte, 12) // a DNS header with a random ID and no question
	_, _ = rand.Read(probe[:2])
	if err := c.sendGroup(probe, &c.ifis[0]); err != nil {
		skip("cannot send to 224.0.0.251 on %s: %v", c.ifis[0].Name, err)
	}
	_ = c.udp.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, maxPacket)
	for {
		n, _, _, err := c.read(buf)
		if err != nil {
			skip("multicast loopback on %s delivers nothing: %v", c.ifis[0].Name, err)
		}
		if bytes.Equal(buf[:n], probe) {
			return &conn{ifis: c.ifis} // interfaces only; the socket is closed
		}
	}
}

func randomSKI(t *testing.T) string {
	t.Helper()
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// testService is a unique service per test, so that parallel tests and
// whatever else is on the link do not confuse each other.
func testService(t *testing.T) Service {
	ski := randomSKI(t)
	return Service{
		Instance: "wsgate test " + ski[:8], Port: 4711,
		SHIPID: "wsgate-test-" + ski[:8], Path: "/ship/", SKI: ski,
		Brand: "wsgate", Model: "discovery-test", Type: "EnergyManagementSystem", Categories: []int{2},
	}
}

// waitFor reads events until one for ski matches, failing after 15 s.
func waitFor(t *testing.T, events <-chan Event, ski string, what string, ok func(Event) bool) Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Service.SKI == ski && ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event for %s within 15 s", what, ski)
		}
	}
}

// TestRoundTrip announces over real multicast and browses it back: the
// TXT record, a change of register and the goodbye.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	multicastOrSkip(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	events := make(chan Event, 16)
	browsed := make(chan error, 1)
	go func() {
		browsed <- Browse(ctx, BrowseOptions{OwnSKI: testSKI, Options: Options{Logger: discard}}, func(ev Event) {
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		})
	}()

	svc := testService(t)
	a, err := NewAnnouncer(svc, Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	ran := make(chan error, 1)
	go func() { ran <- a.Run(actx) }()

	ev := waitFor(t, events, svc.SKI, "Added", func(ev Event) bool { return ev.Kind == Added })
	got := ev.Service
	if got.Instance != svc.Instance || got.SHIPID != svc.SHIPID || got.Path != "/ship/" || got.Register ||
		got.Brand != "wsgate" || got.Model != "discovery-test" || got.Type != "EnergyManagementSystem" ||
		!slices.Equal(got.Categories, []int{2}) || got.Port != 4711 || got.Host != a.Service().Host {
		t.Errorf("browsed %+v\nannounced %+v", got, a.Service())
	}
	if len(got.Addrs) == 0 || !slices.IsSortedFunc(got.Addrs, netip.Addr.Compare) {
		t.Errorf("addresses %v: want some, IPv4 first", got.Addrs)
	}
	for _, addr := range got.Addrs {
		if addr.Is6() && addr.IsLinkLocalUnicast() {
			t.Errorf("link-local address %v reported", addr)
		}
	}
	t.Logf("browsed %s at %v", got.URL(), got.URLs()[1:])

	if err := a.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}

	a.SetRegister(true)
	waitFor(t, events, svc.SKI, "Updated register=true", func(ev Event) bool { return ev.Kind == Updated && ev.Service.Register })

	// A new instance name: goodbye for the old one, then the new one.
	renamed := a.Service()
	renamed.Instance += " renamed"
	if err := a.Update(renamed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, events, svc.SKI, "Removed (old name)", func(ev Event) bool { return ev.Kind == Removed && ev.Service.Instance == svc.Instance })
	waitFor(t, events, svc.SKI, "Added (new name)", func(ev Event) bool { return ev.Kind == Added && ev.Service.Instance == renamed.Instance })

	acancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	waitFor(t, events, svc.SKI, "Removed (goodbye)", func(ev Event) bool { return ev.Kind == Removed && ev.Service.Instance == renamed.Instance })

	cancel()
	if err := <-browsed; err != nil {
		t.Errorf("Browse: %v", err)
	}
}

// TestLegacyUnicastQuery asks the running responder like a plain DNS
// resolver would (from an ephemeral port) and expects the unicast reply of
// RFC 6762 6.7.
func TestLegacyUnicastQuery(t *testing.T) {
	t.Parallel()
	ifis := multicastOrSkip(t).ifis
	svc := testService(t)
	a, err := NewAnnouncer(svc, Options{Logger: discard, DisableIPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	udp, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	if err := ipv4.NewPacketConn(udp).SetMulticastInterface(&ifis[0]); err != nil {
		t.Fatal(err)
	}
	instance := presentation(escapeLabel(svc.Instance) + "." + serviceName)
	q := question(instance, dns.TypeTXT)
	q.Id = 0x5a5a
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, maxPacket)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		// Run opens its socket asynchronously: ask again until it answers.
		if _, err := udp.WriteToUDP(b, group4); err != nil {
			t.Fatal(err)
		}
		_ = udp.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, src, err := udp.ReadFromUDP(buf)
		if err != nil {
			continue
		}
		var reply dns.Msg
		if reply.Unpack(buf[:n]) != nil || reply.Id != 0x5a5a {
			continue
		}
		if src.Port != mdnsPort || len(reply.Question) != 1 || len(reply.Answer) != 1 {
			t.Fatalf("reply from %v: %v", src, &reply)
		}
		txt, ok := reply.Answer[0].(*dns.TXT)
		if !ok || txt.Hdr.Ttl > legacyTTL || !slices.Contains(txt.Txt, "ski="+svc.SKI) {
			t.Fatalf("answer %v, want our TXT with TTL <= 10", reply.Answer[0])
		}
		return
	}
	t.Fatal("no unicast reply within 10 s")
}

// Without a usable interface Run and Browse return ErrNoMulticast at once
// and leave nothing running.
func TestNoMulticast(t *testing.T) {
	t.Parallel()
	names := [][]string{{"wsgate-no-such-if0"}}
	if lo, err := net.InterfaceByName("lo"); err == nil && lo.Flags&net.FlagMulticast == 0 {
		names = append(names, []string{"lo"}) // Linux: loopback has no MULTICAST flag
	}
	for _, n := range names {
		opts := Options{Interfaces: n, Logger: discard}
		a, err := NewAnnouncer(testService(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(t.Context()); !errors.Is(err, ErrNoMulticast) {
			t.Errorf("Run on %v: %v, want ErrNoMulticast", n, err)
		}
		err = Browse(t.Context(), BrowseOptions{Options: opts}, func(Event) {})
		if !errors.Is(err, ErrNoMulticast) {
			t.Errorf("Browse on %v: %v, want ErrNoMulticast", n, err)
		}
	}
}

func TestBrowseOptions(t *testing.T) {
	t.Parallel()
	if err := Browse(t.Context(), BrowseOptions{OwnSKI: "nope"}, func(Event) {}); err == nil {
		t.Error("Browse accepted an invalid own SKI")
	}
	if err := Browse(t.Context(), BrowseOptions{}, nil); err == nil {
		t.Error("Browse accepted a nil handler")
	}
}
