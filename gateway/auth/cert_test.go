package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// issuer is a CA made for a test.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issue signs template with parent (nil: self-signed) and returns the
// parsed certificate and its key.
func issue(t *testing.T, template *x509.Certificate, parent *issuer) issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber = new(big.Int).SetBytes(randomBytes(8))
	if template.NotBefore.IsZero() {
		template.NotBefore, template.NotAfter = t0.Add(-time.Hour), t0.Add(24*time.Hour)
	}
	signer, signerKey := template, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return issuer{cert, key}
}

func newCA(t *testing.T, name string, parent *issuer) issuer {
	t.Helper()
	return issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, parent)
}

// leaf is a client certificate for CN device; edit may change the template.
func leaf(t *testing.T, ca issuer, device string, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	template := &x509.Certificate{
		Subject:     pkix.Name{CommonName: device},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if edit != nil {
		edit(template)
	}
	return issue(t, template, &ca).cert
}

func withURIs(uris ...string) func(*x509.Certificate) {
	return func(c *x509.Certificate) {
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				panic(err)
			}
			c.URIs = append(c.URIs, u)
		}
	}
}

func TestDeviceFromCert(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "devices CA", nil)
	tests := []struct {
		name string
		cn   string
		edit func(*x509.Certificate)
		from IDFrom
		want string // "" for an error
	}{
		{"cn", "kitchen", nil, IDFromCN, "kitchen"},
		{"cn, URIs ignored", "kitchen", withURIs("spiffe://home/device/garage"), IDFromCN, "kitchen"},
		{"no cn", "", nil, IDFromCN, ""},
		{"cn with a slash", "home/kitchen", nil, IDFromCN, ""},
		{"cn with a wildcard", "kitchen+", nil, IDFromCN, ""},
		{"cn starting with $", "$gateway", nil, IDFromCN, ""},
		{"spiffe", "ignored", withURIs("spiffe://home/device/kitchen"), IDFromSANURI, "kitchen"},
		{"urn", "", withURIs("urn:dev:kitchen"), IDFromSANURI, "kitchen"},
		{"colon in the path", "", withURIs("spiffe://home/device:kitchen"), IDFromSANURI, "kitchen"},
		{"first of two", "", withURIs("urn:dev:kitchen", "urn:dev:garage"), IDFromSANURI, "kitchen"},
		{"escaped", "", withURIs("spiffe://home/device/k%C3%BCche"), IDFromSANURI, "küche"},
		{"escaped slash", "", withURIs("spiffe://home/device/a%2Fb"), IDFromSANURI, ""},
		{"no URI", "kitchen", nil, IDFromSANURI, ""},
		{"trailing slash", "", withURIs("spiffe://home/device/"), IDFromSANURI, ""},
		{"host only", "", withURIs("spiffe://home"), IDFromSANURI, ""},
		{"query", "", withURIs("spiffe://home/device/kitchen?x=1"), IDFromSANURI, ""},
		{"fragment", "", withURIs("urn:dev:kitchen#x"), IDFromSANURI, ""},
		{"unknown source", "kitchen", nil, IDFrom("dns"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cert := leaf(t, ca, tt.cn, tt.edit)
			got, err := DeviceFromCert(cert, tt.from)
			if tt.want == "" {
				if err == nil {
					t.Errorf("DeviceFromCert = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("DeviceFromCert = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := DeviceFromCert(nil, IDFromCN); err == nil {
		t.Error("DeviceFromCert(nil) succeeded")
	}
}

func TestParseIDFrom(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]IDFrom{"cn": IDFromCN, "san-uri": IDFromSANURI} {
		if got, err := ParseIDFrom(s); err != nil || got != want {
			t.Errorf("ParseIDFrom(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "CN", "san", "uri", "dns"} {
		if got, err := ParseIDFrom(s); err == nil {
			t.Errorf("ParseIDFrom(%q) = %q, want an error", s, got)
		}
	}
}

func TestVerifyClient(t *testing.T) {
	t.Parallel()
	root := newCA(t, "devices CA", nil)
	intermediate := newCA(t, "site CA", &root)
	stranger := newCA(t, "someone else's CA", nil)
	roots := x509.NewCertPool()
	roots.AddCert(root.cert)

	good := leaf(t, root, "kitchen", nil)
	viaIntermediate := leaf(t, intermediate, "garage", nil)
	tests := []struct {
		name  string
		chain []*x509.Certificate
		now   time.Time
		roots *x509.CertPool
		want  string // a part of the error; "" for none
	}{
		{"valid", []*x509.Certificate{good}, t0, roots, ""},
		{"valid through an intermediate", []*x509.Certificate{viaIntermediate, intermediate.cert}, t0, roots, ""},
		{"intermediate missing", []*x509.Certificate{viaIntermediate}, t0, roots, "unknown authority"},
		{"expired", []*x509.Certificate{good}, t0.Add(25 * time.Hour), roots, "expired"},
		{"not yet valid", []*x509.Certificate{good}, t0.Add(-2 * time.Hour), roots, "not yet valid"},
		{"unknown CA", []*x509.Certificate{leaf(t, stranger, "kitchen", nil)}, t0, roots, "unknown authority"},
		{"server certificate", []*x509.Certificate{leaf(t, root, "kitchen", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		})}, t0, roots, "key usage"},
		{"no certificate", nil, t0, roots, "no client certificate"},
		{"no roots", []*x509.Certificate{good}, t0, nil, "no CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := VerifyClient(tt.chain, tt.roots, tt.now)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("VerifyClient = %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("VerifyClient = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestLoadCAs(t *testing.T) {
	t.Parallel()
	ca, other := newCA(t, "devices CA", nil), newCA(t, "other CA", nil)
	pemOf := func(c *x509.Certificate) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	keyDER, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	corrupt := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))

	tests := []struct {
		name, content string
		want          string // a part of the error; "" for none
	}{
		{"bundle with comments", "# devices\n" + pemOf(ca.cert) + "\n# other\n" + pemOf(other.cert), ""},
		{"empty", "", "no PEM certificate"},
		{"text only", "not a certificate\n", "no PEM certificate"},
		{"key", keyPEM, `PEM block 1 is "EC PRIVATE KEY"`},
		{"key after a certificate", pemOf(ca.cert) + keyPEM, `PEM block 2 is "EC PRIVATE KEY"`},
		{"corrupt", pemOf(ca.cert) + corrupt, "PEM block 2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			pool, err := LoadCAs(path)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("LoadCAs = %v, want an error saying %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []issuer{ca, other} {
				if err := VerifyClient([]*x509.Certificate{leaf(t, c, "kitchen", nil)}, pool, t0); err != nil {
					t.Errorf("a leaf of %s: %v", c.cert.Subject.CommonName, err)
				}
			}
		})
	}
	if _, err := LoadCAs(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCAs(missing) = %v, want fs.ErrNotExist", err)
	}
}
