package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testIdentities are created once: key generation is cheap but the 2-core
// machine is shared.
var testIdentities = sync.OnceValues(func() ([2]*Identity, error) {
	var ids [2]*Identity
	for i := range ids {
		dir, err := tempDir()
		if err != nil {
			return ids, err
		}
		if ids[i], err = LoadOrCreate(dir, Subject{CommonName: "node"}); err != nil {
			return ids, err
		}
	}
	return ids, nil
})

// tempDirs are removed by TestMain; only testIdentities appends, once.
var tempDirs []string

func tempDir() (string, error) {
	d, err := os.MkdirTemp("", "wsgate-identity-test-")
	if err == nil {
		tempDirs = append(tempDirs, d)
	}
	return d, err
}

func identities(t *testing.T) (server, client *Identity) {
	t.Helper()
	ids, err := testIdentities()
	if err != nil {
		t.Fatal(err)
	}
	return ids[0], ids[1]
}

type handshakeResult struct {
	client, server       tls.ConnectionState
	clientErr, serverErr error
}

// handshake runs one TLS handshake over a real loopback TCP connection.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var res handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			res.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		sc := tls.Server(c, serverCfg)
		if res.serverErr = sc.Handshake(); res.serverErr == nil {
			res.server = sc.ConnectionState()
			// TLS 1.3 servers learn of a bad client certificate only
			// after their side is done; read to see the alert.
			_, _ = sc.Write([]byte{1})
			_, rerr := sc.Read(make([]byte, 1))
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				res.serverErr = rerr
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	cc := tls.Client(c, clientCfg)
	if res.clientErr = cc.Handshake(); res.clientErr == nil {
		res.client = cc.ConnectionState()
		// Under TLS 1.3 a client-certificate rejection arrives with the
		// first read.
		_, rerr := cc.Read(make([]byte, 1))
		if rerr != nil {
			res.clientErr = rerr
		} else {
			_, _ = cc.Write([]byte{1})
		}
	}
	_ = cc.Close()
	<-done
	return res
}

func TestCipherSuiteAvailability(t *testing.T) {
	t.Parallel()
	// 0xC023 is in Go's insecure list: never used unless configured.
	var insecure, secure bool
	for _, s := range tls.InsecureCipherSuites() {
		insecure = insecure || s.ID == tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256
	}
	for _, s := range tls.CipherSuites() {
		secure = secure || s.ID == tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	}
	if !insecure || !secure {
		t.Errorf("0xC023 in InsecureCipherSuites: %v; 0xC02B in CipherSuites: %v", insecure, secure)
	}
	if !slices.Equal(CipherSuites, []uint16{0xC023, 0xC02B}) {
		t.Errorf("CipherSuites = %#x", CipherSuites)
	}
}

func TestHandshake(t *testing.T) {
	t.Parallel()
	srvID, cliID := identities(t)
	opts := TLSOptions{Logger: quiet}
	opts13 := TLSOptions{AllowTLS13: true, Logger: quiet}

	// A client that offers only the mandatory suite, like a minimal device.
	cbcOnly := func(c *tls.Config) *tls.Config { c.CipherSuites = []uint16{0xC023}; return c }
	tests := []struct {
		name        string
		server      *tls.Config
		client      *tls.Config
		wantVersion uint16
		wantSuite   uint16
	}{
		{"TLS 1.2 both suites offered", ServerTLSConfig(srvID, opts), ClientTLSConfig(cliID, opts),
			tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"TLS 1.2 client offers only 0xC023", ServerTLSConfig(srvID, opts), cbcOnly(ClientTLSConfig(cliID, opts)),
			tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		{"TLS 1.2 server accepts only 0xC023", cbcOnly(ServerTLSConfig(srvID, opts)), ClientTLSConfig(cliID, opts),
			tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		{"TLS 1.3 allowed on both", ServerTLSConfig(srvID, opts13), ClientTLSConfig(cliID, opts13),
			tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256},
		{"TLS 1.3 allowed on client only", ServerTLSConfig(srvID, opts), ClientTLSConfig(cliID, opts13),
			tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"TLS 1.3 allowed on server only", ServerTLSConfig(srvID, opts13), ClientTLSConfig(cliID, opts),
			tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := handshake(t, tt.server, tt.client)
			if res.clientErr != nil || res.serverErr != nil {
				t.Fatalf("client: %v; server: %v", res.clientErr, res.serverErr)
			}
			for side, cs := range map[string]tls.ConnectionState{"client": res.client, "server": res.server} {
				if cs.Version != tt.wantVersion || cs.CipherSuite != tt.wantSuite {
					t.Errorf("%s: %s %s, want %s %s", side, tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite),
						tls.VersionName(tt.wantVersion), tls.CipherSuiteName(tt.wantSuite))
				}
			}
			if cs := res.server; cs.CurveID != tls.CurveP256 {
				t.Errorf("curve %v, want P-256", cs.CurveID)
			}
			// Each side learns the other's SKI.
			sp, err := VerifyPeer(res.server, opts)
			if err != nil || sp.SKI != cliID.SKI || sp.Mismatch {
				t.Errorf("server sees %+v, %v; want SKI %s", sp, err, cliID.SKI)
			}
			cp, err := VerifyPeer(res.client, opts)
			if err != nil || cp.SKI != srvID.SKI {
				t.Errorf("client sees %+v, %v; want SKI %s", cp, err, srvID.SKI)
			}
		})
	}
}

