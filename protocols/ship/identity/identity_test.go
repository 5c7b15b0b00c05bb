package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // test of the SKI definition
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireBinary skips the test when name is not installed, except under
// CI=true, where the binary is expected and its absence is a failure.
func requireBinary(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (required under CI): %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return path
}

func TestSKIMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	openssl := requireBinary(t, "openssl")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "key.pem")
	certPath := filepath.Join(dir, "cert.pem")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", keyPath)
	run("req", "-x509", "-new", "-key", keyPath, "-subj", "/CN=test", "-days", "1",
		"-addext", "subjectKeyIdentifier=hash", "-out", certPath)

	data, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCertPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	computed, ext, err := PeerSKI(cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(ext) != SKILen {
		t.Fatalf("openssl extension %q: want %d hex characters", ext, SKILen)
	}
	if computed != ext {
		t.Errorf("computed SKI %s, openssl's extension %s", computed, ext)
	}
	fromKey, err := SKIFromPublicKey(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if fromKey != ext {
		t.Errorf("SKIFromPublicKey %s, openssl's extension %s", fromKey, ext)
	}
	// openssl's own text rendering, "AB:CD:...", normalised.
	text := run("x509", "-in", certPath, "-noout", "-text")
	_, after, ok := strings.Cut(text, "X509v3 Subject Key Identifier:")
	if !ok {
		t.Fatalf("no Subject Key Identifier in openssl output:\n%s", text)
	}
	line := strings.TrimSpace(strings.SplitN(strings.TrimLeft(after, "\n "), "\n", 2)[0])
	printed, err := NormalizeSKI(line)
	if err != nil {
		t.Fatal(err)
	}
	if printed != computed {
		t.Errorf("openssl prints %s, computed %s", printed, computed)
	}
}

func TestSKIIsSHA1OfPoint(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes() // 04||X||Y
	if err != nil {
		t.Fatal(err)
	}
	if len(point) != 65 || point[0] != 4 {
		t.Fatalf("unexpected point encoding: %d bytes", len(point))
	}
	sum := sha1.Sum(point) //nolint:gosec // test
	got, err := SKIFromPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("SKI %s, want sha1(04||X||Y) %s", got, want)
	}
}

func TestPeerSKIDetectsMismatch(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bogus := strings.Repeat("ab", 20)
	der, err := createCertificate(key, Subject{CommonName: "liar"}, bogus, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	computed, ext, err := PeerSKI(cert)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := SKIFromPublicKey(&key.PublicKey)
	if computed != want || ext != bogus {
		t.Errorf("PeerSKI = %s, %s; want %s, %s", computed, ext, want, bogus)
	}
	if _, _, err := PeerSKI(nil); err == nil {
		t.Error("PeerSKI(nil): no error")
	}
}

func TestLoadOrCreatePersists(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ship")
	subj := Subject{CommonName: "Gateway-0001", Organization: "wsgate", OrganizationalUnit: "ship", Country: "DE"}
	first, err := LoadOrCreate(dir, subj)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created {
		t.Error("first call: Created = false")
	}
	if _, err := NormalizeSKI(first.SKI); err != nil || strings.ToLower(first.SKI) != first.SKI {
		t.Errorf("SKI %q is not 40 lower-case hex: %v", first.SKI, err)
	}
	if want := "wsgate-" + first.SKI[:16]; first.SHIPID != want {
		t.Errorf("SHIPID %q, want %q", first.SHIPID, want)
	}
	leaf := first.Leaf()
	if got := hex.EncodeToString(leaf.SubjectKeyId); got != first.SKI {
		t.Errorf("extension %s, SKI %s", got, first.SKI)
	}
	if leaf.Subject.CommonName != "Gateway-0001" || leaf.Subject.Organization[0] != "wsgate" ||
		leaf.Subject.OrganizationalUnit[0] != "ship" || leaf.Subject.Country[0] != "DE" {
		t.Errorf("subject %v", leaf.Subject)
	}
	if !leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("IsCA %v, KeyUsage %v, SignatureAlgorithm %v", leaf.IsCA, leaf.KeyUsage, leaf.SignatureAlgorithm)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 3650*24*time.Hour || d > 3654*24*time.Hour {
		t.Errorf("validity %v, want 10 years", d)
	}
	// CheckSignatureFrom would refuse: like ship-go's, the certificate is a
	// CA without keyCertSign. Check the signature by the certificate's key.
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}

	for name, want := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", name, got, want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode: %v %v", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("dir holds %d files, want 2 (no temporary files left)", len(entries))
	}

	second, err := LoadOrCreate(dir, Subject{CommonName: "ignored", SHIPID: "WSG-configured"})
	if err != nil {
		t.Fatal(err)
	}
	if second.Created {
		t.Error("second call: Created = true")
	}
	if second.SKI != first.SKI {
		t.Errorf("SKI changed across loads: %s -> %s", first.SKI, second.SKI)
	}
	if second.SHIPID != "WSG-configured" {
		t.Errorf("configured SHIPID: got %q", second.SHIPID)
	}
	if string(second.Certificate.Certificate[0]) != string(first.Certificate.Certificate[0]) {
		t.Error("certificate changed across loads")
	}
}

