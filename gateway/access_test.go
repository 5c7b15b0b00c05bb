package gateway

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/auth"
	"github.com/wsgate/wsgate/protocols"
)

// tokenRule hashes token for devices.
func tokenRule(t *testing.T, devices, token string) auth.TokenRule {
	t.Helper()
	h, err := auth.Hash(token)
	if err != nil {
		t.Fatal(err)
	}
	return auth.TokenRule{Devices: devices, Hash: h}
}

// dialAuth connects from local with an optional Authorization: a bearer
// token, or "Basic user:password".
func (gw *testGateway) dialAuth(local, bearer string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{
		Subprotocols: []string{"echo"}, HandshakeTimeout: testWait,
		NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}).DialContext,
	}
	h := http.Header{}
	if basic, ok := strings.CutPrefix(bearer, "Basic "); ok {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic)))
	} else if bearer != "" {
		h.Set("Authorization", "Bearer "+bearer)
	}
	return d.Dial("ws://"+gw.addr+"/", h)
}

// attach sends !attach and returns the answer.
func attach(t *testing.T, ws *websocket.Conn, args string) string {
	t.Helper()
	writeText(t, ws, "!attach "+args)
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("attach %s: %v", args, err)
	}
	return string(msg)
}

// TestTokenAuthentication: on a token listener a device attaches with the
// token of its id, from its protocol's hello or the upgrade's bearer
// token; anything else is unauthorized.
func TestTokenAuthentication(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.Listeners[0].Auth = AuthToken
	opts.Access.Tokens = []auth.TokenRule{tokenRule(t, "kitchen", "k-token"), tokenRule(t, "esp32-*", "fleet-token")}
	gw := startGateway(t, opts)
	tests := []struct {
		name, bearer, attach, want string
	}{
		{"hello token", "", "kitchen k-token", "attached kitchen"},
		{"bearer token", "k-token", "kitchen", "attached kitchen"},
		{"pattern", "", "esp32-garage fleet-token", "attached esp32-garage"},
		{"hello token wins over bearer", "wrong", "kitchen k-token", "attached kitchen"},
		{"basic", "Basic kitchen:k-token", "kitchen", "attached kitchen"},
		{"basic of another device", "Basic garage:k-token", "kitchen", `error unauthorized: the Basic credentials are "garage"'s`},
		{"wrong token", "", "kitchen fleet-token", "error unauthorized: unknown device or wrong token"},
		{"unknown device", "", "cellar k-token", "error unauthorized: unknown device or wrong token"},
		{"no token", "", "kitchen", "error unauthorized: no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// From addresses of their own: the failures must not throttle
			// the other cases.
			ws, _, err := gw.dialAuth("127.0.0."+fmt.Sprint(10+len(tt.name)), tt.bearer)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if got := attach(t, ws, tt.attach); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := gw.srv.Stats().AuthFailures; got != 4 {
		t.Errorf("failures counted: %d, want 4", got)
	}
}

// TestAuthThrottle: an address that keeps failing is refused with 429
// while another address still connects and authenticates at once.
func TestAuthThrottle(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.Listeners[0].Auth = AuthToken
	opts.Access.Tokens = []auth.TokenRule{tokenRule(t, "kitchen", "k-token")}
	opts.Access.Throttle = auth.ThrottleOptions{After: 5, Base: time.Minute, Max: time.Hour}
	gw := startGateway(t, opts)

	unauthorized, throttled := 0, 0
	for i := range 100 {
		ws, resp, err := gw.dialAuth("127.0.0.2", "")
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("attempt %d: %v (%v), want 429 with Retry-After", i, err, resp)
			}
			throttled++
			continue
		}
		got := attach(t, ws, fmt.Sprintf("kitchen guess-%d", i))
		ws.Close()
		if !strings.HasPrefix(got, "error unauthorized") {
			t.Fatalf("attempt %d: %q", i, got)
		}
		unauthorized++
	}
	if unauthorized > 5 || throttled < 95 {
		t.Errorf("%d guesses were checked and %d refused with 429; want at most 5 checked", unauthorized, throttled)
	}
	ws, _, err := gw.dialAuth("127.0.0.3", "")
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	defer ws.Close()
	if got := attach(t, ws, "kitchen k-token"); got != "attached kitchen" {
		t.Errorf("another address: %q", got)
	}
}

