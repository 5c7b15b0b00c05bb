package identity

import (
	"crypto"
	"crypto/sha1" //nolint:gosec // SHA-1 is what RFC 5280 and SHIP specify for the SKI.
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SKILen is the length of an SKI as text: 20 bytes, 40 hex characters.
const SKILen = 40

// MaxSHIPIDLen is the longest SHIP ID accepted, in bytes (ship.md section 8).
const MaxSHIPIDLen = 63

// Sentinel errors callers may need to tell apart.
var (
	ErrInvalidSKI    = errors.New("identity: invalid SKI")
	ErrInvalidSHIPID = errors.New("identity: invalid SHIP ID")
)

// subjectPublicKeyInfo is the ASN.1 SubjectPublicKeyInfo of RFC 5280.
type subjectPublicKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// skiFromSPKI returns the SKI of a DER SubjectPublicKeyInfo: SHA-1 over the
// subjectPublicKey BIT STRING contents (tag, length and unused-bits octet
// excluded), as lower-case hex.
func skiFromSPKI(der []byte) (string, error) {
	var spki subjectPublicKeyInfo
	rest, err := asn1.Unmarshal(der, &spki)
	if err != nil {
		return "", fmt.Errorf("identity: parse SubjectPublicKeyInfo: %w", err)
	}
	if len(rest) != 0 {
		return "", errors.New("identity: trailing data after SubjectPublicKeyInfo")
	}
	sum := sha1.Sum(spki.PublicKey.RightAlign()) //nolint:gosec // see import
	return hex.EncodeToString(sum[:]), nil
}

// SKIFromPublicKey returns the SHIP SKI of a public key: SHA-1 over the bits
// of the subjectPublicKey of its SubjectPublicKeyInfo, as 40 lower-case hex
// characters. For an ECDSA P-256 key that is SHA-1 of 04||X||Y.
func SKIFromPublicKey(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("identity: marshal public key: %w", err)
	}
	return skiFromSPKI(der)
}

// PeerSKI returns the SKI computed from cert's public key and the value of
// its SubjectKeyIdentifier extension as lower-case hex ("" when the
// certificate has none). The caller compares the two; they differ when a
// certificate claims an SKI its key does not have.
func PeerSKI(cert *x509.Certificate) (computed, fromExtension string, err error) {
	if cert == nil {
		return "", "", errors.New("identity: no certificate")
	}
	computed, err = skiFromSPKI(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return "", "", err
	}
	return computed, hex.EncodeToString(cert.SubjectKeyId), nil
}

// NormalizeSKI returns s as a canonical SKI: spaces, '-' and ':' removed and
// upper case folded. It fails unless the result is 40 hex characters.
func NormalizeSKI(s string) (string, error) {
	var b strings.Builder
	b.Grow(SKILen)
	for _, r := range s {
		switch {
		case r == ' ' || r == '-' || r == ':' || r == '\t':
			continue
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f':
			b.WriteRune(r)
		case r >= 'A' && r <= 'F':
			b.WriteRune(r + ('a' - 'A'))
		default:
			return "", fmt.Errorf("%w: %q: character %q is not hex", ErrInvalidSKI, s, r)
		}
	}
	if b.Len() != SKILen {
		return "", fmt.Errorf("%w: %q: %d hex characters, want %d", ErrInvalidSKI, s, b.Len(), SKILen)
	}
	return b.String(), nil
}

// DefaultSHIPID is the SHIP ID used when none is configured: "wsgate-" and
// the first 16 hex characters (64 bits) of the local SKI. ship.md section 6.5
// asks for a globally unique node ID that starts with the manufacturer
// abbreviation; this one is stable for as long as the key is kept.
func DefaultSHIPID(ski string) string {
	if len(ski) > 16 {
		ski = ski[:16]
	}
	return "wsgate-" + ski
}

// ValidateSHIPID reports whether id can be used as a SHIP ID: 1 to 63 bytes
// of UTF-8 without control characters or ';' (the QR-code separator).
func ValidateSHIPID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidSHIPID)
	case len(id) > MaxSHIPIDLen:
		return fmt.Errorf("%w: %q is %d bytes, at most %d", ErrInvalidSHIPID, id, len(id), MaxSHIPIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidSHIPID, id)
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == ';' {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidSHIPID, id, r)
		}
	}
	return nil
}
