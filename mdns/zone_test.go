package mdns

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

var (
	gwV4 = netip.MustParseAddr("192.0.2.10")
	gwV6 = netip.MustParseAddr("2001:db8::10")
)

// gatewayTXT is a TXT record with the characters that need care: '=' in
// a value, a backslash, quotes, a space and non-ASCII text.
var gatewayTXT = []string{"txtvers=1", "path=/ws/", "protocols=done,ocpp1.6", "tls=no", `note=a=b \ "c" ü`}

// gateway is the service the responder tests announce.
func gateway() Service {
	return Service{
		Instance: "wsgate-gw", Type: "_wsgate._tcp", Host: "gw", Port: 8080, Addrs: []netip.Addr{gwV4, gwV6},
		TXT: gatewayTXT,
	}
}

func mustZone(t *testing.T, s Service) *zone {
	t.Helper()
	z, err := newZone(s)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// wire packs and unpacks m, as the network would.
func wire(t *testing.T, m *dns.Msg) *dns.Msg {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	out := new(dns.Msg)
	if err := out.Unpack(b); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return out
}

// ask sends q over the wire to the zones, as received on an interface
// without addresses of its own, and returns the reply as received.
func ask(t *testing.T, zs []*zone, q *dns.Msg, srcPort int) (*dns.Msg, bool) {
	t.Helper()
	reply, unicast := respond(zs, wire(t, q), srcPort, link{})
	if reply == nil {
		return nil, unicast
	}
	return wire(t, reply), unicast
}

func question(name string, qtype uint16) *dns.Msg {
	return &dns.Msg{Question: []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}}
}

func TestRespondPTR(t *testing.T) {
	t.Parallel()
	z := mustZone(t, gateway())
	reply, unicast := ask(t, []*zone{z}, question("_wsgate._tcp.local.", dns.TypePTR), mdnsPort)
	if reply == nil || unicast {
		t.Fatalf("reply %v, unicast %v; want a multicast reply", reply, unicast)
	}
	if !reply.Response || !reply.Authoritative || reply.Id != 0 || len(reply.Question) != 0 {
		t.Errorf("header: %+v, questions %v; want response, authoritative, ID 0, no question", reply.MsgHdr, reply.Question)
	}
	if len(reply.Answer) != 1 {
		t.Fatalf("answer %v, want one PTR", reply.Answer)
	}
	ptr, ok := reply.Answer[0].(*dns.PTR)
	if !ok || ptr.Hdr.Name != "_wsgate._tcp.local." || ptr.Ptr != "wsgate-gw._wsgate._tcp.local." ||
		ptr.Hdr.Ttl != 120 || ptr.Hdr.Class != dns.ClassINET {
		t.Errorf("PTR = %v; want _wsgate._tcp.local. -> wsgate-gw._wsgate._tcp.local., TTL 120, no cache-flush", reply.Answer[0])
	}

	var srv *dns.SRV
	var txt *dns.TXT
	var addrs []netip.Addr
	for _, rr := range reply.Extra {
		h := rr.Header()
		if h.Ttl != 120 || h.Class != dns.ClassINET|topBit {
			t.Errorf("%v: want TTL 120 and the cache-flush bit", rr)
		}
		switch rr := rr.(type) {
		case *dns.SRV:
			srv = rr
		case *dns.TXT:
			txt = rr
		case *dns.A:
			if rr.Hdr.Name != "gw.local." {
				t.Errorf("A owner %q, want gw.local.", rr.Hdr.Name)
			}
			addrs = append(addrs, netip.MustParseAddr(rr.A.String()))
		case *dns.AAAA:
			addrs = append(addrs, netip.MustParseAddr(rr.AAAA.String()))
		default:
			t.Errorf("unexpected additional record %v", rr)
		}
	}
	if srv == nil || srv.Hdr.Name != "wsgate-gw._wsgate._tcp.local." || srv.Port != 8080 || srv.Target != "gw.local." {
		t.Errorf("SRV = %v, want wsgate-gw._wsgate._tcp.local. port 8080 target gw.local.", srv)
	}
	if txt == nil {
		t.Fatal("no TXT record")
	}
	var got []string
	for _, s := range txt.Txt {
		got = append(got, unescape(s))
	}
	if !reflect.DeepEqual(got, gatewayTXT) {
		t.Errorf("TXT = %q, want %q", got, gatewayTXT)
	}
	if !reflect.DeepEqual(addrs, []netip.Addr{gwV4, gwV6}) {
		t.Errorf("addresses %v, want %v %v", addrs, gwV4, gwV6)
	}
}

