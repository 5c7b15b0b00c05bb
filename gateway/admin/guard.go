package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/gateway/statuspage"
)

// guard refuses, before any route sees them, the requests a web page in
// the operator's browser can make against the admin address, whether
// cross-site or by rebinding a name it controls to it, and, when a token
// is set, the requests of whoever else can reach the address.
type guard struct {
	next    http.Handler
	hosts   hostPolicy
	csrf    *http.CrossOriginProtection
	token   *[sha256.Size]byte // the token's digest; nil when none is required
	refused *refusals
}

func newGuard(opts Options, next http.Handler, refused *refusals) *guard {
	g := &guard{
		next:    next,
		hosts:   newHostPolicy(opts.Address, opts.Hosts),
		csrf:    http.NewCrossOriginProtection(),
		refused: refused,
	}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		g.token = &sum
	}
	return g
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.hosts.allows(r.Host) {
		g.refused.record(r, refusedHost, "")
		http.Error(w, fmt.Sprintf("host %q is not an address of these endpoints; if it should be, list it in admin.hosts", r.Host), http.StatusForbidden)
		return
	}
	if err := crossSite(g.csrf, r); err != nil {
		g.refused.record(r, refusedCrossSite, err.Error())
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if g.token != nil && !isProbe(r) && !statuspage.IsAsset(r) && !g.authorized(r) {
		detail := "no bearer token"
		if r.Header.Get("Authorization") != "" {
			detail = "wrong bearer token"
		}
		g.refused.record(r, refusedToken, detail)
		w.Header().Set("WWW-Authenticate", `Bearer realm="wsgate"`)
		http.Error(w, "these endpoints require the admin token: Authorization: Bearer <token>", http.StatusUnauthorized)
		return
	}
	g.next.ServeHTTP(w, r)
}

// isProbe reports whether r is a health or readiness probe, which load
// balancers and systemd make without credentials.
func isProbe(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
}

// authorized reports whether r carries the token. Digests are compared,
// in constant time, so that neither how long the comparison takes nor
// whether it stops at a length mismatch tells a guesser anything.
func (g *guard) authorized(r *http.Request) bool {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], g.token[:]) == 1
}

// hostPolicy is the Host headers the endpoints answer to. A page that
// rebinds a name it controls to the admin address reaches the listener
// with that name as its Host, so names are accepted only when listed.
type hostPolicy struct {
	names map[string]bool // lower case; IP literals in netip.Addr form
	// anyIP is set when the listener is on every interface: a client on
	// the LAN may then use any of the hub's addresses, and an IP literal
	// cannot be rebound.
	anyIP bool
}

func newHostPolicy(address string, hosts []string) hostPolicy {
	p := hostPolicy{names: map[string]bool{"localhost": true}}
	for _, h := range hosts {
		p.add(h)
	}
	// An address that does not parse adds nothing: Start fails on it,
	// and Handler alone then answers loopback and Hosts only.
	if host, _, err := net.SplitHostPort(address); err == nil {
		if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
			p.anyIP = true
		} else {
			p.add(host)
		}
	}
	return p
}

// add accepts a host name or IP literal, as in Hosts or an address; a
// port or brackets are tolerated.
func (p hostPolicy) add(host string) {
	if _, err := netip.ParseAddr(host); err != nil { // else a bare IPv6 literal
		var ok bool
		if host, ok = hostname(host); !ok {
			return
		}
	}
	p.names[canonical(host)] = true
}

func (p hostPolicy) allows(hostHeader string) bool {
	host, ok := hostname(hostHeader)
	if !ok {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil && (p.anyIP || ip.Unmap().IsLoopback()) {
		return true
	}
	return p.names[canonical(host)]
}

// canonical makes equal hosts equal strings: names in lower case, IP
// literals in one spelling.
func canonical(host string) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(host)
}

// hostname is the host of a Host header, without its port and an IPv6
// literal without its brackets; ok is false when there is none (an
// HTTP/1.0 request) or when it is malformed.
func hostname(hostport string) (host string, ok bool) {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h, h != ""
	}
	if h, found := strings.CutPrefix(hostport, "["); found {
		h, found = strings.CutSuffix(h, "]")
		return h, found && h != ""
	}
	// Without brackets, a colon is a port or a malformed IPv6 literal.
	return hostport, hostport != "" && !strings.Contains(hostport, ":")
}

var errFormBody = errors.New("form and text/plain bodies are refused: no admin route takes a body, and a web page on another site can send one without asking first")

// crossSite refuses state-changing requests that a browser sent on behalf
// of another site. CrossOriginProtection lets through requests carrying
// neither Sec-Fetch-Site nor Origin, as the wsgate subcommands and curl
// send them; of those, a body that a plain HTML form could have sent is
// refused too, in case a browser old enough to send neither posts one.
func crossSite(csrf *http.CrossOriginProtection, r *http.Request) error {
	if err := csrf.Check(r); err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	mediaType, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	switch strings.ToLower(strings.TrimSpace(mediaType)) {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return errFormBody
	}
	return nil
}

// reason is why a request was refused: the label of
// wsgate_admin_refused_total and a field of the log line.
type reason int

const (
	refusedHost reason = iota
	refusedCrossSite
	refusedToken
	reasons // how many there are
)

func (r reason) String() string {
	return [...]string{"host", "cross-site", "token"}[r]
}

// Refusals are logged at most logLines times per logPeriod for each
// reason, so that a flood of bad requests cannot fill a disk; the
// counter counts them all.
const (
	logLines  = 10
	logPeriod = time.Minute
)

// refusals counts refused requests and logs them, rate-limited.
type refusals struct {
	count [reasons]atomic.Uint64
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	window [reasons]struct {
		start      time.Time
		written    int // lines since start
		suppressed int // lines not written since the last one that was
	}
}

func newRefusals(log *slog.Logger) *refusals {
	return &refusals{log: log, now: time.Now}
}

// record counts a refusal and logs it unless this reason has used up its
// lines for the period; the first line written after some were held back
// says how many.
func (rs *refusals) record(r *http.Request, why reason, detail string) {
	rs.count[why].Add(1)
	rs.mu.Lock()
	win := &rs.window[why]
	if now := rs.now(); now.Sub(win.start) >= logPeriod {
		win.start, win.written = now, 0
	}
	if win.written == logLines {
		win.suppressed++
		rs.mu.Unlock()
		return
	}
	win.written++
	suppressed := win.suppressed
	win.suppressed = 0
	rs.mu.Unlock()

	attrs := []slog.Attr{
		slog.String("reason", why.String()),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("host", r.Host),
		slog.String("remote", r.RemoteAddr),
	}
	if detail != "" {
		attrs = append(attrs, slog.String("detail", detail))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	rs.log.LogAttrs(r.Context(), slog.LevelInfo, "admin request refused", attrs...)
}