// TestSetAccessRevokes: new token rules apply at once; sessions whose
// token they no longer hold are closed with 1008, the others stay.
func TestSetAccessRevokes(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.Listeners[0].Auth = AuthToken
	keep, revoke := tokenRule(t, "kitchen", "k-token"), tokenRule(t, "garage", "g-token")
	opts.Access.Tokens = []auth.TokenRule{keep, revoke}
	gw := startGateway(t, opts)
	kitchen := gw.dial(t, "/", "echo")
	if got := attach(t, kitchen, "kitchen k-token"); got != "attached kitchen" {
		t.Fatal(got)
	}
	garage := gw.dial(t, "/", "echo")
	if got := attach(t, garage, "garage g-token"); got != "attached garage" {
		t.Fatal(got)
	}
	if err := gw.srv.SetAccess(Access{Tokens: []auth.TokenRule{keep, tokenRule(t, "cellar", "c-token")}}); err != nil {
		t.Fatal(err)
	}
	ce := readUntilClose(t, garage)
	wantCloseCode(t, ce, protocols.ClosePolicyViolation)
	writeText(t, kitchen, "still here")
	readText(t, kitchen, "still here")
	cellar := gw.dial(t, "/", "echo")
	if got := attach(t, cellar, "cellar c-token"); got != "attached cellar" {
		t.Errorf("a new token: %q", got)
	}
}

// TestAccessRules: a device publishes only where the rules let it and
// never on the gateway's own channels, except the result of a command it
// was given; a command the rules do not let it receive is refused.
func TestAccessRules(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.Access.ACL = []auth.ACLRule{{Devices: "esp32-*", Publish: []string{"telemetry", "state/#"}, Commands: []string{"set-*"}}}
	gw := startGateway(t, opts)
	ws := gw.dial(t, "/", "echo")
	if got := attach(t, ws, "esp32-1"); got != "attached esp32-1" {
		t.Fatal(got)
	}
	for _, tt := range []struct{ channel, want string }{
		{"telemetry", "ack telemetry"},
		{"state/door/open", "ack state/door/open"},
		{"debug", "nack debug forbidden: esp32-1 may not publish on \"debug\""},
		{"cmd/reboot/result", `nack cmd/reboot/result forbidden: "cmd/reboot/result" is the gateway's own channel`},
		{"status", `nack status forbidden: "status" is the gateway's own channel`},
	} {
		writeText(t, ws, "!publish "+tt.channel+" 1")
		readText(t, ws, tt.want)
	}
	if err := gw.router.Command(protocols.Command{Device: "esp32-1", ID: "c1", Name: "reboot"}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("a command the rules refuse: %v", err)
	}
	if err := gw.router.Command(protocols.Command{Device: "esp32-1", ID: "c2", Name: "set-interval"}); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "cmd set-interval")
	// Its result, once; a second is a forgery, as is a result for a
	// command it was not given.
	writeText(t, ws, `!publish cmd/set-interval/result {"id":"c1","ok":true}`)
	readText(t, ws, `nack cmd/set-interval/result forbidden: "cmd/set-interval/result" is the gateway's own channel`)
	writeText(t, ws, `!publish cmd/set-interval/result {"id":"c2","ok":true}`)
	readText(t, ws, "ack cmd/set-interval/result")
	writeText(t, ws, `!publish cmd/set-interval/result {"id":"c2","ok":true}`)
	readText(t, ws, `nack cmd/set-interval/result forbidden: "cmd/set-interval/result" is the gateway's own channel`)
	if s := gw.srv.Stats(); s.ForbiddenPublishes != 5 || s.ForbiddenCommands != 1 {
		t.Errorf("counted %d publishes and %d commands refused", s.ForbiddenPublishes, s.ForbiddenCommands)
	}
}