func TestRespondQuestions(t *testing.T) {
	t.Parallel()
	z := mustZone(t, gateway())
	type rec struct {
		name  string
		rtype uint16
	}
	tests := []struct {
		name        string
		q           *dns.Msg
		ans, extra  []rec
		noReply     bool
		wantUnicast bool
	}{
		{name: "SRV of the instance", q: question("wsgate-gw._wsgate._tcp.local.", dns.TypeSRV),
			ans:   []rec{{"wsgate-gw._wsgate._tcp.local.", dns.TypeSRV}},
			extra: []rec{{"gw.local.", dns.TypeA}, {"gw.local.", dns.TypeAAAA}}},
		{name: "TXT of the instance", q: question("wsgate-gw._wsgate._tcp.local.", dns.TypeTXT),
			ans: []rec{{"wsgate-gw._wsgate._tcp.local.", dns.TypeTXT}}},
		{name: "ANY of the instance", q: question("wsgate-gw._wsgate._tcp.local.", dns.TypeANY),
			ans:   []rec{{"wsgate-gw._wsgate._tcp.local.", dns.TypeSRV}, {"wsgate-gw._wsgate._tcp.local.", dns.TypeTXT}},
			extra: []rec{{"gw.local.", dns.TypeA}, {"gw.local.", dns.TypeAAAA}}},
		{name: "A of the host", q: question("gw.local.", dns.TypeA),
			ans: []rec{{"gw.local.", dns.TypeA}}, extra: []rec{{"gw.local.", dns.TypeAAAA}}},
		{name: "AAAA of the host", q: question("gw.local.", dns.TypeAAAA),
			ans: []rec{{"gw.local.", dns.TypeAAAA}}, extra: []rec{{"gw.local.", dns.TypeA}}},
		{name: "service enumeration", q: question("_services._dns-sd._udp.local.", dns.TypePTR),
			ans: []rec{{"_services._dns-sd._udp.local.", dns.TypePTR}}},
		{name: "names are case-insensitive", q: question("_WSGATE._TCP.Local.", dns.TypePTR),
			ans:   []rec{{"_wsgate._tcp.local.", dns.TypePTR}},
			extra: []rec{{"wsgate-gw._wsgate._tcp.local.", dns.TypeSRV}, {"wsgate-gw._wsgate._tcp.local.", dns.TypeTXT}, {"gw.local.", dns.TypeA}, {"gw.local.", dns.TypeAAAA}}},
		{name: "unicast bit", q: func() *dns.Msg {
			m := question("wsgate-gw._wsgate._tcp.local.", dns.TypeTXT)
			m.Question[0].Qclass |= topBit
			return m
		}(), ans: []rec{{"wsgate-gw._wsgate._tcp.local.", dns.TypeTXT}}, wantUnicast: true},
		{name: "other service", q: question("_http._tcp.local.", dns.TypePTR), noReply: true},
		{name: "other type", q: question("wsgate-gw._wsgate._tcp.local.", dns.TypeA), noReply: true},
		{name: "other class", q: &dns.Msg{Question: []dns.Question{{Name: "_wsgate._tcp.local.", Qtype: dns.TypePTR, Qclass: dns.ClassCHAOS}}}, noReply: true},
		{name: "a response is no question", q: func() *dns.Msg {
			m := question("_wsgate._tcp.local.", dns.TypePTR)
			m.Response = true
			return m
		}(), noReply: true},
		{name: "non-zero opcode", q: func() *dns.Msg {
			m := question("_wsgate._tcp.local.", dns.TypePTR)
			m.Opcode = dns.OpcodeUpdate
			return m
		}(), noReply: true},
		{name: "known answer with full TTL is suppressed", q: func() *dns.Msg {
			m := question("_wsgate._tcp.local.", dns.TypePTR)
			m.Answer = []dns.RR{mustZone(t, gateway()).ptr(120)}
			return m
		}(), noReply: true},
		{name: "known answer below half TTL is repeated", q: func() *dns.Msg {
			m := question("wsgate-gw._wsgate._tcp.local.", dns.TypeTXT)
			m.Answer = []dns.RR{mustZone(t, gateway()).txtRR(59)}
			return m
		}(), ans: []rec{{"wsgate-gw._wsgate._tcp.local.", dns.TypeTXT}}},
	}
	names := func(rrs []dns.RR) []rec {
		var out []rec
		for _, rr := range rrs {
			out = append(out, rec{rr.Header().Name, rr.Header().Rrtype})
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reply, unicast := ask(t, []*zone{z}, tt.q, mdnsPort)
			if tt.noReply {
				if reply != nil {
					t.Fatalf("reply %v, want none", reply)
				}
				return
			}
			if reply == nil {
				t.Fatal("no reply")
			}
			if unicast != tt.wantUnicast {
				t.Errorf("unicast = %v, want %v", unicast, tt.wantUnicast)
			}
			if got := names(reply.Answer); !reflect.DeepEqual(got, tt.ans) {
				t.Errorf("answer %v, want %v", got, tt.ans)
			}
			if got := names(reply.Extra); !reflect.DeepEqual(got, tt.extra) {
				t.Errorf("additional %v, want %v", got, tt.extra)
			}
		})
	}
}