func TestLoadOrCreateRecovery(t *testing.T) {
	t.Parallel()

	t.Run("key without certificate keeps SKI", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		first, err := LoadOrCreate(dir, Subject{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(first.CertPath); err != nil {
			t.Fatal(err)
		}
		second, err := LoadOrCreate(dir, Subject{})
		if err != nil {
			t.Fatal(err)
		}
		if second.SKI != first.SKI || !second.Created {
			t.Errorf("SKI %s -> %s, Created %v", first.SKI, second.SKI, second.Created)
		}
	})

	t.Run("certificate without key", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		first, err := LoadOrCreate(dir, Subject{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(first.KeyPath); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreate(dir, Subject{}); !errors.Is(err, ErrKeyMissing) {
			t.Errorf("err = %v, want ErrKeyMissing", err)
		}
	})

	t.Run("certificate of another key", func(t *testing.T) {
		t.Parallel()
		a, b := t.TempDir(), t.TempDir()
		if _, err := LoadOrCreate(a, Subject{}); err != nil {
			t.Fatal(err)
		}
		idB, err := LoadOrCreate(b, Subject{})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(idB.CertPath)
		if err := os.WriteFile(filepath.Join(a, CertFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreate(a, Subject{}); !errors.Is(err, ErrKeyMismatch) {
			t.Errorf("err = %v, want ErrKeyMismatch", err)
		}
	})

	t.Run("P-384 key", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		if err := os.WriteFile(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreate(dir, Subject{}); !errors.Is(err, ErrNotP256) {
			t.Errorf("err = %v, want ErrNotP256", err)
		}
	})

	t.Run("invalid SHIP ID", func(t *testing.T) {
		t.Parallel()
		if _, err := LoadOrCreate(t.TempDir(), Subject{SHIPID: strings.Repeat("x", 64)}); !errors.Is(err, ErrInvalidSHIPID) {
			t.Errorf("err = %v, want ErrInvalidSHIPID", err)
		}
	})
}

func TestNormalizeSKI(t *testing.T) {
	t.Parallel()
	const ski = "fc935547724712fe99ba3be361f90fcb035f6a41"
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: ski, want: ski},
		{in: strings.ToUpper(ski), want: ski},
		{in: "FC93 5547 7247 12FE 99BA 3BE3 61F9 0FCB 035F 6A41", want: ski},
		{in: "fc-93-55-47-72-47-12-fe-99-ba-3b-e3-61-f9-0f-cb-03-5f-6a-41", want: ski},
		{in: "FC:93:55:47:72:47:12:FE:99:BA:3B:E3:61:F9:0F:CB:03:5F:6A:41", want: ski},
		{in: ski[:38], wantErr: true},
		{in: ski + "00", wantErr: true},
		{in: "g" + ski[1:], wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := NormalizeSKI(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("NormalizeSKI(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrInvalidSKI) {
			t.Errorf("NormalizeSKI(%q): %v is not ErrInvalidSKI", tt.in, err)
		}
	}
}

func TestValidateSHIPID(t *testing.T) {
	t.Parallel()
	for id, ok := range map[string]bool{
		"wsgate-0123456789abcdef":  true,
		"Brand-Model-Serial":       true,
		strings.Repeat("x", 63):    true,
		strings.Repeat("x", 64):    false,
		"":                         false,
		"a;b":                      false,
		"a\nb":                     false,
		string([]byte{0xff, 0x41}): false,
	} {
		if err := ValidateSHIPID(id); (err == nil) != ok {
			t.Errorf("ValidateSHIPID(%q) = %v, want ok %v", id, err, ok)
		}
	}
}
