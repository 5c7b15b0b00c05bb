package gateway

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

// headerLine is one request header line; a request may repeat a name.
type headerLine struct{ name, value string }

// rawRequest is an opening handshake written byte for byte by the test, so
// that it can be as malformed as a case needs.
type rawRequest struct {
	method, path, proto string
	headers             []headerLine
}

// upgradeRequest is a valid handshake offering the echo protocol.
func upgradeRequest() rawRequest {
	return rawRequest{method: "GET", path: "/", proto: "HTTP/1.1", headers: []headerLine{
		{"Host", "gw.example"},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-WebSocket-Version", "13"},
		{"Sec-WebSocket-Key", sampleKey},
		{"Sec-WebSocket-Protocol", "echo"},
	}}
}

// set replaces every line of name with one line per value (none deletes).
func (r rawRequest) set(name string, values ...string) rawRequest {
	var hs []headerLine
	done := false
	for _, h := range r.headers {
		if !strings.EqualFold(h.name, name) {
			hs = append(hs, h)
			continue
		}
		if !done {
			for _, v := range values {
				hs = append(hs, headerLine{name, v})
			}
			done = true
		}
	}
	if !done {
		for _, v := range values {
			hs = append(hs, headerLine{name, v})
		}
	}
	r.headers = hs
	return r
}

func (r rawRequest) with(f func(*rawRequest)) rawRequest { f(&r); return r }

