package discovery

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestAnnouncerUpdate(t *testing.T) {
	t.Parallel()
	bad := gateway()
	bad.SKI = "short"
	if _, err := NewAnnouncer(bad, Options{}); !errors.Is(err, ErrInvalidService) {
		t.Fatalf("NewAnnouncer(bad SKI): %v, want ErrInvalidService", err)
	}
	a, err := NewAnnouncer(gateway(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Update(bad); !errors.Is(err, ErrInvalidService) {
		t.Errorf("Update(bad SKI): %v, want ErrInvalidService", err)
	}
	if got := a.Service(); got.SKI != testSKI || !got.Register {
		t.Errorf("a failed Update changed the service: %+v", got)
	}
	a.SetRegister(false)
	if got := a.Service(); got.Register || got.Instance != "wsgate-gw" || got.Host != "gw.local" {
		t.Errorf("after SetRegister(false): %+v", got)
	}
}

// The responder multicasts a record on an interface at most once a second
// (RFC 6762 6), whatever the rate of queries.
func TestResponderRateLimit(t *testing.T) {
	t.Parallel()
	z := mustZone(t, gateway())
	r := &responder{sent: map[sentKey]time.Time{}}
	c := &conn{}
	eth, wlan := &net.Interface{Index: 2}, &net.Interface{Index: 3}
	reply, _ := z.respond(question("_ship._tcp.local.", dns.TypePTR), mdnsPort, nil)
	now := time.Now()
	r.sent[sentKey{false, eth.Index, reply.Answer[0].String()}] = now
	if m := r.limit(c, eth, reply, now.Add(500*time.Millisecond)); m != nil {
		t.Errorf("answered again after 0.5 s: %v", m)
	}
	if m := r.limit(c, wlan, reply, now.Add(500*time.Millisecond)); m == nil {
		t.Error("another interface was limited too")
	}
	if m := r.limit(c, eth, reply, now.Add(time.Second)); m == nil || len(m.Answer) != 1 {
		t.Errorf("not answered after 1 s: %v", m)
	}
}
