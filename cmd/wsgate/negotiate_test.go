//go:build !noship

package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// opensslCert makes a self-signed certificate and its key with openssl,
// independently of our code: an ECDSA P-256 key ("ec", as SHIP devices
// have) or RSA ("rsa"). openssl gives a self-signed certificate the SKI
// extension of its key.
func opensslCert(t *testing.T, dir, name, kind string) tls.Certificate {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl is required in CI (make test-deps installs it): %v", err)
		}
		t.Skip("openssl not installed; run `make test-deps`")
	}
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	newkey := map[string]string{"ec": "ec", "rsa": "rsa:2048"}[kind]
	args := []string{"req", "-x509", "-newkey", newkey, "-nodes", "-keyout", keyFile, "-out", certFile,
		"-subj", "/CN=" + name, "-days", "1", "-addext", "subjectAltName=IP:127.0.0.1"}
	if kind == "ec" {
		args = append(args, "-pkeyopt", "ec_paramgen_curve:P-256")
	}
	if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestNegotiationOnSharedEndpoint is the seed's example taken literally:
// one wss:// endpoint serves "ship, done", a client that presents a SHIP
// certificate gets SHIP (whose handshake then starts), one that presents
// none (or one that is not SHIP's kind) gets done, by preference order
// and policy. It runs on SHIP's own listener and on a [[listeners]] entry
// with a certificate of its own, with clients and certificates made by
// Go's crypto/tls and openssl.
func TestNegotiationOnSharedEndpoint(t *testing.T) {
	shipLeakCheck(t)
	dir := t.TempDir()
	shipCert := opensslCert(t, dir, "heat-pump", "ec")
	rsaCert := opensslCert(t, dir, "browser-user", "rsa")
	opensslCert(t, dir, "hub", "ec") // the [[listeners]] entry's own certificate

	gateways := map[string]shipSetup{}
	for _, policy := range []string{"client", "server"} {
		wssPort := brokertest.FreePort(t)
		ts := testConfigShip(t, "", fmt.Sprintf(`
[[listeners]]
address = "127.0.0.1:%d"
protocols = ["ship", "done"]
tls_cert = %q
tls_key = %q
`, wssPort, filepath.Join(dir, "hub.pem"), filepath.Join(dir, "hub.key")))
		setPolicy(t, ts.path, policy)
		startInProcess(t, ts.path, ts.wsURL)
		ts.wsURL = fmt.Sprintf("wss://127.0.0.1:%d/", wssPort) // the [[listeners]] entry
		gateways[policy] = ts
	}

	tests := []struct {
		policy string
		offer  []string
		cert   *tls.Certificate
		want   string // the protocol, or "400"
	}{
		{"client", []string{"ship", "done"}, &shipCert, "ship"},
		{"client", []string{"ship", "done"}, nil, "done"},
		{"client", []string{"ship", "done"}, &rsaCert, "done"},
		{"client", []string{"done", "ship"}, &shipCert, "done"},
		{"server", []string{"done", "ship"}, &shipCert, "ship"},
		{"server", []string{"done", "ship"}, nil, "done"},
		{"client", []string{"ship"}, nil, "400"},
		{"server", []string{"ship"}, nil, "400"},
	}
	for _, tt := range tests {
		for _, endpoint := range []string{"SHIP's listener", "[[listeners]] with its own certificate"} {
			certName := "no certificate"
			switch tt.cert {
			case &shipCert:
				certName = "SHIP certificate"
			case &rsaCert:
				certName = "RSA certificate"
			}
			name := fmt.Sprintf("%s/policy %s/offer %s/%s", endpoint, tt.policy, strings.Join(tt.offer, ","), certName)
			t.Run(name, func(t *testing.T) {
				url := gateways[tt.policy].shipURL
				if endpoint != "SHIP's listener" {
					url = gateways[tt.policy].wsURL
				}
				tc := &tls.Config{InsecureSkipVerify: true} // self-signed servers; not what is tested
				if tt.cert != nil {
					tc.Certificates = []tls.Certificate{*tt.cert}
				}
				d := websocket.Dialer{TLSClientConfig: tc, Subprotocols: tt.offer, HandshakeTimeout: shipWait}
				ws, resp, err := d.Dial(url, nil)
				if tt.want == "400" {
					if err == nil {
						ws.Close()
						t.Fatalf("connected with %q, want 400", ws.Subprotocol())
					}
					if resp == nil || resp.StatusCode != http.StatusBadRequest {
						t.Fatalf("dial: %v (response %v), want 400", err, resp)
					}
					body, _ := io.ReadAll(resp.Body)
					for _, want := range []string{"this endpoint serves: ship, done", "ship: SHIP needs a TLS client certificate"} {
						if !strings.Contains(string(body), want) {
							t.Errorf("400 body %q does not say %q", body, want)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer ws.Close()
				if got := ws.Subprotocol(); got != tt.want {
					t.Fatalf("subprotocol %q, want %q", got, tt.want)
				}
				_ = ws.SetReadDeadline(time.Now().Add(shipWait))
				if tt.want == "done" {
					if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"hello","id":"shared-endpoint"}`)); err != nil {
						t.Fatal(err)
					}
					if _, msg, err := ws.ReadMessage(); err != nil || !bytes.Contains(msg, []byte(`"op":"welcome"`)) {
						t.Fatalf("done hello: %q, %v", msg, err)
					}
					return
				}
				// SHIP: the connection mode initialisation of section 6.1.
				if err := ws.WriteMessage(websocket.BinaryMessage, shiptest.CMI); err != nil {
					t.Fatal(err)
				}
				if _, msg, err := ws.ReadMessage(); err != nil || !bytes.Equal(msg, shiptest.CMI) {
					t.Fatalf("SHIP CMI answered with %q, %v", msg, err)
				}
			})
		}
	}
}

// setPolicy sets protocols.policy in the config file at path, which
// testConfigShip wrote.
func setPolicy(t *testing.T, path, policy string) {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	order := []byte("order = [\"ship\", \"done\"]\n")
	if !bytes.Contains(doc, order) {
		t.Fatalf("%s has no %q", path, order)
	}
	doc = bytes.Replace(doc, order, append(order, fmt.Sprintf("policy = %q\n", policy)...), 1)
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestShipProtocolsListing: `wsgate protocols` lists SHIP like the others,
// and its listener with what it serves.
func TestShipProtocolsListing(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if status := run(t.Context(), []string{"protocols"}, &out, &out); status != 0 {
		t.Fatalf("protocols: %d %q", status, out.String())
	}
	for _, want := range []string{
		"1     ship  builtin  enabled", "2     done  builtin  enabled", "-     echo  builtin  disabled",
		"wss://:4711/ship/  ship, done (no offer: ship)", "ws://:8080/        ship, done",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("protocols output lacks %q:\n%s", want, out.String())
		}
	}
}
