package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols/module"
)

type gatewayStub struct{}

func (gatewayStub) Stats() gateway.Stats { return gateway.Stats{} }

type bridgeStub struct{}

func (bridgeStub) Stats() mqttbridge.Stats { return mqttbridge.Stats{Connected: true, Synced: true} }

type routerStub struct{}

func (routerStub) Devices() []router.Device { return nil }

func (routerStub) Traffic() []router.DeviceTraffic { return nil }

// sources are components to report on, with two protocol routes in the
// manner of SHIP's that count the requests reaching them.
func sources(reached *atomic.Int32) Sources {
	count := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
	})
	return Sources{
		Gateway: gatewayStub{},
		Bridge:  bridgeStub{},
		Router:  routerStub{},
		Routes: []module.AdminRoute{
			{Pattern: "GET /ship/peers", Handler: count},
			{Pattern: "POST /ship/peers/{ski}/approve", Handler: count},
		},
	}
}

var discard = slog.New(slog.DiscardHandler)

// request is one request to the admin endpoints: host, when set, is its
// Host header; header its other headers.
type request struct {
	method, path, host string
	header             map[string]string
}

// do sends the request and returns the response with its body read.
func (rq request) do(t *testing.T, client *http.Client, baseURL string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(rq.method, baseURL+rq.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rq.host != "" {
		req.Host = rq.host
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// bearer adds the token to the headers h.
func bearer(token string, h map[string]string) map[string]string {
	h = maps.Clone(h)
	if h == nil {
		h = map[string]string{}
	}
	h["Authorization"] = "Bearer " + token
	return h
}

const (
	approve = "/ship/peers/ab12/approve"
	token   = "s3cret"
)

// challenge is the WWW-Authenticate header that comes with status.
func challenge(status int) string {
	if status == http.StatusUnauthorized {
		return `Bearer realm="wsgate"`
	}
	return ""
}

func TestProtections(t *testing.T) {
	t.Parallel()
	onLoopback := Options{Address: "127.0.0.1:9180"}
	withHosts := Options{Address: "127.0.0.1:9180", Hosts: []string{"Hub.Local", "[fd00::7]:9180"}}
	onName := Options{Address: "hub.local:9180"}
	onLANAddress := Options{Address: "192.168.1.20:9180"}
	withToken := Options{Address: "127.0.0.1:9180", Token: token}
	same := map[string]string{"Origin": "http://127.0.0.1:9180", "Sec-Fetch-Site": "same-origin"}
	tests := []struct {
		name    string
		opts    Options
		req     request
		want    int
		reached bool // whether the protocol route ran
	}{
		// Host (DNS rebinding): a page on evil.example whose name now
		// points at the hub sends Host: evil.example.
		{"foreign host", onLoopback, request{"GET", "/ship/peers", "evil.example:9180", nil}, 403, false},
		{"foreign host on /devices", onLoopback, request{"GET", "/devices", "evil.example:9180", nil}, 403, false},
		{"foreign host on /healthz", onLoopback, request{"GET", "/healthz", "evil.example", nil}, 403, false},
		{"foreign host, same origin", onLoopback, request{"POST", approve, "evil.example:9180",
			map[string]string{"Origin": "http://evil.example:9180", "Sec-Fetch-Site": "same-origin"}}, 403, false},
		{"127.0.0.1", onLoopback, request{"GET", "/ship/peers", "127.0.0.1:9180", nil}, 200, true},
		{"127.0.0.1 on /devices", onLoopback, request{"GET", "/devices", "127.0.0.1:9180", nil}, 200, false},
		{"other loopback IPv4", onLoopback, request{"GET", "/ship/peers", "127.8.9.10:9180", nil}, 200, true},
		{"localhost", onLoopback, request{"GET", "/ship/peers", "localhost:9180", nil}, 200, true},
		{"LOCALHOST without port", onLoopback, request{"GET", "/ship/peers", "LOCALHOST", nil}, 200, true},
		{"[::1]", onLoopback, request{"GET", "/ship/peers", "[::1]:9180", nil}, 200, true},
		{"[::1] without port", onLoopback, request{"GET", "/ship/peers", "[::1]", nil}, 200, true},
		{"IPv4-mapped loopback", onLoopback, request{"GET", "/ship/peers", "[::ffff:127.0.0.1]:9180", nil}, 200, true},
		{"IPv6 without brackets", onLoopback, request{"GET", "/ship/peers", "::1", nil}, 403, false},
		{"unclosed bracket", onLoopback, request{"GET", "/ship/peers", "[::1", nil}, 403, false},
		{"port only", onLoopback, request{"GET", "/ship/peers", ":9180", nil}, 403, false},
		{"localhost as a subdomain", onLoopback, request{"GET", "/ship/peers", "localhost.evil.example", nil}, 403, false},
		{"LAN IP, listening on loopback", onLoopback, request{"GET", "/ship/peers", "192.168.1.20:9180", nil}, 403, false},
		{"hub.local not configured", onLoopback, request{"GET", "/ship/peers", "hub.local:9180", nil}, 403, false},
		{"configured host", withHosts, request{"GET", "/ship/peers", "hub.local:9180", nil}, 200, true},
		{"configured host, other case", withHosts, request{"GET", "/ship/peers", "HUB.LOCAL", nil}, 200, true},
		{"configured IPv6 literal", withHosts, request{"GET", "/ship/peers", "[fd00:0::7]:9180", nil}, 200, true},
		{"subdomain of a configured host", withHosts, request{"GET", "/ship/peers", "x.hub.local", nil}, 403, false},
		{"the address's name", onName, request{"GET", "/ship/peers", "hub.local:9180", nil}, 200, true},
		{"the address's IP", onLANAddress, request{"GET", "/ship/peers", "192.168.1.20:9180", nil}, 200, true},
		{"the address's IP, IPv4-mapped", onLANAddress, request{"GET", "/ship/peers", "[::ffff:192.168.1.20]:9180", nil}, 200, true},
		{"another IP than the address's", onLANAddress, request{"GET", "/ship/peers", "192.168.1.21:9180", nil}, 403, false},
		{"loopback beside the address's IP", onLANAddress, request{"GET", "/ship/peers", "127.0.0.1:9180", nil}, 200, true},

		// Cross-site: a page on another site posts to the hub.
		{"cross-site by Origin", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Origin": "http://evil.example"}}, 403, false},
		{"cross-site by Sec-Fetch-Site", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, false},
		{"cross-site by both", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}}, 403, false},
		{"same-site", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Sec-Fetch-Site": "same-site"}}, 403, false},
		{"other port on the same host", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Origin": "http://127.0.0.1:3000"}}, 403, false},
		{"opaque origin", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Origin": "null"}}, 403, false},
		{"cross-site DELETE", onLoopback, request{"DELETE", "/ship/peers/ab12", "127.0.0.1:9180",
			map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, false},
		{"cross-site GET", onLoopback, request{"GET", "/ship/peers", "127.0.0.1:9180",
			map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}}, 200, true},
		{"same origin", onLoopback, request{"POST", approve, "127.0.0.1:9180", same}, 200, true},
		{"same origin by Origin alone", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Origin": "http://127.0.0.1:9180"}}, 200, true},
		{"typed into the address bar", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Sec-Fetch-Site": "none"}}, 200, true},
		{"not a browser", onLoopback, request{"POST", approve, "127.0.0.1:9180", nil}, 200, true},
		{"form", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 403, false},
		{"multipart form", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Content-Type": "multipart/form-data; boundary=x"}}, 403, false},
		{"text/plain", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Content-Type": " Text/Plain ; charset=utf-8"}}, 403, false},
		{"JSON", onLoopback, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Content-Type": "application/json"}}, 200, true},

		// Token: anyone else who can reach the address.
		{"token, same origin", withToken, request{"POST", approve, "127.0.0.1:9180", bearer(token, same)}, 200, true},
		{"token, not a browser", withToken, request{"POST", approve, "127.0.0.1:9180", bearer(token, nil)}, 200, true},
		{"token, lower-case scheme", withToken, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Authorization": "bearer " + token}}, 200, true},
		{"token after two spaces", withToken, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Authorization": "Bearer  " + token}}, 200, true},
		{"token on a GET", withToken, request{"GET", "/ship/peers", "127.0.0.1:9180", bearer(token, nil)}, 200, true},
		{"no token", withToken, request{"POST", approve, "127.0.0.1:9180", same}, 401, false},
		{"no token on a GET", withToken, request{"GET", "/ship/peers", "127.0.0.1:9180", nil}, 401, false},
		{"no token on /devices", withToken, request{"GET", "/devices", "127.0.0.1:9180", nil}, 401, false},
		{"no token on /metrics", withToken, request{"GET", "/metrics", "127.0.0.1:9180", nil}, 401, false},
		{"no token on an unknown path", withToken, request{"GET", "/nothing", "127.0.0.1:9180", nil}, 401, false},
		{"wrong token", withToken, request{"POST", approve, "127.0.0.1:9180", bearer("s3cre", same)}, 401, false},
		{"token with a suffix", withToken, request{"POST", approve, "127.0.0.1:9180", bearer(token+"x", same)}, 401, false},
		{"empty token", withToken, request{"POST", approve, "127.0.0.1:9180", bearer("", same)}, 401, false},
		{"token as Basic", withToken, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Authorization": "Basic " + token}}, 401, false},
		{"token as the whole header", withToken, request{"POST", approve, "127.0.0.1:9180",
			map[string]string{"Authorization": token}}, 401, false},
		{"/healthz without token", withToken, request{"GET", "/healthz", "127.0.0.1:9180", nil}, 200, false},
		{"/healthz HEAD without token", withToken, request{"HEAD", "/healthz", "127.0.0.1:9180", nil}, 200, false},
		{"/readyz without token", withToken, request{"GET", "/readyz", "127.0.0.1:9180", nil}, 200, false},
		{"POST /healthz without token", withToken, request{"POST", "/healthz", "127.0.0.1:9180", nil}, 401, false},
		{"/healthz/ without token", withToken, request{"GET", "/healthz/", "127.0.0.1:9180", nil}, 401, false},
		{"/healthz from a foreign host", withToken, request{"GET", "/healthz", "evil.example", nil}, 403, false},
		{"token from a foreign host", withToken, request{"GET", "/ship/peers", "evil.example", bearer(token, nil)}, 403, false},
		{"token, cross-site", withToken, request{"POST", approve, "127.0.0.1:9180",
			bearer(token, map[string]string{"Sec-Fetch-Site": "cross-site"})}, 403, false},
		{"token, form", withToken, request{"POST", approve, "127.0.0.1:9180",
			bearer(token, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})}, 403, false},

		// The status page: its files hold no data and load without the
		// token, which its script then sends; its data and the actions
		// it calls want the token like the rest.
		{"page without token", withToken, request{"GET", "/", "127.0.0.1:9180", nil}, 200, false},
		{"page script without token", withToken, request{"GET", "/ui/app.js", "127.0.0.1:9180", nil}, 200, false},
		{"missing page file without token", withToken, request{"GET", "/ui/secrets", "127.0.0.1:9180", nil}, 404, false},
		{"page from a foreign host", withToken, request{"GET", "/", "evil.example", nil}, 403, false},
		{"POST to the page", withToken, request{"POST", "/", "127.0.0.1:9180", same}, 401, false},
		{"status without token", withToken, request{"GET", "/status", "127.0.0.1:9180", nil}, 401, false},
		{"status with token", withToken, request{"GET", "/status", "127.0.0.1:9180", bearer(token, nil)}, 200, false},
		{"events without token", withToken, request{"GET", "/events", "127.0.0.1:9180", nil}, 401, false},
		{"status on loopback without a token set", onLoopback, request{"GET", "/status", "127.0.0.1:9180", nil}, 200, false},
		{"status from a foreign host", onLoopback, request{"GET", "/status", "evil.example", nil}, 403, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var reached atomic.Int32
			srv := httptest.NewServer(handler(tt.opts, sources(&reached), discard))
			defer srv.Close()
			resp, _ := tt.req.do(t, srv.Client(), srv.URL)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if got, want := resp.Header.Get("WWW-Authenticate"), challenge(tt.want); got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
			if got := reached.Load() > 0; got != tt.reached {
				t.Errorf("route reached: %v, want %v", got, tt.reached)
			}
		})
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	ok := func() []string { return nil }
	bad := func() []string { return []string{"config.toml:3: admin.address: not host:port"} }
	tests := []struct {
		name     string
		reload   func() []string
		req      request
		want     int
		wantBody string
		reloaded bool
	}{
		{"applied", ok, request{"POST", "/reload", "", bearer(token, nil)}, 200, `{"result":"ok"}`, true},
		{"problems", bad, request{"POST", "/reload", "", bearer(token, nil)}, 422,
			`{"error":"configuration not applied","problems":["config.toml:3: admin.address: not host:port"]}`, true},
		{"no token", ok, request{"POST", "/reload", "", nil}, 401, "", false},
		{"cross-site", ok, request{"POST", "/reload", "", bearer(token, map[string]string{"Sec-Fetch-Site": "cross-site"})}, 403, "", false},
		{"form", ok, request{"POST", "/reload", "", bearer(token, map[string]string{"Content-Type": "text/plain"})}, 403, "", false},
		{"GET", ok, request{"GET", "/reload", "", bearer(token, nil)}, 405, "", false},
		{"not served", nil, request{"POST", "/reload", "", bearer(token, nil)}, 404, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var reloaded atomic.Bool
			opts := Options{Address: "127.0.0.1:0", Token: token}
			if tt.reload != nil {
				opts.Reload = func() []string { reloaded.Store(true); return tt.reload() }
			}
			var reached atomic.Int32
			srv := httptest.NewServer(handler(opts, sources(&reached), discard))
			defer srv.Close()
			resp, body := tt.req.do(t, srv.Client(), srv.URL)
			if resp.StatusCode != tt.want || reloaded.Load() != tt.reloaded {
				t.Errorf("status %d, reloaded %v; want %d, %v", resp.StatusCode, reloaded.Load(), tt.want, tt.reloaded)
			}
			if tt.wantBody != "" && strings.TrimSpace(body) != tt.wantBody {
				t.Errorf("body %s, want %s", body, tt.wantBody)
			}
		})
	}
}

// TestAllInterfaces: a listener on every interface answers a LAN client
// that uses any of the hub's addresses, but still no foreign name.
func TestAllInterfaces(t *testing.T) {
	t.Parallel()
	hosts := []struct {
		host string
		want int
	}{
		{"192.168.1.20:9180", 200},
		{"[fd00::7]:9180", 200},
		{"127.0.0.1:9180", 200},
		{"localhost:9180", 200},
		{"evil.example:9180", 403},
		{"hub.local:9180", 403},
	}
	for _, address := range []string{":9180", "0.0.0.0:9180", "[::]:9180"} {
		for _, h := range hosts {
			t.Run(address+" "+h.host, func(t *testing.T) {
				t.Parallel()
				var reached atomic.Int32
				srv := httptest.NewServer(handler(Options{Address: address}, sources(&reached), discard))
				defer srv.Close()
				if resp, _ := (request{"GET", "/devices", h.host, nil}).do(t, srv.Client(), srv.URL); resp.StatusCode != h.want {
					t.Errorf("status %d, want %d", resp.StatusCode, h.want)
				}
			})
		}
	}
}

// TestRefusalMetrics: every refusal is counted by reason, including those
// whose log lines were held back.
func TestRefusalMetrics(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	srv := httptest.NewServer(handler(Options{Address: "127.0.0.1:9180", Token: token}, sources(&reached), discard))
	defer srv.Close()
	refuse := map[string]request{
		"host":       {"GET", "/devices", "evil.example", nil},
		"cross-site": {"POST", approve, "127.0.0.1:9180", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"token":      {"GET", "/devices", "127.0.0.1:9180", nil},
	}
	want := map[string]int{"host": 2 * logLines, "cross-site": 3, "token": 1}
	for reason, n := range want {
		for range n {
			if resp, _ := refuse[reason].do(t, srv.Client(), srv.URL); resp.StatusCode/100 != 4 {
				t.Fatalf("%s: status %d", reason, resp.StatusCode)
			}
		}
	}
	resp, body := request{"GET", "/metrics", "", bearer(token, nil)}.do(t, srv.Client(), srv.URL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	metrics := strings.Split(body, "\n")
	for reason, n := range want {
		line := fmt.Sprintf("wsgate_admin_refused_total{reason=%q} %d", reason, n)
		if !slices.Contains(metrics, line) {
			t.Errorf("no %q in /metrics", line)
		}
	}
}

// TestRefusalLogLimit drives the log's rate limit with a test clock.
func TestRefusalLogLimit(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rs := newRefusals(slog.New(slog.NewJSONHandler(&buf, nil)))
	rs.now = func() time.Time { return now }
	req := httptest.NewRequest("POST", approve, nil)

	type line struct {
		Reason     string
		Suppressed int
	}
	// lines returns the lines written since it was last called.
	lines := func() []line {
		var ls []line
		for s := bufio.NewScanner(&buf); s.Scan(); {
			var l line
			if err := json.Unmarshal(s.Bytes(), &l); err != nil {
				t.Fatalf("%s: %v", s.Bytes(), err)
			}
			ls = append(ls, l)
		}
		buf.Reset()
		return ls
	}
	steps := []struct {
		advance time.Duration
		reason  reason
		n       int
		want    []line
	}{
		{0, refusedHost, logLines, slices.Repeat([]line{{"host", 0}}, logLines)},
		{0, refusedHost, 5, nil},
		{0, refusedCrossSite, 1, []line{{"cross-site", 0}}}, // each reason has its own lines
		{logPeriod - time.Second, refusedHost, 3, nil},
		{time.Second, refusedHost, 1, []line{{"host", 8}}},
		{0, refusedHost, logLines - 1, slices.Repeat([]line{{"host", 0}}, logLines-1)},
		{0, refusedHost, 1, nil},
		{logPeriod, refusedHost, 1, []line{{"host", 1}}},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		for range s.n {
			rs.record(req, s.reason, "")
		}
		if got := lines(); !slices.Equal(got, s.want) {
			t.Errorf("step %d: lines %v, want %v", i, got, s.want)
		}
	}
	if got := rs.count[refusedHost].Load(); got != 30 {
		t.Errorf("%d host refusals counted, want 30", got)
	}
}

// syncBuffer is a log destination the test reads while the server may
// still write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestStart serves the protections on the real listener.
func TestStart(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	var reached atomic.Int32
	s, err := Start(Options{Address: "127.0.0.1:0", Token: token}, sources(&reached), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + s.Addr().String()
	origin := bearer(token, map[string]string{"Origin": base})
	tests := []struct {
		name    string
		req     request
		want    int
		reached int32 // requests that ran the protocol route so far
	}{
		{"cross-site", request{"POST", approve, "", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}}, 403, 0},
		{"same origin", request{"POST", approve, "", origin}, 200, 1},
		{"foreign host", request{"GET", "/ship/peers", "evil.example", nil}, 403, 1},
		{"no token", request{"GET", "/ship/peers", "", nil}, 401, 1},
		{"wrong token", request{"GET", "/ship/peers", "", map[string]string{"Authorization": "Bearer hunter2"}}, 401, 1},
		{"healthz", request{"GET", "/healthz", "", nil}, 200, 1},
	}
	for _, tt := range tests {
		resp, _ := tt.req.do(t, http.DefaultClient, base)
		if resp.StatusCode != tt.want || reached.Load() != tt.reached {
			t.Errorf("%s: status %d, route reached %d times; want %d, %d", tt.name, resp.StatusCode, reached.Load(), tt.want, tt.reached)
		}
	}

	// HTTP/1.0 needs no Host; such a request is refused too.
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /devices HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("HTTP/1.0 without Host: status %d, want 403", resp.StatusCode)
	}

	for _, reason := range []string{"reason=cross-site", "reason=host", "reason=token"} {
		if !strings.Contains(logs.String(), reason) {
			t.Errorf("no %s in the log:\n%s", reason, logs.String())
		}
	}
	for _, secret := range []string{token, "hunter2"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs.String())
		}
	}
}

// TestShutdownEndsEventStreams: an open status page does not hold the
// admin server's shutdown up to its deadline.
func TestShutdownEndsEventStreams(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	s, err := Start(Options{Address: "127.0.0.1:0", Token: token}, sources(&reached), discard)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("GET", "http://"+s.Addr().String()+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "event: snapshot\n" {
		t.Fatalf("the stream starts with %q, %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Errorf("the stream ended with %v, want its end", err)
	}
}
