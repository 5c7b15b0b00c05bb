package mdns

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DNS-SD names and limits.
const (
	// Domain is the only domain mDNS serves.
	Domain = "local."
	// TTL is the lifetime announced with every record (RFC 6762 10
	// recommends 120 s for records that name a host).
	TTL = 120 * time.Second
	// MaxInstanceLen is the longest instance name: one DNS label.
	MaxInstanceLen = 63
	// MaxTXTLen is the longest TXT record, all strings with their length
	// bytes (RFC 6763 6.2: it should fit one packet with the other records).
	MaxTXTLen = 1300
)

// Sentinel errors callers may need to tell apart.
var (
	// ErrInvalidService marks a Service that cannot be announced.
	ErrInvalidService = errors.New("mdns: invalid service")
	// ErrNoMulticast marks a host where no mDNS socket could be opened (no
	// multicast interface, a sandbox, port 5353 refused). Callers log it and
	// run on without mDNS.
	ErrNoMulticast = errors.New("mdns: multicast unavailable")
)

// Service is one DNS-SD service instance: where it is (SRV and address
// records) and what it says about itself (TXT).
type Service struct {
	// Instance is the instance label, free text such as "Kitchen hub";
	// at most MaxInstanceLen bytes of UTF-8 without control characters.
	Instance string
	// Type is the service type, "_name._tcp" or "_name._udp", e.g.
	// "_wsgate._tcp".
	Type string
	// Host is the SRV target, e.g. "hub.local" (the ".local" may be left
	// out). Empty announces the system host name.
	Host string
	Port int
	// Addrs are the addresses of Host. For Responder they may be left
	// empty: each interface then announces its own addresses; a loopback
	// address is announced on loopback interfaces only. From Browse, Addrs
	// holds IPv4 before IPv6, sorted, without IPv6 link-local addresses,
	// and is never empty.
	Addrs []netip.Addr
	// TXT holds the TXT record's strings, usually key=value (RFC 6763 6),
	// unescaped: each at most 255 bytes.
	TXT []string
}

// TXTMap reads TXT strings as RFC 6763 section 6 says: keys are
// case-insensitive (returned in lower case), only the first occurrence of
// a key counts, a string starting with '=' is ignored, and a key without
// '=' maps to "" like a key with an empty value.
func TXTMap(txt []string) map[string]string {
	kv := make(map[string]string, len(txt))
	for _, s := range txt {
		k, v, _ := strings.Cut(s, "=")
		k = strings.ToLower(k)
		if k == "" {
			continue
		}
		if _, dup := kv[k]; !dup {
			kv[k] = v
		}
	}
	return kv
}

// validType accepts "_name._tcp" and "_name._udp", name being 1-15
// letters, digits and hyphens that neither starts nor ends with a hyphen
// (RFC 6335 5.1).
func validType(t string) error {
	name, proto, ok := strings.Cut(t, ".")
	if !ok || (!strings.EqualFold(proto, "_tcp") && !strings.EqualFold(proto, "_udp")) {
		return fmt.Errorf("%w: service type %q is not _name._tcp or _name._udp", ErrInvalidService, t)
	}
	name, ok = strings.CutPrefix(name, "_")
	if !ok || name == "" || len(name) > 15 || name[0] == '-' || name[len(name)-1] == '-' {
		return fmt.Errorf("%w: service name in %q must be _ and 1-15 letters, digits or hyphens", ErrInvalidService, t)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: service name in %q must be _ and 1-15 letters, digits or hyphens", ErrInvalidService, t)
		}
	}
	return nil
}

// ValidateInstance accepts an instance name of 1-63 bytes of UTF-8
// without control characters; its error wraps ErrInvalidService.
func ValidateInstance(name string) error {
	if name == "" || len(name) > MaxInstanceLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w: instance name %q must be 1-%d bytes of UTF-8", ErrInvalidService, name, MaxInstanceLen)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: instance name %q contains %q", ErrInvalidService, name, r)
		}
	}
	return nil
}

// validTXT checks the lengths of a TXT record.
func validTXT(txt []string) error {
	total := 0
	for _, s := range txt {
		if len(s) > 255 {
			return fmt.Errorf("%w: TXT string %.20q... is %d bytes, at most 255", ErrInvalidService, s, len(s))
		}
		total += 1 + len(s)
	}
	if total > MaxTXTLen {
		return fmt.Errorf("%w: TXT record of %d bytes, at most %d", ErrInvalidService, total, MaxTXTLen)
	}
	return nil
}

// InstanceName joins base and suffix into an instance name, cutting base
// (without splitting a UTF-8 sequence) so that the whole fits in
// MaxInstanceLen bytes: "Kitchen hub" and " (ws://:8080/)" make
// "Kitchen hub (ws://:8080/)".
func InstanceName(base, suffix string) string {
	n := MaxInstanceLen - len(suffix)
	if n < 0 {
		n, base, suffix = MaxInstanceLen, suffix, ""
	}
	if len(base) > n {
		for n > 0 && !utf8.RuneStart(base[n]) {
			n--
		}
		base = base[:n]
	}
	return base + suffix
}
