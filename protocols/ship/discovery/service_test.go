package discovery

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wsgate/wsgate/protocols/ship/identity"
)

const (
	testSKI = "fc935547724712fe99ba3be361f90fcb035f6a41"
	peerSKI = "0123456789abcdef0123456789abcdef01234567"
)

// valid is a TXT record every rejection case below breaks in one place.
func valid(drop string, extra ...string) []string {
	txt := []string{"txtvers=1", "id=Demo-Wallbox-1", "path=/ship/", "ski=" + testSKI, "register=false"}
	var out []string
	for _, kv := range txt {
		if k, _, _ := strings.Cut(kv, "="); k != drop {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

func TestParseTXTRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		txt  []string
		is   error // besides ErrInvalidTXT
	}{
		{"no txtvers", valid("txtvers"), nil},
		{"no id", valid("id"), nil},
		{"no path", valid("path"), nil},
		{"no ski", valid("ski"), nil},
		{"no register", valid("register"), nil},
		{"empty record", nil, nil},
		{"txtvers 2", valid("txtvers", "txtvers=2"), nil},
		{"txtvers 01", valid("txtvers", "txtvers=01"), nil},
		{"txtvers empty", valid("txtvers", "txtvers="), nil},
		{"txtvers without value", valid("txtvers", "txtvers"), nil},
		{"register TRUE", valid("register", "register=TRUE"), nil},
		{"register yes", valid("register", "register=yes"), nil},
		{"register 1", valid("register", "register=1"), nil},
		{"register empty", valid("register", "register="), nil},
		{"register without value", valid("register", "register"), nil},
		{"ski short", valid("ski", "ski="+testSKI[:38]), identity.ErrInvalidSKI},
		{"ski long", valid("ski", "ski="+testSKI+"00"), identity.ErrInvalidSKI},
		{"ski not hex", valid("ski", "ski=zz"+testSKI[2:]), identity.ErrInvalidSKI},
		{"ski empty", valid("ski", "ski="), identity.ErrInvalidSKI},
		{"path empty", valid("path", "path="), nil},
		{"path without slash", valid("path", "path=ship/"), nil},
		{"path 33 bytes", valid("path", "path=/"+strings.Repeat("a", 32)), nil},
		{"path with space", valid("path", "path=/sh ip"), nil},
		{"path with control", valid("path", "path=/ship\n"), nil},
		{"id empty", valid("id", "id="), identity.ErrInvalidSHIPID},
		{"id 64 bytes", valid("id", "id="+strings.Repeat("x", 64)), identity.ErrInvalidSHIPID},
		{"id with semicolon", valid("id", "id=a;b"), identity.ErrInvalidSHIPID},
		{"id not UTF-8", valid("id", "id=a\xffb"), identity.ErrInvalidSHIPID},
		{"first duplicate counts", append([]string{"register=maybe"}, valid("")...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseTXT(tt.txt)
			if !errors.Is(err, ErrInvalidTXT) {
				t.Fatalf("ParseTXT(%q) error = %v, want ErrInvalidTXT", tt.txt, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestParseTXTAccepts(t *testing.T) {
	t.Parallel()
	base := Service{SHIPID: "Demo-Wallbox-1", Path: "/ship/", SKI: testSKI}
	with := func(f func(*Service)) Service { s := base; f(&s); return s }
	tests := []struct {
		name string
		txt  []string
		want Service
	}{
		{"minimal", valid(""), base},
		{"register true", valid("register", "register=true"), with(func(s *Service) { s.Register = true })},
		{"keys are case-insensitive", []string{"TXTVERS=1", "Id=Demo-Wallbox-1", "PATH=/ship/", "SKI=" + testSKI, "Register=false"}, base},
		{"first duplicate counts", append(valid(""), "register=true", "id=other"), base},
		{"grouped upper-case SKI", valid("ski", "ski=FC93 5547-7247:12FE 99BA 3BE3 61F9 0FCB 035F 6A41"), base},
		{"value holding =", valid("id", "id=a=b"), with(func(s *Service) { s.SHIPID = "a=b" })},
		{"strings starting with = are ignored", valid("", "=junk", "="), base},
		{"path of 32 bytes", valid("path", "path=/"+strings.Repeat("p", 31)), with(func(s *Service) { s.Path = "/" + strings.Repeat("p", 31) })},
		{"id of 63 bytes", valid("id", "id="+strings.Repeat("i", 63)), with(func(s *Service) { s.SHIPID = strings.Repeat("i", 63) })},
		{"optional fields", valid("", "brand=Demo", "model=Box", "type=ChargingStation", "serial=42", "cat=3,5"),
			with(func(s *Service) {
				s.Brand, s.Model, s.Type, s.Serial, s.Categories = "Demo", "Box", "ChargingStation", "42", []int{3, 5}
			})},
		{"long optional values are cut", valid("", "brand="+strings.Repeat("b", 40), "serial="+strings.Repeat("s", 31)+"ü"),
			with(func(s *Service) { s.Brand, s.Serial = strings.Repeat("b", 32), strings.Repeat("s", 31) })},
		{"bad cat entries are skipped", valid("", "cat= 2, x,0,256,,7 "), with(func(s *Service) { s.Categories = []int{2, 7} })},
		{"unknown keys are ignored", valid("", "foo=bar", "flag"), base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTXT(tt.txt)
			if err != nil {
				t.Fatalf("ParseTXT(%q): %v", tt.txt, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseTXT(%q)\n got %+v\nwant %+v", tt.txt, got, tt.want)
			}
		})
	}
}

func TestTXT(t *testing.T) {
	t.Parallel()
	full := Service{
		SHIPID: "wsgate-fc93554772471", Path: "/ship/", SKI: strings.ToUpper(testSKI), Register: true,
		Brand: "wsgate", Model: "Gateway", Type: "EnergyManagementSystem", Serial: "0001", Categories: []int{1, 2},
	}
	tests := []struct {
		name string
		svc  Service
		want []string
	}{
		{"full, in ship-go order", full, []string{
			"txtvers=1", "path=/ship/", "id=wsgate-fc93554772471", "ski=" + testSKI,
			"brand=wsgate", "model=Gateway", "type=EnergyManagementSystem", "register=true", "serial=0001", "cat=1,2",
		}},
		{"minimal", Service{SHIPID: "x", Path: "/", SKI: testSKI}, []string{
			"txtvers=1", "path=/", "id=x", "ski=" + testSKI, "register=false",
		}},
		{"long values are cut at a rune boundary", Service{
			SHIPID: "x", Path: "/", SKI: testSKI,
			Brand: strings.Repeat("B", 40), Model: strings.Repeat("m", 31) + "ö", Type: strings.Repeat("€", 11),
		}, []string{
			"txtvers=1", "path=/", "id=x", "ski=" + testSKI,
			"brand=" + strings.Repeat("B", 32), "model=" + strings.Repeat("m", 31), "type=" + strings.Repeat("€", 10), "register=false",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.svc.TXT()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("TXT()\n got %q\nwant %q", got, tt.want)
			}
			back, err := ParseTXT(got)
			if err != nil {
				t.Fatalf("ParseTXT(TXT()): %v", err)
			}
			if back.SKI != testSKI || back.Register != tt.svc.Register || back.SHIPID != tt.svc.SHIPID ||
				!reflect.DeepEqual(back.Categories, tt.svc.Categories) {
				t.Errorf("round trip lost data: %+v", back)
			}
		})
	}
}

func TestTXTRejects(t *testing.T) {
	t.Parallel()
	ok := Service{SHIPID: "x", Path: "/ship/", SKI: testSKI}
	tests := []struct {
		name string
		edit func(*Service)
	}{
		{"bad SKI", func(s *Service) { s.SKI = "abc" }},
		{"empty SHIP ID", func(s *Service) { s.SHIPID = "" }},
		{"SHIP ID too long", func(s *Service) { s.SHIPID = strings.Repeat("x", 64) }},
		{"path without slash", func(s *Service) { s.Path = "ship" }},
		{"path too long", func(s *Service) { s.Path = "/" + strings.Repeat("x", 32) }},
		{"category 0", func(s *Service) { s.Categories = []int{0} }},
		{"category 256", func(s *Service) { s.Categories = []int{256} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := ok
			tt.edit(&s)
			if _, err := s.TXT(); !errors.Is(err, ErrInvalidTXT) {
				t.Errorf("TXT() error = %v, want ErrInvalidTXT", err)
			}
		})
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	v4, v6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")
	tests := []struct {
		name string
		svc  Service
		want []string
	}{
		{"host first, then addresses", Service{Host: "wallbox.local.", Port: 4711, Path: "/ship/", Addrs: []netip.Addr{v4, v6}},
			[]string{"wss://wallbox.local:4711/ship/", "wss://192.0.2.7:4711/ship/", "wss://[2001:db8::7]:4711/ship/"}},
		{"no host", Service{Port: 4712, Path: "/", Addrs: []netip.Addr{v6}}, []string{"wss://[2001:db8::7]:4712/"}},
		{"nothing known", Service{Port: 1, Path: "/"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.svc.URLs(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("URLs() = %q, want %q", got, tt.want)
			}
			want := ""
			if len(tt.want) > 0 {
				want = tt.want[0]
			}
			if got := tt.svc.URL(); got != want {
				t.Errorf("URL() = %q, want %q", got, want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("a", 33), strings.Repeat("a", 32)},
		{strings.Repeat("a", 30) + "日本", strings.Repeat("a", 30)},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	} {
		got := truncate(tt.in, 32)
		if got != tt.want || !utf8.ValidString(got) || len(got) > 32 {
			t.Errorf("truncate(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMDNS(t *testing.T) {
	t.Parallel()
	svc := Service{Port: 4711, SHIPID: "wsgate-fc93", Path: "/ship/", SKI: strings.ToUpper(testSKI)}
	m, err := svc.MDNS()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"txtvers=1", "path=/ship/", "id=wsgate-fc93", "ski=" + testSKI, "register=false"}
	if m.Instance != "wsgate-fc93" || m.Type != "_ship._tcp" || m.Port != 4711 || !reflect.DeepEqual(m.TXT, want) {
		t.Errorf("MDNS() = %+v", m)
	}
	svc.Instance = "Energy manager"
	if m, _ := svc.MDNS(); m.Instance != "Energy manager" {
		t.Errorf("instance %q, want the one given", m.Instance)
	}
	svc.SKI = "short"
	if _, err := svc.MDNS(); !errors.Is(err, ErrInvalidTXT) {
		t.Errorf("MDNS() of a bad SKI: %v, want ErrInvalidTXT", err)
	}
}
