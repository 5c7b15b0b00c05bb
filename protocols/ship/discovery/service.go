package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols/ship/identity"
)

// DNS-SD names and limits of SHIP (ship.md section 8).
const (
	// ServiceType is the DNS-SD service type of SHIP.
	ServiceType = "_ship._tcp"
	// TXTVersion is the only txtvers a receiver may accept.
	TXTVersion = "1"
	// MaxPathLen is the longest WebSocket path accepted, in bytes.
	MaxPathLen = 32
	// MaxValueLen is the longest brand, model, type or serial; longer values
	// are cut (at a UTF-8 boundary) as ship-go does.
	MaxValueLen = 32
)

// TXT keys.
const (
	keyTXTVers  = "txtvers"
	keyID       = "id"
	keyPath     = "path"
	keySKI      = "ski"
	keyRegister = "register"
	keyBrand    = "brand"
	keyModel    = "model"
	keyType     = "type"
	keySerial   = "serial"
	keyCat      = "cat"
)

// Sentinel errors callers may need to tell apart.
var (
	// ErrInvalidTXT marks a TXT record a receiver must ignore, or a Service
	// whose TXT record cannot be built.
	ErrInvalidTXT = errors.New("discovery: invalid SHIP TXT record")
	// ErrNoMulticast is mdns.ErrNoMulticast: no mDNS socket could be
	// opened. Callers log it and run on without discovery.
	ErrNoMulticast = mdns.ErrNoMulticast
)

// Service is one SHIP node as DNS-SD describes it: the SRV and address
// records (where) and the SHIP TXT record (who).
//
// To announce, Addrs may be left empty: each interface then announces its
// own addresses. From Browse, Addrs holds IPv4 before IPv6, sorted, without
// IPv6 link-local addresses, and is never empty.
type Service struct {
	Instance string       // instance label, e.g. "Demo-Wallbox-1234"; empty announces the SHIP ID
	Host     string       // SRV target without the trailing dot, e.g. "wallbox.local"
	Port     int          // WebSocket (wss) port
	Addrs    []netip.Addr // addresses of Host

	SHIPID     string // TXT id
	Path       string // TXT path, e.g. "/ship/"
	SKI        string // TXT ski, 40 lower-case hex characters
	Register   bool   // TXT register: the node accepts pairing without user interaction
	Brand      string // TXT brand, optional
	Model      string // TXT model, optional
	Type       string // TXT type, optional (device type)
	Serial     string // TXT serial, optional
	Categories []int  // TXT cat, optional (1 grid connection hub ... 7 metering)
}

// URL is the WebSocket URL to dial: wss://host:port/path, with the host
// name when there is one and the first address otherwise (ship-go tries
// the name first). It is "" when neither is known.
func (s Service) URL() string {
	if u := s.URLs(); len(u) > 0 {
		return u[0]
	}
	return ""
}

// URLs lists every URL worth dialling, in the order ship-go tries them: the
// host name, then each address (IPv4 before IPv6 when Addrs came from
// Browse).
func (s Service) URLs() []string {
	port := strconv.Itoa(s.Port)
	var urls []string
	if h := strings.TrimSuffix(s.Host, "."); h != "" {
		urls = append(urls, "wss://"+net.JoinHostPort(h, port)+s.Path)
	}
	for _, a := range s.Addrs {
		urls = append(urls, "wss://"+net.JoinHostPort(a.String(), port)+s.Path)
	}
	return urls
}

// MDNS returns s as the mdns package announces it: type _ship._tcp, the
// SHIP ID as the instance name unless one is given, and the SHIP TXT
// record. It fails with ErrInvalidTXT when TXT does.
func (s Service) MDNS() (mdns.Service, error) {
	txt, err := s.TXT()
	if err != nil {
		return mdns.Service{}, err
	}
	instance := s.Instance
	if instance == "" {
		instance = s.SHIPID // eebus-go does the same
	}
	return mdns.Service{Instance: instance, Type: ServiceType, Host: s.Host, Port: s.Port, Addrs: s.Addrs, TXT: txt}, nil
}

