package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/wsgate/wsgate/mdns"
)

// loopback returns options that keep mDNS on the machine: IPv4 on the
// loopback interface, where Linux delivers multicast. The mdns package's
// own tests check the round trip there in detail; this one checks what
// SHIP adds.
func loopback(t *testing.T) mdns.Options {
	t.Helper()
	ifis, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return mdns.Options{Interfaces: []string{ifi.Name}, DisableIPv6: true, Logger: discard}
		}
	}
	t.Skip("no loopback interface is up")
	return mdns.Options{}
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

// TestRoundTrip announces a SHIP service through an mdns.Responder on
// loopback and browses it back: the TXT record, a change of register and
// the goodbye; our own SKI is not reported.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	opts := loopback(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	events := make(chan Event, 16)
	browsed := make(chan error, 1)
	go func() {
		browsed <- Browse(ctx, BrowseOptions{OwnSKI: testSKI, Options: opts, QueryInterval: time.Second}, func(ev Event) {
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		})
	}()

	ski := randomSKI()
	svc := Service{
		Port: 4711, SHIPID: "wsgate-test-" + ski[:8], Path: "/ship/", SKI: ski,
		Brand: "wsgate", Model: "discovery-test", Type: "EnergyManagementSystem", Categories: []int{2},
	}
	own := svc
	own.SHIPID, own.SKI = "wsgate-own-"+ski[:8], testSKI
	r := mdns.NewResponder(opts)
	announce := func(s Service) *mdns.Announcement {
		m, err := s.MDNS()
		if err != nil {
			t.Fatal(err)
		}
		a, err := r.Announce(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := announce(svc)
	announce(own)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(rctx) }()

	got := waitFor(t, events, ski, "Added", func(ev Event) bool { return ev.Kind == Added }).Service
	if got.Instance != svc.SHIPID || got.SHIPID != svc.SHIPID || got.Path != "/ship/" || got.Register ||
		got.Brand != "wsgate" || got.Model != "discovery-test" || got.Type != "EnergyManagementSystem" ||
		!slices.Equal(got.Categories, []int{2}) || got.Port != 4711 || got.Host != a.Service().Host || len(got.Addrs) == 0 {
		t.Errorf("browsed %+v\nannounced %+v", got, svc)
	}
	if u := got.URLs(); len(u) < 2 || u[1] != "wss://127.0.0.1:4711/ship/" {
		t.Errorf("URLs %q, want the host name, then 127.0.0.1", u)
	}

	svc.Register = true
	m, err := svc.MDNS()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, events, ski, "Updated register=true", func(ev Event) bool { return ev.Kind == Updated && ev.Service.Register })

	rcancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	waitFor(t, events, ski, "Removed (goodbye)", func(ev Event) bool { return ev.Kind == Removed })
	cancel()
	if err := <-browsed; err != nil {
		t.Errorf("Browse: %v", err)
	}
	close(events)
	for ev := range events {
		if ev.Service.SKI == testSKI {
			t.Errorf("our own SKI was reported: %v", ev)
		}
	}
}

func randomSKI() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func TestBrowseOptions(t *testing.T) {
	t.Parallel()
	if err := Browse(t.Context(), BrowseOptions{OwnSKI: "nope"}, func(Event) {}); err == nil {
		t.Error("Browse accepted an invalid own SKI")
	}
	if err := Browse(t.Context(), BrowseOptions{}, nil); err == nil {
		t.Error("Browse accepted a nil handler")
	}
	err := Browse(t.Context(), BrowseOptions{Options: mdns.Options{Interfaces: []string{"wsgate-no-such-if0"}}}, func(Event) {})
	if !errors.Is(err, ErrNoMulticast) {
		t.Errorf("Browse without an interface: %v, want ErrNoMulticast", err)
	}
}