// A resolver that is not mDNS-aware asks from another port; RFC 6762 6.7
// wants the ID and question echoed, TTLs of at most 10 s and no
// cache-flush bits.
func TestRespondLegacyUnicast(t *testing.T) {
	t.Parallel()
	q := question("_wsgate._tcp.local.", dns.TypePTR)
	q.Id = 0x4242
	reply, unicast := ask(t, []*zone{mustZone(t, gateway())}, q, 53000)
	if reply == nil || !unicast {
		t.Fatalf("reply %v unicast %v, want a unicast reply", reply, unicast)
	}
	if reply.Id != 0x4242 || len(reply.Question) != 1 || reply.Question[0].Name != "_wsgate._tcp.local." {
		t.Errorf("ID %#x question %v, want 0x4242 and the question echoed", reply.Id, reply.Question)
	}
	for _, rr := range append(reply.Answer, reply.Extra...) {
		if h := rr.Header(); h.Ttl > 10 || h.Class != dns.ClassINET {
			t.Errorf("%v: want TTL <= 10 and class IN", rr)
		}
	}
}

// Without configured addresses the responder answers with those of the
// interface the query came in on.
func TestRespondInterfaceAddrs(t *testing.T) {
	t.Parallel()
	svc := gateway()
	svc.Addrs = nil
	ifAddr := netip.MustParseAddr("198.51.100.4")
	reply, _ := respond([]*zone{mustZone(t, svc)}, wire(t, question("gw.local.", dns.TypeA)), mdnsPort, link{addrs: []netip.Addr{ifAddr}})
	if reply == nil || len(reply.Answer) != 1 || !reply.Answer[0].(*dns.A).A.Equal(net.IP(ifAddr.AsSlice())) {
		t.Fatalf("reply %v, want A %v", reply, ifAddr)
	}
}

func TestAnnouncement(t *testing.T) {
	t.Parallel()
	z := mustZone(t, gateway())
	hello := wire(t, z.announcement(link{}, ttlSeconds))
	if !hello.Response || len(hello.Answer) != 5 {
		t.Fatalf("announcement %v, want PTR SRV TXT A AAAA as answers", hello)
	}
	bye := wire(t, z.announcement(link{}, 0))
	var types []uint16
	for _, rr := range bye.Answer {
		if rr.Header().Ttl != 0 {
			t.Errorf("goodbye record %v has TTL %d", rr, rr.Header().Ttl)
		}
		types = append(types, rr.Header().Rrtype)
	}
	// Addresses stay: the host name may be avahi's too.
	if want := []uint16{dns.TypePTR, dns.TypeSRV, dns.TypeTXT}; !reflect.DeepEqual(types, want) {
		t.Errorf("goodbye types %v, want %v", types, want)
	}
}