func (r rawRequest) String() string {
	var b strings.Builder
	b.WriteString(r.method + " " + r.path + " " + r.proto + "\r\n")
	for _, h := range r.headers {
		b.WriteString(h.name + ": " + h.value + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// offered returns the subprotocols r offers, split the simple way.
func (r rawRequest) offered() []string {
	var names []string
	for _, h := range r.headers {
		if strings.EqualFold(h.name, "Sec-WebSocket-Protocol") {
			for e := range strings.SplitSeq(h.value, ",") {
				if e = strings.TrimSpace(e); e != "" {
					names = append(names, e)
				}
			}
		}
	}
	return names
}

// roundTrip writes raw over a fresh TCP connection and reads the response
// and its body (none after a 101).
func roundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	rc := dialRaw(t, addr)
	defer rc.nc.Close()
	if _, err := io.WriteString(rc.nc, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, ""
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// acceptFor computes Sec-WebSocket-Accept as RFC 6455 section 4.2.2 says.
func acceptFor(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

type handshakeCase struct {
	name     string
	req      rawRequest
	status   int
	header   map[string]string // headers the response must carry, exactly
	protocol string            // on 101: the one Sec-WebSocket-Protocol, "" for none
	deflate  bool              // on 101: permessage-deflate was negotiated
	bodyHas  []string
	bodyLack []string
}

// checkResponse asserts what every handshake case asks of its response.
func checkResponse(t *testing.T, tt handshakeCase, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode != tt.status {
		t.Fatalf("status %s, want %d; body %q", resp.Status, tt.status, body)
	}
	for name, want := range tt.header {
		if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want exactly %q", name, got, want)
		}
	}
	for _, s := range tt.bodyHas {
		if !strings.Contains(body, s) {
			t.Errorf("body %q does not name %q", body, s)
		}
	}
	for _, s := range tt.bodyLack {
		if strings.Contains(body, s) {
			t.Errorf("body %q names %q", body, s)
		}
	}
	protos := resp.Header.Values("Sec-WebSocket-Protocol")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		if len(protos) > 0 || resp.Header.Get("Sec-WebSocket-Accept") != "" {
			t.Errorf("refusal carries handshake headers: %v", resp.Header)
		}
		return
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Errorf("101 without Upgrade/Connection: %v", resp.Header)
	}
	var key string
	for _, h := range tt.req.headers {
		if strings.EqualFold(h.name, "Sec-WebSocket-Key") {
			key = h.value
		}
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != acceptFor(key) {
		t.Errorf("Sec-WebSocket-Accept %q, want %q", got, acceptFor(key))
	}
	exts := resp.Header.Values("Sec-WebSocket-Extensions")
	if tt.deflate != (len(exts) == 1 && strings.HasPrefix(exts[0], "permessage-deflate")) || len(exts) > 1 {
		t.Errorf("Sec-WebSocket-Extensions %q, want deflate %v", exts, tt.deflate)
	}
	switch {
	case tt.protocol == "" && len(protos) != 0:
		t.Errorf("Sec-WebSocket-Protocol %q, want none", protos)
	case tt.protocol != "" && (len(protos) != 1 || protos[0] != tt.protocol):
		t.Errorf("Sec-WebSocket-Protocol %q, want exactly one %q", protos, tt.protocol)
	case len(protos) == 1 && !slices.Contains(tt.req.offered(), protos[0]):
		t.Errorf("Sec-WebSocket-Protocol %q was not offered (%q)", protos[0], tt.req.offered())
	}
}

// TestHandshake sends opening handshakes, valid and not, to a real server
// over TCP and checks the status line and the headers that matter.
func TestHandshake(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.Listeners = []Listener{
		{Address: "127.0.0.1:0", Path: "/"},
		{Address: "127.0.0.1:0", Path: "/fallback", Fallback: "echo"},
		{Address: "127.0.0.1:0", Path: "/beta-only", Protocols: []string{"beta"}},
		{Address: "127.0.0.1:0", Path: "/deflate", Compression: true},
	}
	gw := startGateway(t, opts, "echo", "alpha", "beta")
	if n := len(gw.srv.Addrs()); n != 1 {
		t.Fatalf("listeners on one address bound %d ports", n)
	}

	ok := upgradeRequest()
	path := func(p string) func(*rawRequest) { return func(r *rawRequest) { r.path = p } }
	tests := []handshakeCase{
		{name: "valid", req: ok, status: 101, protocol: "echo",
			header: map[string]string{"Sec-WebSocket-Accept": sampleAccept}},

		// Request line.
		{name: "POST", req: ok.with(func(r *rawRequest) { r.method = "POST" }), status: 405,
			header: map[string]string{"Allow": "GET"}},
		{name: "PUT", req: ok.with(func(r *rawRequest) { r.method = "PUT" }), status: 405,
			header: map[string]string{"Allow": "GET"}},
		{name: "HTTP/1.0", req: ok.with(func(r *rawRequest) { r.proto = "HTTP/1.0" }), status: 400},

		// Upgrade and Connection.
		{name: "no Upgrade", req: ok.set("Upgrade"), status: 400},
		{name: "Upgrade h2c", req: ok.set("Upgrade", "h2c"), status: 400},
		{name: "Upgrade mixed case", req: ok.set("Upgrade", "WebSocket"), status: 101, protocol: "echo"},
		{name: "Upgrade list", req: ok.set("Upgrade", "h2c, websocket"), status: 101, protocol: "echo"},
		{name: "Upgrade twice", req: ok.set("Upgrade", "websocket", "websocket"), status: 101, protocol: "echo"},
		{name: "no Connection", req: ok.set("Connection"), status: 400},
		{name: "Connection keep-alive only", req: ok.set("Connection", "keep-alive"), status: 400},
		{name: "Connection list", req: ok.set("Connection", "keep-alive, Upgrade"), status: 101, protocol: "echo"},
		{name: "Connection upper case", req: ok.set("Connection", "UPGRADE"), status: 101, protocol: "echo"},
		{name: "Connection on two lines", req: ok.set("Connection", "keep-alive", "upgrade"), status: 101, protocol: "echo"},

		// Sec-WebSocket-Version.
		{name: "no version", req: ok.set("Sec-WebSocket-Version"), status: 400},
		{name: "version list with 13", req: ok.set("Sec-WebSocket-Version", "13, 8"), status: 101, protocol: "echo"},
		{name: "version list without 13", req: ok.set("Sec-WebSocket-Version", "8, 7"), status: 426,
			header: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "version 8", req: ok.set("Sec-WebSocket-Version", "8"), status: 426,
			header: map[string]string{"Sec-WebSocket-Version": "13"}},
		{name: "versions on two lines with 13", req: ok.set("Sec-WebSocket-Version", "8", "13"), status: 101, protocol: "echo"},
		{name: "versions on two lines without 13", req: ok.set("Sec-WebSocket-Version", "8", "7"), status: 426,
			header: map[string]string{"Sec-WebSocket-Version": "13"}},

		// Sec-WebSocket-Key.
		{name: "no key", req: ok.set("Sec-WebSocket-Key"), status: 400},
		{name: "key not base64", req: ok.set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!!!"), status: 400},
		{name: "key of 15 bytes", req: ok.set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"), status: 400},
		{name: "key of 17 bytes", req: ok.set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAA="), status: 400},
		{name: "key of 18 bytes", req: ok.set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAA"), status: 400},
		{name: "key with stray padding bits", req: ok.set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="), status: 400},
		{name: "key twice, same", req: ok.set("Sec-WebSocket-Key", sampleKey, sampleKey), status: 400},
		{name: "two different keys", req: ok.set("Sec-WebSocket-Key", sampleKey, "AAAAAAAAAAAAAAAAAAAAAA=="), status: 400},
		{name: "another valid key", req: ok.set("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4PEA=="), status: 101, protocol: "echo"},

		// Other duplicates.
		{name: "two Host headers", req: ok.set("Host", "gw.example", "evil.example"), status: 400},

		// Sec-WebSocket-Protocol.
		{name: "subprotocol not a token", req: ok.set("Sec-WebSocket-Protocol", "ec/ho"), status: 400},
		{name: "subprotocol with a space", req: ok.set("Sec-WebSocket-Protocol", "echo, al pha"), status: 400},
		{name: "quoted subprotocol", req: ok.set("Sec-WebSocket-Protocol", `"echo"`), status: 400},
		{name: "no subprotocol, no fallback", req: ok.set("Sec-WebSocket-Protocol"), status: 400,
			bodyHas: []string{"echo, alpha, beta"}},
		{name: "empty subprotocol header, no fallback", req: ok.set("Sec-WebSocket-Protocol", ""), status: 400,
			bodyHas: []string{"echo, alpha, beta"}},
		{name: "no subprotocol, fallback", req: ok.set("Sec-WebSocket-Protocol").with(path("/fallback")), status: 101},
		{name: "empty list, fallback", req: ok.set("Sec-WebSocket-Protocol", " , ").with(path("/fallback")), status: 101},
		{name: "unknown subprotocol, fallback", req: ok.set("Sec-WebSocket-Protocol", "mqtt").with(path("/fallback")),
			status: 400, bodyHas: []string{"echo, alpha, beta"}},
		{name: "unknown subprotocol", req: ok.set("Sec-WebSocket-Protocol", "mqtt"), status: 400,
			bodyHas: []string{"echo, alpha, beta"}},
		{name: "names compare exactly", req: ok.set("Sec-WebSocket-Protocol", "ECHO"), status: 400},
		{name: "offer on several lines", req: ok.set("Sec-WebSocket-Protocol", "mqtt", "beta, alpha"), status: 101, protocol: "beta"},
		{name: "repeated names", req: ok.set("Sec-WebSocket-Protocol", "alpha, alpha", "alpha"), status: 101, protocol: "alpha"},
		{name: "empty elements", req: ok.set("Sec-WebSocket-Protocol", ", ,alpha ,"), status: 101, protocol: "alpha"},
		{name: "restricted path refuses others", req: ok.set("Sec-WebSocket-Protocol", "echo, alpha").with(path("/beta-only")),
			status: 400, bodyHas: []string{"beta"}, bodyLack: []string{"echo", "alpha"}},
		{name: "restricted path serves its own", req: ok.set("Sec-WebSocket-Protocol", "echo, beta").with(path("/beta-only")),
			status: 101, protocol: "beta"},

		// Sec-WebSocket-Extensions: only what was negotiated is echoed.
		{name: "deflate asked, not enabled", req: ok.set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
			status: 101, protocol: "echo"},
		{name: "deflate asked and enabled", req: ok.set("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits").with(path("/deflate")),
			status: 101, protocol: "echo", deflate: true},
		{name: "unknown extension", req: ok.set("Sec-WebSocket-Extensions", "x-webkit-deflate-frame").with(path("/deflate")),
			status: 101, protocol: "echo"},

		// Origin, with no AllowedOrigins configured.
		{name: "same-host origin", req: ok.set("Origin", "http://gw.example"), status: 101, protocol: "echo"},
		{name: "same-host origin, other scheme and case", req: ok.set("Origin", "https://GW.example"), status: 101, protocol: "echo"},
		{name: "foreign origin", req: ok.set("Origin", "http://evil.example"), status: 403},
		{name: "same host, other port", req: ok.set("Origin", "http://gw.example:8080"), status: 403},
		{name: "opaque origin", req: ok.set("Origin", "null"), status: 403},
		{name: "conflicting origins", req: ok.set("Origin", "http://gw.example", "http://evil.example"), status: 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := roundTrip(t, gw.addr, tt.req.String())
			checkResponse(t, tt, resp, body)
		})
	}
}

// TestHandshakeAllowedOrigins checks the configured Origin list.
func TestHandshakeAllowedOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		allowed []string
		origin  string // "" sends none
		status  int
	}{
		{"listed", []string{"https://app.example", "https://other.example"}, "https://other.example", 101},
		{"not listed", []string{"https://app.example"}, "https://evil.example", 403},
		{"same host must be listed too", []string{"https://app.example"}, "http://gw.example", 403},
		{"no origin", []string{"https://app.example"}, "", 101},
		{"star allows any", []string{"*"}, "https://anything.example", 101},
		{"star allows opaque", []string{"*"}, "null", 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions()
			opts.AllowedOrigins = tt.allowed
			gw := startGateway(t, opts)
			req := upgradeRequest()
			if tt.origin != "" {
				req = req.set("Origin", tt.origin)
			}
			want := handshakeCase{req: req, status: tt.status}
			if tt.status == 101 {
				want.protocol = "echo"
			}
			resp, body := roundTrip(t, gw.addr, req.String())
			checkResponse(t, want, resp, body)
		})
	}
}

// TestHandshakePolicy checks that the policy decides whose order wins.
func TestHandshakePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy protocols.Policy
		offer  string
		want   string
	}{
		{protocols.PolicyClient, "beta, alpha", "beta"},
		{protocols.PolicyServer, "beta, alpha", "alpha"},
		{protocols.PolicyClient, "mqtt, alpha, beta", "alpha"},
		{protocols.PolicyServer, "mqtt, beta", "beta"},
		{"", "beta, alpha", "beta"}, // the default is the client's order
	}
	for _, tt := range tests {
		t.Run(string(tt.policy)+" "+tt.offer, func(t *testing.T) {
			t.Parallel()
			opts := baseOptions()
			opts.Policy = tt.policy
			gw := startGateway(t, opts, "alpha", "beta")
			req := upgradeRequest().set("Sec-WebSocket-Protocol", tt.offer)
			resp, body := roundTrip(t, gw.addr, req.String())
			checkResponse(t, handshakeCase{req: req, status: 101, protocol: tt.want}, resp, body)
		})
	}
}

// FuzzCheckHandshake feeds checkHandshake requests parsed from fuzzed bytes.
// It must not panic, and whatever it accepts must be a GET over HTTP/1.1 or
// later that asks for websocket, lists version 13 and carries exactly one
// key that decodes to 16 bytes, and the offer it returns must be tokens the
// client sent.
func FuzzCheckHandshake(f *testing.F) {
	f.Add("GET", "HTTP/1.1", "websocket", "Upgrade", "13", sampleKey, "echo, done", "")
	f.Add("GET", "HTTP/1.1", "WebSocket", "keep-alive, upgrade", "8, 13", sampleKey, "", "Sec-WebSocket-Protocol: ship\r\n")
	f.Add("GET", "HTTP/1.0", "websocket", "Upgrade", "13", sampleKey, "echo", "")
	f.Add("POST", "HTTP/1.1", "websocket", "Upgrade", "13", sampleKey, "echo", "")
	f.Add("GET", "HTTP/1.1", "websocket", "Upgrade", "13", sampleKey, "echo", "Sec-WebSocket-Key: "+sampleKey+"\r\n")
	f.Add("GET", "HTTP/1.1", "websocket", "Upgrade", "13", "AAAAAAAAAAAAAAAAAAAAAA==", "a/b", "")
	f.Fuzz(func(t *testing.T, method, proto, upgrade, connection, version, key, offer, extra string) {
		raw := method + " /ws " + proto + "\r\nHost: gw.example\r\n" +
			"Upgrade: " + upgrade + "\r\nConnection: " + connection + "\r\n" +
			"Sec-WebSocket-Version: " + version + "\r\nSec-WebSocket-Key: " + key + "\r\n" +
			"Sec-WebSocket-Protocol: " + offer + "\r\n" + extra
		if extra != "" && !strings.HasSuffix(extra, "\r\n") {
			raw += "\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			return
		}
		offered, herr := checkHandshake(r)
		if herr != nil {
			switch herr.Status {
			case http.StatusMethodNotAllowed:
				if herr.Header.Get("Allow") != "GET" {
					t.Fatalf("405 without Allow: GET: %+v", herr)
				}
			case http.StatusUpgradeRequired:
				if herr.Header.Get("Sec-WebSocket-Version") != "13" {
					t.Fatalf("426 without Sec-WebSocket-Version: 13: %+v", herr)
				}
			case http.StatusBadRequest:
			default:
				t.Fatalf("unexpected refusal %+v", herr)
			}
			return
		}
		if r.Method != http.MethodGet || !r.ProtoAtLeast(1, 1) {
			t.Fatalf("accepted %s %s", r.Method, r.Proto)
		}
		if !listHas(r.Header.Values("Upgrade"), "websocket") || !listHas(r.Header.Values("Connection"), "upgrade") {
			t.Fatalf("accepted without Upgrade/Connection: %q", r.Header)
		}
		if !listHas(r.Header.Values("Sec-WebSocket-Version"), "13") {
			t.Fatalf("accepted versions %q", r.Header.Values("Sec-WebSocket-Version"))
		}
		keys := r.Header.Values("Sec-WebSocket-Key")
		if len(keys) != 1 {
			t.Fatalf("accepted keys %q", keys)
		}
		if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(raw) != 16 {
			t.Fatalf("accepted key %q: %d bytes, %v", keys[0], len(raw), err)
		}
		sent := r.Header.Values("Sec-WebSocket-Protocol")
		for i, name := range offered {
			if !protocols.IsToken(name) || !listHas(sent, name) || slices.Index(offered, name) != i {
				t.Fatalf("offer %q from %q", offered, sent)
			}
		}
	})
}

// listHas reports whether some comma-separated element of values equals
// want, ignoring case and surrounding spaces and tabs.
func listHas(values []string, want string) bool {
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if strings.EqualFold(strings.Trim(e, " \t"), want) {
				return true
			}
		}
	}
	return false
}