// testCA is a certificate authority made by openssl, independently of our
// code, that issues device certificates.
type testCA struct {
	t   *testing.T
	dir string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openssl is required in CI: %v", err)
		}
		t.Skip("openssl not installed; run `make test-deps`")
	}
	ca := &testCA{t: t, dir: t.TempDir()}
	ca.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=wsgate test CA", "-days", "2")
	conf := "[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\n" +
		"policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
	for name, data := range map[string]string{"ca.cnf": conf, "index.txt": "", "serial": "01\n"} {
		if err := os.WriteFile(filepath.Join(ca.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

func (ca *testCA) openssl(args ...string) {
	ca.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = ca.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		ca.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// issue makes a client certificate for cn, with a URI SAN when uri is set,
// valid from start to end (openssl's YYYYMMDDHHMMSSZ; "" for the next day).
func (ca *testCA) issue(name, cn, uri, start, end string) tls.Certificate {
	ca.t.Helper()
	ext := "[ext]\nextendedKeyUsage=clientAuth\n"
	if uri != "" {
		ext += "subjectAltName=URI:" + uri + "\n"
	}
	if err := os.WriteFile(filepath.Join(ca.dir, name+".ext"), []byte(ext), 0o600); err != nil {
		ca.t.Fatal(err)
	}
	ca.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+cn)
	args := []string{"ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
		"-in", name + ".csr", "-out", name + ".pem", "-extfile", name + ".ext", "-extensions", "ext"}
	if start != "" {
		args = append(args, "-startdate", start, "-enddate", end)
	} else {
		args = append(args, "-days", "1")
	}
	ca.openssl(args...)
	cert, err := tls.LoadX509KeyPair(filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+".key"))
	if err != nil {
		ca.t.Fatal(err)
	}
	return cert
}

// TestMTLS: an mtls listener takes devices whose certificate chains to
// its CA, as the device the certificate names (CN or SAN URI); expired
// certificates, those of another CA and sessions that attach as another
// device are refused.
func TestMTLS(t *testing.T) {
	t.Parallel()
	ca, other := newTestCA(t), newTestCA(t)
	kitchen := ca.issue("kitchen", "kitchen", "", "", "")
	spiffe := ca.issue("garage", "ignored-cn", "spiffe://home/device/garage", "", "")
	expired := ca.issue("old", "kitchen", "", "20200101000000Z", "20200102000000Z")
	stranger := other.issue("stranger", "kitchen", "", "", "")
	certFile, keyFile := selfSignedCert(t)

	start := func(from auth.IDFrom) *testGateway {
		opts := baseOptions()
		opts.Listeners[0] = Listener{Address: "127.0.0.1:0", Path: "/", TLSCert: certFile, TLSKey: keyFile,
			Auth: AuthMTLS, ClientCA: filepath.Join(ca.dir, "ca.pem"), DeviceIDFrom: from}
		return startGateway(t, opts)
	}
	dial := func(gw *testGateway, cert *tls.Certificate) (*websocket.Conn, *http.Response, error) {
		tc := &tls.Config{InsecureSkipVerify: true}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		d := websocket.Dialer{TLSClientConfig: tc, Subprotocols: []string{"echo"}, HandshakeTimeout: testWait}
		return d.Dial("wss://"+gw.addr+"/", nil)
	}
	byCN, bySAN := start(auth.IDFromCN), start(auth.IDFromSANURI)
	tests := []struct {
		name   string
		gw     *testGateway
		cert   *tls.Certificate
		attach string
		want   string // the attach answer, or the HTTP status
	}{
		{"CN", byCN, &kitchen, "kitchen", "attached kitchen"},
		{"SAN URI", bySAN, &spiffe, "garage", "attached garage"},
		{"another device than the certificate's", byCN, &kitchen, "garage", `error unauthorized: the client certificate is "kitchen"'s`},
		{"expired", byCN, &expired, "", "403"},
		{"unknown CA", byCN, &stranger, "", "403"},
		{"no certificate", byCN, nil, "", "403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, resp, err := dial(tt.gw, tt.cert)
			if tt.attach == "" {
				if err == nil {
					ws.Close()
					t.Fatal("connected")
				}
				if resp == nil || fmt.Sprint(resp.StatusCode) != tt.want {
					t.Fatalf("dial: %v (%v), want %s", err, resp, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			if got := attach(t, ws, tt.attach); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
