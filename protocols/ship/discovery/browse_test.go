package discovery

import (
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"

	"github.com/wsgate/wsgate/mdns"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// device is a remote SHIP node as its announcements describe it.
func device() Service {
	return Service{
		Instance: "Demo Wallbox", Host: "wallbox.local", Port: 4712,
		Addrs:  []netip.Addr{netip.MustParseAddr("192.0.2.20")},
		SHIPID: "Demo-Wallbox-1", Path: "/ship/", SKI: peerSKI,
		Brand: "Demo", Model: "Box", Type: "ChargingStation", Categories: []int{3},
	}
}

// found is the mdns event of a browsed SHIP service.
func found(t *testing.T, kind mdns.EventKind, s Service) mdns.Event {
	t.Helper()
	m, err := s.MDNS()
	if err != nil {
		t.Fatal(err)
	}
	return mdns.Event{Kind: kind, Service: m}
}

// TestFilter: what the mdns browser reports of _ship._tcp instances
// becomes SHIP events only for valid SHIP TXT records that are not our own.
func TestFilter(t *testing.T) {
	t.Parallel()
	registered := device()
	registered.Register = true
	invalid := found(t, mdns.Updated, registered)
	invalid.Service.TXT = []string{"txtvers=1"}
	txtvers2 := found(t, mdns.Added, device())
	txtvers2.Service.TXT[0] = "txtvers=2"
	own := device()
	own.Instance, own.SKI = "Ourselves", testSKI

	type want struct {
		kind     EventKind
		register bool
	}
	steps := []struct {
		name string
		in   mdns.Event
		want *want
	}{
		{"a valid service appears", found(t, mdns.Added, device()), &want{Added, false}},
		{"an update that changes nothing SHIP sees", found(t, mdns.Updated, device()), nil},
		{"register changes", found(t, mdns.Updated, registered), &want{Updated, true}},
		{"its TXT turns invalid", invalid, &want{Removed, true}},
		{"still invalid", invalid, nil},
		{"valid again", found(t, mdns.Updated, registered), &want{Added, true}},
		{"goodbye", found(t, mdns.Removed, registered), &want{Removed, true}},
		{"goodbye again", found(t, mdns.Removed, registered), nil},
		{"txtvers 2 is ignored", txtvers2, nil},
		{"our own SKI is ignored", found(t, mdns.Added, own), nil},
	}
	f := &filter{own: testSKI, log: discard, reported: map[string]Service{}, bad: map[string]string{}}
	for _, s := range steps {
		got, ok := f.handle(s.in)
		switch {
		case s.want == nil && ok:
			t.Fatalf("%s: event %v, want none", s.name, got)
		case s.want == nil:
		case !ok:
			t.Fatalf("%s: no event, want %v", s.name, s.want.kind)
		case got.Kind != s.want.kind || got.Service.Register != s.want.register:
			t.Fatalf("%s: event %v register=%v, want %v register=%v", s.name, got.Kind, got.Service.Register, s.want.kind, s.want.register)
		}
		if ok && got.Kind == Added {
			want := registered
			if !s.want.register {
				want = device()
			}
			if !reflect.DeepEqual(got.Service, want) {
				t.Errorf("%s: service\n got %+v\nwant %+v", s.name, got.Service, want)
			}
		}
	}
	if len(f.reported) != 0 || len(f.bad) != 1 {
		t.Errorf("filter keeps %d reported, %d bad; want 0 and 1 (the txtvers 2 one)", len(f.reported), len(f.bad))
	}
}