func TestHandshakeRefused(t *testing.T) {
	t.Parallel()
	srvID, cliID := identities(t)
	opts := TLSOptions{Logger: quiet}

	for _, allow13 := range []bool{false, true} {
		o := opts
		o.AllowTLS13 = allow13
		t.Run("no client certificate/tls13="+boolName(allow13), func(t *testing.T) {
			cc := ClientTLSConfig(cliID, o)
			cc.Certificates = nil
			res := handshake(t, ServerTLSConfig(srvID, o), cc)
			if res.serverErr == nil {
				t.Fatal("server accepted a client without certificate")
			}
			if res.clientErr == nil {
				t.Error("client did not notice the refusal")
			}
		})
	}

	t.Run("client expects another SKI", func(t *testing.T) {
		o := opts
		o.ExpectedPeerSKI = strings.Repeat("0", 40)
		res := handshake(t, ServerTLSConfig(srvID, opts), ClientTLSConfig(cliID, o))
		if !errors.Is(res.clientErr, ErrUnexpectedPeer) {
			t.Errorf("client err = %v, want ErrUnexpectedPeer", res.clientErr)
		}
	})

	t.Run("client expects the server's SKI in grouped upper case", func(t *testing.T) {
		o := opts
		o.ExpectedPeerSKI = strings.ToUpper(srvID.SKI[:20] + " " + srvID.SKI[20:])
		res := handshake(t, ServerTLSConfig(srvID, opts), ClientTLSConfig(cliID, o))
		if res.clientErr != nil || res.serverErr != nil {
			t.Errorf("client: %v; server: %v", res.clientErr, res.serverErr)
		}
	})

	t.Run("client certificate not P-256", func(t *testing.T) {
		cc := ClientTLSConfig(cliID, opts)
		cc.Certificates = []tls.Certificate{otherCert(t, elliptic.P384(), "")}
		res := handshake(t, ServerTLSConfig(srvID, opts), cc)
		if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), ErrNotP256.Error()) {
			t.Errorf("server err = %v, want ErrNotP256", res.serverErr)
		}
	})
}

func TestHandshakeSKIMismatch(t *testing.T) {
	t.Parallel()
	srvID, _ := identities(t)
	liar := otherCert(t, elliptic.P256(), srvID.SKI) // claims the server's SKI
	computed, _, err := PeerSKI(liar.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		policy  MismatchPolicy
		wantErr error
		wantSKI string
	}{
		{MismatchUseComputed, nil, computed},
		{MismatchReject, ErrSKIMismatch, ""},
		{MismatchUseExtension, nil, srvID.SKI},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			var logged strings.Builder
			o := TLSOptions{Mismatch: tt.policy, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
			cc := ClientTLSConfig(srvID, TLSOptions{Logger: quiet})
			cc.Certificates = []tls.Certificate{liar}
			res := handshake(t, ServerTLSConfig(srvID, o), cc)
			if tt.wantErr != nil {
				if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.wantErr.Error()) {
					t.Errorf("server err = %v, want %v", res.serverErr, tt.wantErr)
				}
				return
			}
			if res.serverErr != nil {
				t.Fatal(res.serverErr)
			}
			p, err := VerifyPeer(res.server, o)
			if err != nil || p.SKI != tt.wantSKI || !p.Mismatch || p.Computed != computed || p.Extension != srvID.SKI {
				t.Errorf("peer %+v, %v; want SKI %s", p, err, tt.wantSKI)
			}
			if !strings.Contains(logged.String(), "does not match") {
				t.Errorf("mismatch not logged: %q", logged.String())
			}
		})
	}
}

func TestParseMismatchPolicy(t *testing.T) {
	t.Parallel()
	for _, p := range []MismatchPolicy{MismatchUseComputed, MismatchReject, MismatchUseExtension} {
		got, err := ParseMismatchPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseMismatchPolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if p, err := ParseMismatchPolicy(""); err != nil || p != MismatchUseComputed {
		t.Errorf("default: %v, %v", p, err)
	}
	if _, err := ParseMismatchPolicy("trust"); err == nil {
		t.Error("unknown policy accepted")
	}
}

func TestVerifyPeerNoCertificate(t *testing.T) {
	t.Parallel()
	if _, err := VerifyPeer(tls.ConnectionState{}, TLSOptions{}); !errors.Is(err, ErrNoPeerCertificate) {
		t.Errorf("err = %v", err)
	}
}

// otherCert makes a self-signed certificate on curve whose SKI extension is
// ski (the key's own SKI when empty).
func otherCert(t *testing.T, curve elliptic.Curve, ski string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if ski == "" {
		if ski, err = SKIFromPublicKey(&key.PublicKey); err != nil {
			t.Fatal(err)
		}
	}
	der, err := createCertificate(key, Subject{CommonName: "other"}, ski, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func boolName(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