// TXT returns the SHIP TXT record of s as key=value strings (not escaped for
// any DNS library), in ship-go's order. It fails with ErrInvalidTXT when a
// mandatory value is invalid; optional values longer than MaxValueLen are
// cut, empty ones are left out.
func (s Service) TXT() ([]string, error) {
	ski, err := identity.NormalizeSKI(s.SKI)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTXT, err)
	}
	if err := identity.ValidateSHIPID(s.SHIPID); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTXT, err)
	}
	if err := validatePath(s.Path); err != nil {
		return nil, err
	}
	cat, err := formatCategories(s.Categories)
	if err != nil {
		return nil, err
	}
	txt := []string{
		keyTXTVers + "=" + TXTVersion,
		keyPath + "=" + s.Path,
		keyID + "=" + s.SHIPID,
		keySKI + "=" + ski,
	}
	for _, kv := range [...][2]string{{keyBrand, s.Brand}, {keyModel, s.Model}, {keyType, s.Type}} {
		if v := truncate(kv[1], MaxValueLen); v != "" {
			txt = append(txt, kv[0]+"="+v)
		}
	}
	txt = append(txt, keyRegister+"="+strconv.FormatBool(s.Register))
	if v := truncate(s.Serial, MaxValueLen); v != "" {
		txt = append(txt, keySerial+"="+v)
	}
	if cat != "" {
		txt = append(txt, keyCat+"="+cat)
	}
	return txt, nil
}

// ParseTXT reads a SHIP TXT record (unescaped key=value strings) into the
// TXT fields of a Service. It fails with ErrInvalidTXT for every record
// ship.md section 8 tells receivers to ignore: a missing txtvers, id, path,
// ski or register; txtvers other than 1; register other than true/false;
// an invalid SKI; a path that is not 1-32 bytes starting with '/'; an id
// that identity.ValidateSHIPID rejects (empty, over 63 bytes, not UTF-8,
// control characters or ';').
//
// Keys are case-insensitive and only the first occurrence of a key counts
// (RFC 6763 section 6.4). Optional values are cut to MaxValueLen; cat
// entries that are not numbers from 1 to 255 are skipped, since a bad
// optional field is no reason to hide the node.
func ParseTXT(txt []string) (Service, error) {
	kv := mdns.TXTMap(txt)
	for _, k := range [...]string{keyTXTVers, keyID, keyPath, keySKI, keyRegister} {
		if _, ok := kv[k]; !ok {
			return Service{}, fmt.Errorf("%w: missing key %q", ErrInvalidTXT, k)
		}
	}
	if v := kv[keyTXTVers]; v != TXTVersion {
		return Service{}, fmt.Errorf("%w: txtvers %q, want %q", ErrInvalidTXT, v, TXTVersion)
	}
	var s Service
	switch v := kv[keyRegister]; v {
	case "true":
		s.Register = true
	case "false":
	default:
		return Service{}, fmt.Errorf("%w: register %q, want true or false", ErrInvalidTXT, v)
	}
	ski, err := identity.NormalizeSKI(kv[keySKI])
	if err != nil {
		return Service{}, fmt.Errorf("%w: %w", ErrInvalidTXT, err)
	}
	s.SKI = ski
	if err := validatePath(kv[keyPath]); err != nil {
		return Service{}, err
	}
	s.Path = kv[keyPath]
	if err := identity.ValidateSHIPID(kv[keyID]); err != nil {
		return Service{}, fmt.Errorf("%w: %w", ErrInvalidTXT, err)
	}
	s.SHIPID = kv[keyID]
	s.Brand = truncate(kv[keyBrand], MaxValueLen)
	s.Model = truncate(kv[keyModel], MaxValueLen)
	s.Type = truncate(kv[keyType], MaxValueLen)
	s.Serial = truncate(kv[keySerial], MaxValueLen)
	s.Categories = parseCategories(kv[keyCat])
	return s, nil
}

// validatePath applies the jeebus rule (1-32 bytes, leading '/') and also
// refuses bytes that cannot stand in an HTTP request line.
func validatePath(p string) error {
	if p == "" || len(p) > MaxPathLen || p[0] != '/' {
		return fmt.Errorf("%w: path %q must be 1-%d bytes starting with '/'", ErrInvalidTXT, p, MaxPathLen)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= ' ' || p[i] == 0x7f {
			return fmt.Errorf("%w: path %q contains byte %#x", ErrInvalidTXT, p, p[i])
		}
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence;
// invalid UTF-8 is replaced so the result is always valid text.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func formatCategories(cats []int) (string, error) {
	parts := make([]string, 0, len(cats))
	for _, c := range cats {
		if c < 1 || c > 255 {
			return "", fmt.Errorf("%w: category %d not in 1-255", ErrInvalidTXT, c)
		}
		parts = append(parts, strconv.Itoa(c))
	}
	return strings.Join(parts, ","), nil
}

func parseCategories(v string) []int {
	var cats []int
	for f := range strings.SplitSeq(v, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && c >= 1 && c <= 255 {
			cats = append(cats, c)
		}
	}
	return cats
}