// Instance names are free text: dots, spaces, quotes and backslashes must
// survive the wire and come back as written.
func TestInstanceNameEscaping(t *testing.T) {
	t.Parallel()
	for _, name := range []string{`Wall.box "1" (garage)`, `back\slash; @x`, "Wärmepumpe Süd", "tab\there"} {
		svc := gateway()
		svc.Instance = name
		if strings.ContainsRune(name, '\t') {
			if _, err := newZone(svc); !errors.Is(err, ErrInvalidService) {
				t.Errorf("instance %q: error %v, want ErrInvalidService", name, err)
			}
			continue
		}
		z := mustZone(t, svc)
		reply, _ := ask(t, []*zone{z}, question("_wsgate._tcp.local.", dns.TypePTR), mdnsPort)
		ptr := reply.Answer[0].(*dns.PTR).Ptr
		got, ok := splitInstance(ptr, "_wsgate._tcp.local.")
		if !ok || got != name {
			t.Errorf("instance %q came back as %q (ok %v)", name, got, ok)
		}
		// A peer asks for the instance by the name it received.
		if reply, _ := ask(t, []*zone{z}, question(ptr, dns.TypeSRV), mdnsPort); reply == nil || len(reply.Answer) != 1 {
			t.Errorf("instance %q: SRV query for %q got %v", name, ptr, reply)
		}
	}
}

func TestNewZone(t *testing.T) {
	t.Parallel()
	z := mustZone(t, Service{Instance: "hub", Type: "_WSGATE._tcp", Port: 8080})
	if !strings.HasSuffix(z.host, ".local.") || z.service != "_wsgate._tcp.local." || !reflect.DeepEqual(z.txt, []string{""}) {
		t.Errorf("defaults: host %q service %q TXT %q", z.host, z.service, z.txt)
	}
	if z := mustZone(t, Service{Instance: "hub", Type: "_ship._tcp", Host: "GW.local.", Port: 1}); z.host != "GW.local." {
		t.Errorf("host %q, want GW.local.", z.host)
	}
	bad := []struct {
		name string
		edit func(*Service)
	}{
		{"port 0", func(s *Service) { s.Port = 0 }},
		{"port too big", func(s *Service) { s.Port = 65536 }},
		{"no instance", func(s *Service) { s.Instance = "" }},
		{"instance too long", func(s *Service) { s.Instance = strings.Repeat("i", 64) }},
		{"instance not UTF-8", func(s *Service) { s.Instance = "a\xff" }},
		{"host with space", func(s *Service) { s.Host = "my gw" }},
		{"invalid address", func(s *Service) { s.Addrs = []netip.Addr{{}} }},
		{"no type", func(s *Service) { s.Type = "" }},
		{"type without protocol", func(s *Service) { s.Type = "_wsgate" }},
		{"type without underscore", func(s *Service) { s.Type = "wsgate._tcp" }},
		{"type over 15 characters", func(s *Service) { s.Type = "_wsgate-gateway-xy._tcp" }},
		{"type with a dot", func(s *Service) { s.Type = "_ws.gate._tcp" }},
		{"type ending with a hyphen", func(s *Service) { s.Type = "_wsgate-._tcp" }},
		{"type over SCTP", func(s *Service) { s.Type = "_wsgate._sctp" }},
		{"TXT string over 255 bytes", func(s *Service) { s.TXT = []string{strings.Repeat("x", 256)} }},
		{"TXT record over 1300 bytes", func(s *Service) { s.TXT = slices.Repeat([]string{strings.Repeat("x", 200)}, 7) }},
	}
	for _, tt := range bad {
		s := gateway()
		tt.edit(&s)
		if _, err := newZone(s); !errors.Is(err, ErrInvalidService) {
			t.Errorf("%s: error %v, want ErrInvalidService", tt.name, err)
		}
	}
}

