package auth

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// IDFrom says where in a client certificate the device id is, on listeners
// with auth = "mtls".
type IDFrom string

const (
	IDFromCN     IDFrom = "cn"      // the subject's CommonName
	IDFromSANURI IDFrom = "san-uri" // the last segment of the first URI SAN
)

// ParseIDFrom checks a configured IDFrom.
func ParseIDFrom(s string) (IDFrom, error) {
	switch from := IDFrom(s); from {
	case IDFromCN, IDFromSANURI:
		return from, nil
	}
	return "", fmt.Errorf("device id source %q is neither %q nor %q", s, IDFromCN, IDFromSANURI)
}

// DeviceFromCert takes the device id from a certificate: its subject
// CommonName, or the last segment (after the last '/' or ':') of its first
// URI SAN, so that spiffe://home/device/kitchen and urn:dev:kitchen both
// name kitchen. The id must satisfy protocols.ValidDeviceID.
//
// The certificate must have been verified (VerifyClient) for the id to
// mean anything.
func DeviceFromCert(cert *x509.Certificate, from IDFrom) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate")
	}
	var id string
	switch from {
	case IDFromCN:
		id = cert.Subject.CommonName
		if id == "" {
			return "", errors.New("the client certificate's subject has no common name")
		}
	case IDFromSANURI:
		if len(cert.URIs) == 0 {
			return "", errors.New("the client certificate has no URI subject alternative name")
		}
		var err error
		if id, err = lastSegment(cert.URIs[0]); err != nil {
			return "", fmt.Errorf("the client certificate's URI %.128q: %w", cert.URIs[0], err)
		}
	default:
		return "", fmt.Errorf("device id source %q is neither %q nor %q", from, IDFromCN, IDFromSANURI)
	}
	if !protocols.ValidDeviceID(id) {
		return "", fmt.Errorf("the client certificate names %.128q, which is not a valid device id", id)
	}
	return id, nil
}

// lastSegment returns what follows the last '/' or ':' of u's path (or of
// its opaque part, as in urn:dev:kitchen), unescaped. A query or fragment
// is refused rather than ignored, so that one id has one spelling.
func lastSegment(u *url.URL) (string, error) {
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("has a query or fragment")
	}
	s := u.Opaque
	if s == "" {
		s = u.EscapedPath()
	}
	s = s[strings.LastIndexAny(s, "/:")+1:]
	id, err := url.PathUnescape(s)
	if err != nil {
		return "", errors.New("has a malformed escape in its last segment")
	}
	if id == "" {
		return "", errors.New("ends without a segment to name the device")
	}
	return id, nil
}

// VerifyClient verifies a client's certificate chain, leaf first as TLS
// presents it, against roots at now: the leaf must be meant for client
// authentication, and the rest of chain may serve as intermediates. Its
// errors say when a certificate has expired or comes from an unknown CA.
//
// roots must not be nil: x509 would then trust the system's CAs, and any
// certificate a public CA issued would name a device.
func VerifyClient(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("no client certificate")
	}
	if roots == nil {
		return errors.New("no CA to verify client certificates against")
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("client certificate %.128q: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// LoadCAs reads a PEM bundle of CA certificates. Text between blocks is
// ignored, as in the system bundles; a block that is not a certificate is
// an error, since it is more likely a key file named by mistake.
func LoadCAs(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, not a certificate", path, n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", path, n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}
