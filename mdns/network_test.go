package mdns

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// loopback returns the options that keep mDNS on the machine: the
// loopback interface, IPv4 (Linux delivers IPv4 multicast on lo although
// the interface lacks the MULTICAST flag). It skips the test, saying why,
// where a packet sent to the mDNS group on loopback does not come back.
func loopback(t *testing.T) Options {
	t.Helper()
	opts := Options{Interfaces: []string{loopbackName(t)}, DisableIPv6: true, Logger: discard}
	conns, err := openConns(opts)
	if err != nil {
		t.Skipf("mDNS multicast unavailable on loopback: %v", err)
	}
	c := conns[0]
	defer c.close()
	probe := make([]byte, 12) // a DNS header with a random ID and no question
	_, _ = rand.Read(probe[:2])
	if err := c.sendGroup(probe, &c.ifis[0]); err != nil {
		t.Skipf("cannot send to 224.0.0.251 on %s: %v", c.ifis[0].Name, err)
	}
	_ = c.udp.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, maxPacket)
	for {
		n, _, _, err := c.read(buf)
		if err != nil {
			t.Skipf("multicast on %s delivers nothing here: %v", c.ifis[0].Name, err)
		}
		if bytes.Equal(buf[:n], probe) {
			return opts
		}
	}
}

func loopbackName(t *testing.T) string {
	t.Helper()
	ifis, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return ifi.Name
		}
	}
	t.Skip("no loopback interface is up")
	return ""
}

// unique is an instance name no other test, here or in another process on
// the machine, announces.
func unique(prefix string) string {
	return prefix + " " + rand.Text()[:8]
}

// browse runs Browse for typ until the test ends and hands its events to
// the returned channel.
func browse(t *testing.T, opts Options, typ string) <-chan Event {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- Browse(ctx, BrowseOptions{Options: opts, Type: typ, QueryInterval: time.Second}, func(ev Event) {
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Browse: %v", err)
		}
	})
	return events
}

// waitFor reads events until one for instance matches, failing after 15 s.
func waitFor(t *testing.T, events <-chan Event, instance, what string, ok func(Event) bool) Event {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Service.Instance == instance && ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event for %q within 15 s", what, instance)
		}
	}
}

func kind(k EventKind) func(Event) bool { return func(ev Event) bool { return ev.Kind == k } }

// TestRoundTrip announces two services of two types from one responder
// over real multicast on loopback and browses them back: the records, a
// change of TXT, a new name, a withdrawal and the goodbye at the end.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	opts := loopback(t)
	wsgate, ship := browse(t, opts, "_wsgate._tcp"), browse(t, opts, "_ship._tcp")

	r := NewResponder(opts)
	svc := Service{Instance: unique("wsgate test"), Type: "_wsgate._tcp", Port: 8080, TXT: []string{"txtvers=1", "path=/", "protocols=done", "tls=no"}}
	a, err := r.Announce(svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()

	got := waitFor(t, wsgate, svc.Instance, "Added", kind(Added)).Service
	if got.Type != "_wsgate._tcp" || got.Port != 8080 || got.Host != a.Service().Host || !slices.Equal(got.TXT, svc.TXT) {
		t.Errorf("browsed %+v\nannounced %+v", got, a.Service())
	}
	if len(got.Addrs) == 0 || got.Addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("addresses %v, want 127.0.0.1 first (loopback's own)", got.Addrs)
	}
	if err := r.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}

	// A second service on the running responder, of another type.
	shipSvc := Service{Instance: unique("ship test"), Type: "_ship._tcp", Port: 4711, TXT: []string{"txtvers=1"}}
	b, err := r.Announce(shipSvc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ship, shipSvc.Instance, "Added", kind(Added))

	changed := svc
	changed.TXT = []string{"txtvers=1", "path=/", "protocols=done", "tls=yes"}
	if err := a.Update(changed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wsgate, svc.Instance, "Updated tls=yes", func(ev Event) bool {
		return ev.Kind == Updated && TXTMap(ev.Service.TXT)["tls"] == "yes"
	})

	// A new instance name: goodbye for the old one, then the new one.
	renamed := changed
	renamed.Instance += " renamed"
	if err := a.Update(renamed); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wsgate, svc.Instance, "Removed (old name)", kind(Removed))
	waitFor(t, wsgate, renamed.Instance, "Added (new name)", kind(Added))

	b.Withdraw()
	waitFor(t, ship, shipSvc.Instance, "Removed (withdrawn)", kind(Removed))

	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	waitFor(t, wsgate, renamed.Instance, "Removed (goodbye)", kind(Removed))
}

// TestLegacyUnicastQuery asks the running responder like a plain DNS
// resolver would (from an ephemeral port) and expects the unicast reply of
// RFC 6762 6.7.
func TestLegacyUnicastQuery(t *testing.T) {
	t.Parallel()
	opts := loopback(t)
	svc := gateway()
	svc.Instance, svc.Addrs = unique("wsgate legacy"), nil
	r := NewResponder(opts)
	if _, err := r.Announce(svc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	lo, err := net.InterfaceByName(opts.Interfaces[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := ipv4.NewPacketConn(udp).SetMulticastInterface(lo); err != nil {
		t.Fatal(err)
	}
	instance := presentation(escapeLabel(svc.Instance) + "._wsgate._tcp.local.")
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
		if !ok || txt.Hdr.Ttl > legacyTTL || !slices.Contains(txt.Txt, "protocols=done,ocpp1.6") {
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
	opts := Options{Interfaces: []string{"wsgate-no-such-if0"}, Logger: discard}
	r := NewResponder(opts)
	if _, err := r.Announce(gateway()); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); !errors.Is(err, ErrNoMulticast) {
		t.Errorf("Run: %v, want ErrNoMulticast", err)
	}
	err := Browse(t.Context(), BrowseOptions{Options: opts, Type: "_wsgate._tcp"}, func(Event) {})
	if !errors.Is(err, ErrNoMulticast) {
		t.Errorf("Browse: %v, want ErrNoMulticast", err)
	}
}

func TestBrowseOptions(t *testing.T) {
	t.Parallel()
	if err := Browse(t.Context(), BrowseOptions{Type: "wsgate"}, func(Event) {}); !errors.Is(err, ErrInvalidService) {
		t.Errorf("Browse of an invalid type: %v, want ErrInvalidService", err)
	}
	if err := Browse(t.Context(), BrowseOptions{Type: "_wsgate._tcp"}, nil); err == nil {
		t.Error("Browse accepted a nil handler")
	}
}
