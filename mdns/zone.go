package mdns

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// mDNS wire constants (RFC 6762) and the names this package answers for.
const (
	enumName  = "_services._dns-sd._udp." + Domain // RFC 6763 section 9
	mdnsPort  = 5353
	topBit    = 1 << 15 // rrclass: cache-flush (10.2); qclass: unicast response wanted (5.4)
	legacyTTL = 10      // TTL cap in replies to legacy unicast queries (6.7)
	maxPacket = 9000    // largest mDNS message (17)
)

var ttlSeconds = uint32(TTL.Seconds())

// zone is the validated record set of one announced Service. It is
// immutable; Announcement.Update swaps in a new one.
type zone struct {
	svc      Service  // normalised copy: Host filled in
	service  string   // service FQDN in lower case, e.g. "_wsgate._tcp.local."
	instance string   // instance FQDN in miekg/dns presentation form
	host     string   // host FQDN, e.g. "gw.local."
	txt      []string // TXT strings escaped for miekg/dns
}

// newZone checks s and derives its names. An empty Host becomes the system
// host name under local.
func newZone(s Service) (*zone, error) {
	if err := ValidateInstance(s.Instance); err != nil {
		return nil, err
	}
	if err := validType(s.Type); err != nil {
		return nil, err
	}
	if s.Port < 1 || s.Port > 65535 {
		return nil, fmt.Errorf("%w: port %d", ErrInvalidService, s.Port)
	}
	host, err := hostFQDN(s.Host)
	if err != nil {
		return nil, err
	}
	s.Host = strings.TrimSuffix(host, ".")
	addrs := make([]netip.Addr, 0, len(s.Addrs))
	for _, a := range s.Addrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("%w: invalid address", ErrInvalidService)
		}
		addrs = append(addrs, a.Unmap().WithZone(""))
	}
	s.Addrs = addrs
	if err := validTXT(s.TXT); err != nil {
		return nil, err
	}
	s.TXT = slices.Clone(s.TXT)
	esc := make([]string, len(s.TXT))
	for i, t := range s.TXT {
		esc[i] = strings.ReplaceAll(t, `\`, `\\`) // miekg/dns reads '\' as an escape
	}
	if len(esc) == 0 {
		esc = []string{""} // RFC 6763 6.1: a TXT record holds at least one string
	}
	service := strings.ToLower(s.Type) + "." + Domain
	return &zone{
		svc:      s,
		service:  service,
		instance: presentation(escapeLabel(s.Instance) + "." + service),
		host:     host,
		txt:      esc,
	}, nil
}

// hostFQDN turns a configured host into a name under local.; "" means the
// system host name, reduced to one valid label.
func hostFQDN(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		name, _ := os.Hostname()
		name, _, _ = strings.Cut(name, ".")
		h = sanitizeLabel(name)
	}
	if !strings.HasSuffix(strings.ToLower(h), ".local") {
		h += ".local"
	}
	h += "."
	if _, ok := dns.IsDomainName(h); !ok || strings.ContainsAny(h, `\ `) {
		return "", fmt.Errorf("%w: host name %q", ErrInvalidService, h)
	}
	return h, nil
}

// sanitizeLabel keeps letters, digits and '-' (RFC 952 host names).
func sanitizeLabel(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	s = strings.Trim(string(b), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	if s == "" {
		s = "wsgate"
	}
	return s
}

// escapeLabel writes one label in miekg/dns presentation form, in which '.'
// separates labels and '\' escapes.
func escapeLabel(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c == 0x7f:
			fmt.Fprintf(&b, `\%03d`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// presentation returns name as miekg/dns writes it after unpacking (a
// space becomes "\ ", a byte over 0x7e "\DDD"), so that names taken from
// received messages compare equal to ours.
func presentation(name string) string {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return name
	}
	if s, _, err := dns.UnpackDomainName(buf[:n], 0); err == nil {
		return s
	}
	return name
}

// unescape undoes miekg/dns presentation escapes (\X and \DDD), as found in
// unpacked names and TXT strings.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if i+4 <= len(s) && isDigits(s[i+1:i+4]) {
				if v := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); v <= 255 {
					b = append(b, byte(v))
					i += 3
					continue
				}
			}
			i++
			c = s[i]
		}
		b = append(b, c)
	}
	return string(b)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitInstance returns the unescaped instance label of an instance FQDN
// of the service type service (lower case, e.g. "_ship._tcp.local.") and
// whether name is one (<label>.<service>).
func splitInstance(name, service string) (string, bool) {
	lower := strings.ToLower(name)
	if !strings.HasSuffix(lower, "."+service) {
		return "", false
	}
	label := name[:len(name)-len(service)-1]
	// The label must be a single one: every '.' in it escaped.
	for i := 0; i < len(label); i++ {
		switch label[i] {
		case '\\':
			i++
		case '.':
			return "", false
		}
	}
	if label == "" {
		return "", false
	}
	return unescape(label), true
}

func header(name string, t uint16, ttl uint32, unique bool) dns.RR_Header {
	class := uint16(dns.ClassINET)
	if unique {
		class |= topBit
	}
	return dns.RR_Header{Name: name, Rrtype: t, Class: class, Ttl: ttl}
}

// The records. PTRs are shared (several nodes own _ship._tcp.local.), the
// rest are unique to us and carry the cache-flush bit (RFC 6762 10.2).

func (z *zone) enumPTR(ttl uint32) dns.RR {
	return &dns.PTR{Hdr: header(enumName, dns.TypePTR, ttl, false), Ptr: z.service}
}

func (z *zone) ptr(ttl uint32) dns.RR {
	return &dns.PTR{Hdr: header(z.service, dns.TypePTR, ttl, false), Ptr: z.instance}
}

func (z *zone) srv(ttl uint32) dns.RR {
	return &dns.SRV{Hdr: header(z.instance, dns.TypeSRV, ttl, true), Port: uint16(z.svc.Port), Target: z.host}
}

func (z *zone) txtRR(ttl uint32) dns.RR {
	return &dns.TXT{Hdr: header(z.instance, dns.TypeTXT, ttl, true), Txt: z.txt}
}

// addrRRs returns A and AAAA records for addrs; v4 or v6 selects a family.
func (z *zone) addrRRs(addrs []netip.Addr, ttl uint32, v4, v6 bool) []dns.RR {
	var rrs []dns.RR
	for _, a := range addrs {
		switch {
		case a.Is4() && v4:
			rrs = append(rrs, &dns.A{Hdr: header(z.host, dns.TypeA, ttl, true), A: a.AsSlice()})
		case a.Is6() && v6:
			rrs = append(rrs, &dns.AAAA{Hdr: header(z.host, dns.TypeAAAA, ttl, true), AAAA: a.AsSlice()})
		}
	}
	return rrs
}

// addrs returns the addresses to announce on l: the configured ones (a
// loopback address only on a loopback interface), or else l's own.
func (z *zone) addrs(l link) []netip.Addr {
	if len(z.svc.Addrs) == 0 {
		return l.addrs
	}
	if l.loopback {
		return z.svc.Addrs
	}
	return slices.DeleteFunc(slices.Clone(z.svc.Addrs), netip.Addr.IsLoopback)
}

// announcement is the unsolicited response of RFC 6762 8.3: every record,
// all in the answer section. With ttl 0 it is the goodbye of 10.1, which
// leaves out the addresses: the host name may be shared with avahi and
// with the other services, whose address records must not be withdrawn.
func (z *zone) announcement(l link, ttl uint32) *dns.Msg {
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Compress: true}
	m.Answer = []dns.RR{z.ptr(ttl), z.srv(ttl), z.txtRR(ttl)}
	if ttl > 0 {
		m.Answer = append(m.Answer, z.addrRRs(z.addrs(l), ttl, true, true)...)
	}
	return m
}

// answer returns the records one question asks for (answer section) and
// those RFC 6763 section 12 says to add (additional section).
func (z *zone) answer(q dns.Question, addrs []netip.Addr) (ans, extra []dns.RR) {
	if c := q.Qclass &^ topBit; c != dns.ClassINET && c != dns.ClassANY {
		return nil, nil
	}
	all := q.Qtype == dns.TypeANY
	switch name := strings.ToLower(q.Name); {
	case name == enumName:
		if all || q.Qtype == dns.TypePTR {
			ans = append(ans, z.enumPTR(ttlSeconds))
		}
	case name == z.service:
		if all || q.Qtype == dns.TypePTR {
			ans = append(ans, z.ptr(ttlSeconds))
			extra = append(extra, z.srv(ttlSeconds), z.txtRR(ttlSeconds))
			extra = append(extra, z.addrRRs(addrs, ttlSeconds, true, true)...)
		}
	case name == strings.ToLower(z.instance):
		if all || q.Qtype == dns.TypeSRV {
			ans = append(ans, z.srv(ttlSeconds))
			extra = append(extra, z.addrRRs(addrs, ttlSeconds, true, true)...)
		}
		if all || q.Qtype == dns.TypeTXT {
			ans = append(ans, z.txtRR(ttlSeconds))
		}
	case name == strings.ToLower(z.host):
		isA, isAAAA := all || q.Qtype == dns.TypeA, all || q.Qtype == dns.TypeAAAA
		ans = append(ans, z.addrRRs(addrs, ttlSeconds, isA, isAAAA)...)
		if len(ans) > 0 {
			extra = append(extra, z.addrRRs(addrs, ttlSeconds, !isA, !isAAAA)...)
		}
	}
	return ans, extra
}

// respond builds the reply of the zones to one message received on l, or
// nil when there is nothing to say. A zone with no address on l does not
// answer there. srcPort tells a legacy unicast querier (any port but 5353,
// RFC 6762 6.7) from a full mDNS one; unicast reports whether the reply goes
// to the querier's address instead of the group.
func respond(zones []*zone, q *dns.Msg, srcPort int, l link) (reply *dns.Msg, unicast bool) {
	// RFC 6762 18: only standard queries; responses (ours included, looped
	// back) are not questions.
	if q.Response || q.Opcode != dns.OpcodeQuery || q.Rcode != dns.RcodeSuccess {
		return nil, false
	}
	legacy := srcPort != mdnsPort
	var ans, extra []dns.RR
	for _, question := range q.Question {
		if question.Qclass&topBit != 0 {
			unicast = true
		}
		for _, z := range zones {
			addrs := z.addrs(l)
			if len(addrs) == 0 {
				continue
			}
			a, e := z.answer(question, addrs)
			ans = append(ans, a...)
			extra = append(extra, e...)
		}
	}
	ans = dedupe(knownAnswerSuppress(ans, q.Answer), nil)
	if len(ans) == 0 {
		return nil, false
	}
	extra = dedupe(extra, ans)
	m := &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}, Compress: true, Answer: ans, Extra: extra}
	if legacy {
		// A plain DNS resolver: echo ID and question, no cache-flush bits,
		// short TTLs.
		m.Id = q.Id
		m.Question = append([]dns.Question(nil), q.Question...)
		for _, rr := range append(m.Answer, m.Extra...) {
			h := rr.Header()
			h.Class &^= topBit
			h.Ttl = min(h.Ttl, legacyTTL)
		}
		for i := range m.Question {
			m.Question[i].Qclass &^= topBit
		}
		return m, true
	}
	return m, unicast
}

// knownAnswerSuppress drops what the querier listed as already known with
// at least half the TTL left (RFC 6762 7.1).
func knownAnswerSuppress(ans, known []dns.RR) []dns.RR {
	out := ans[:0]
next:
	for _, rr := range ans {
		for _, k := range known {
			if sameRecord(rr, k) && k.Header().Ttl >= rr.Header().Ttl/2 {
				continue next
			}
		}
		out = append(out, rr)
	}
	return out
}

// dedupe drops records that repeat one earlier in rrs or one in seen.
func dedupe(rrs, seen []dns.RR) []dns.RR {
	var out []dns.RR
next:
	for _, rr := range rrs {
		for _, s := range append(seen, out...) {
			if sameRecord(rr, s) {
				continue next
			}
		}
		out = append(out, rr)
	}
	return out
}

// sameRecord compares name (case-insensitively), type and data, ignoring
// TTL and the cache-flush bit.
func sameRecord(a, b dns.RR) bool {
	ha, hb := a.Header(), b.Header()
	if ha.Rrtype != hb.Rrtype || ha.Class&^topBit != hb.Class&^topBit || !strings.EqualFold(ha.Name, hb.Name) {
		return false
	}
	a, b = dns.Copy(a), dns.Copy(b)
	a.Header().Class, b.Header().Class = dns.ClassINET, dns.ClassINET
	return dns.IsDuplicate(a, b)
}