// One responder announces several services: each answers for its own type,
// the enumeration lists every type once, and the shared host's addresses
// come once.
func TestRespondSeveralServices(t *testing.T) {
	t.Parallel()
	ship := gateway()
	ship.Instance, ship.Type, ship.Port, ship.TXT = "wsgate-fc93", "_ship._tcp", 4711, []string{"txtvers=1"}
	second := gateway()
	second.Instance, second.Port = "wsgate-gw (wss)", 8443
	zs := []*zone{mustZone(t, gateway()), mustZone(t, ship), mustZone(t, second)}
	type rec struct {
		name  string
		rtype uint16
	}
	names := func(rrs []dns.RR) []rec {
		var out []rec
		for _, rr := range rrs {
			out = append(out, rec{rr.Header().Name, rr.Header().Rrtype})
		}
		return out
	}
	reply, _ := ask(t, zs, question("_services._dns-sd._udp.local.", dns.TypePTR), mdnsPort)
	var types []string
	for _, rr := range reply.Answer {
		types = append(types, rr.(*dns.PTR).Ptr)
	}
	if want := []string{"_wsgate._tcp.local.", "_ship._tcp.local."}; !reflect.DeepEqual(types, want) {
		t.Errorf("enumeration %v, want %v", types, want)
	}
	reply, _ = ask(t, zs, question("_ship._tcp.local.", dns.TypePTR), mdnsPort)
	if got, want := names(reply.Answer), []rec{{"_ship._tcp.local.", dns.TypePTR}}; !reflect.DeepEqual(got, want) || reply.Answer[0].(*dns.PTR).Ptr != "wsgate-fc93._ship._tcp.local." {
		t.Errorf("_ship._tcp answer %v", reply.Answer)
	}
	reply, _ = ask(t, zs, question("_wsgate._tcp.local.", dns.TypePTR), mdnsPort)
	if len(reply.Answer) != 2 {
		t.Errorf("_wsgate._tcp answer %v, want both instances", reply.Answer)
	}
	want := []rec{
		{"wsgate-gw._wsgate._tcp.local.", dns.TypeSRV}, {"wsgate-gw._wsgate._tcp.local.", dns.TypeTXT},
		{"gw.local.", dns.TypeA}, {"gw.local.", dns.TypeAAAA},
		{`wsgate-gw\ \(wss\)._wsgate._tcp.local.`, dns.TypeSRV}, {`wsgate-gw\ \(wss\)._wsgate._tcp.local.`, dns.TypeTXT},
	}
	if got := names(reply.Extra); !reflect.DeepEqual(got, want) {
		t.Errorf("additional %v, want %v", got, want)
	}
	reply, _ = ask(t, zs, question("gw.local.", dns.TypeA), mdnsPort)
	if got := names(reply.Answer); !reflect.DeepEqual(got, []rec{{"gw.local.", dns.TypeA}}) {
		t.Errorf("A of the shared host: %v, want one record", got)
	}
}

// A configured loopback address is announced on a loopback interface only:
// elsewhere the service has no address and stays silent.
func TestLoopbackAddressStaysOnLoopback(t *testing.T) {
	t.Parallel()
	svc := gateway()
	svc.Addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	z := mustZone(t, svc)
	eth := link{addrs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}}
	if reply, _ := respond([]*zone{z}, wire(t, question("_wsgate._tcp.local.", dns.TypePTR)), mdnsPort, eth); reply != nil {
		t.Errorf("answered on a LAN interface: %v", reply)
	}
	lo := link{addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, loopback: true}
	reply, _ := respond([]*zone{z}, wire(t, question("gw.local.", dns.TypeA)), mdnsPort, lo)
	if reply == nil || len(reply.Answer) != 1 || reply.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Errorf("on loopback: %v, want A 127.0.0.1", reply)
	}
}
