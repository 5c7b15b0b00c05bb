package mdns

import (
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestResponderAnnouncements(t *testing.T) {
	t.Parallel()
	r := NewResponder(Options{})
	bad := gateway()
	bad.Port = 0
	if _, err := r.Announce(bad); !errors.Is(err, ErrInvalidService) {
		t.Fatalf("Announce(port 0): %v, want ErrInvalidService", err)
	}
	a, err := r.Announce(gateway())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Service(); got.Instance != "wsgate-gw" || got.Host != "gw.local" || !reflect.DeepEqual(got.TXT, gatewayTXT) {
		t.Errorf("announced %+v", got)
	}
	if err := a.Update(bad); !errors.Is(err, ErrInvalidService) {
		t.Errorf("Update(port 0): %v, want ErrInvalidService", err)
	}
	if got := a.Service(); got.Port != 8080 {
		t.Errorf("a failed Update changed the service: %+v", got)
	}

	// Instance names are unique per type, whatever their case; the same
	// name may stand for another type.
	same := gateway()
	same.Instance = "WSGATE-GW"
	if _, err := r.Announce(same); !errors.Is(err, ErrInvalidService) {
		t.Errorf("a second wsgate-gw._wsgate._tcp: %v, want ErrInvalidService", err)
	}
	other := gateway()
	other.Type = "_ship._tcp"
	if _, err := r.Announce(other); err != nil {
		t.Errorf("wsgate-gw._ship._tcp beside wsgate-gw._wsgate._tcp: %v", err)
	}
	b, err := r.Announce(func() Service { s := gateway(); s.Instance = "second"; return s }())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(same); !errors.Is(err, ErrInvalidService) {
		t.Errorf("renaming onto a name in use: %v, want ErrInvalidService", err)
	}
	if got := len(r.zones()); got != 3 {
		t.Errorf("%d zones, want 3", got)
	}

	a.Withdraw()
	a.Withdraw()
	if got := len(r.zones()); got != 2 {
		t.Errorf("%d zones after Withdraw, want 2", got)
	}
	if err := a.Update(gateway()); err == nil {
		t.Error("Update after Withdraw succeeded")
	}
	if _, err := r.Announce(same); err != nil {
		t.Errorf("the name of a withdrawn service is free again: %v", err)
	}
}

// Run sends, for every change, a fresh series of announcements, and a
// goodbye for what is withdrawn or renamed; Run's end says goodbye to the
// rest.
func TestResponderReconcile(t *testing.T) {
	t.Parallel()
	r := NewResponder(Options{})
	a, err := r.Announce(gateway())
	if err != nil {
		t.Fatal(err)
	}
	live := map[*Announcement]*onWire{}
	s := &sender{log: discard, sent: map[sentKey]time.Time{}}
	t0 := time.Now()
	r.reconcile(live, s, t0)
	if w := live[a]; w == nil || w.due != t0 || w.zone != a.zone {
		t.Fatalf("a new service is not due at once: %+v", w)
	}
	live[a].step, live[a].due = len(announceAt), time.Time{} // as after its announcements

	renamed := gateway()
	renamed.Instance = "renamed"
	if err := a.Update(renamed); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Minute)
	r.reconcile(live, s, t1)
	if w := live[a]; w.due != t1 || w.step != 0 || w.zone.svc.Instance != "renamed" {
		t.Errorf("after Update: %+v, want a fresh series for the new name", w)
	}
	a.Withdraw()
	r.reconcile(live, s, t1)
	if len(live) != 0 {
		t.Errorf("live %v after Withdraw, want empty", live)
	}
}

// The responder multicasts a record on an interface at most once a second
// (RFC 6762 6), whatever the rate of queries.
func TestResponderRateLimit(t *testing.T) {
	t.Parallel()
	z := mustZone(t, gateway())
	s := &sender{sent: map[sentKey]time.Time{}}
	c := &conn{}
	eth, wlan := &net.Interface{Index: 2}, &net.Interface{Index: 3}
	reply, _ := respond([]*zone{z}, question("_wsgate._tcp.local.", dns.TypePTR), mdnsPort, link{})
	now := time.Now()
	s.sent[sentKey{false, eth.Index, reply.Answer[0].String()}] = now
	if m := s.limit(c, eth, reply, now.Add(500*time.Millisecond)); m != nil {
		t.Errorf("answered again after 0.5 s: %v", m)
	}
	if m := s.limit(c, wlan, reply, now.Add(500*time.Millisecond)); m == nil {
		t.Error("another interface was limited too")
	}
	if m := s.limit(c, eth, reply, now.Add(time.Second)); m == nil || len(m.Answer) != 1 {
		t.Errorf("not answered after 1 s: %v", m)
	}
}
