package protocols_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

// fakeProtocol is a Protocol that only has a name; negotiation never starts
// sessions.
type fakeProtocol struct{ name string }

func (p *fakeProtocol) Name() string { return p.name }

func (p *fakeProtocol) NewSession(context.Context, protocols.SessionInfo, protocols.Outlet) (protocols.Session, error) {
	return nil, errors.New("fake protocol has no sessions")
}

// newRegistry builds a registry with the server order and registers the
// names in registered (origin "builtin").
func newRegistry(t *testing.T, order, registered []string) *protocols.Registry {
	t.Helper()
	r, err := protocols.NewRegistry(order)
	if err != nil {
		t.Fatalf("NewRegistry(%q): %v", order, err)
	}
	for _, name := range registered {
		if err := r.Register(&fakeProtocol{name}, "builtin"); err != nil {
			t.Fatalf("Register(%q): %v", name, err)
		}
	}
	return r
}

// negotiate parses the header values and negotiates; it returns the selected
// name, or the error.
func negotiate(t *testing.T, r *protocols.Registry, values []string, n protocols.Negotiation) (string, error) {
	t.Helper()
	offered, err := protocols.ParseOffer(values)
	if err != nil {
		return "", err
	}
	p, err := r.Negotiate(protocols.Handshake{Offered: offered}, n)
	if err != nil {
		if p != nil {
			t.Errorf("Negotiate returned protocol %q with error %v", p.Name(), err)
		}
		return "", err
	}
	if p == nil {
		t.Fatalf("Negotiate returned neither a protocol nor an error")
	}
	return p.Name(), nil
}

func TestNegotiate(t *testing.T) {
	t.Parallel()
	both := []string{"done", "ship"}
	client := protocols.Negotiation{Policy: protocols.PolicyClient}
	server := protocols.Negotiation{Policy: protocols.PolicyServer}
	with := func(n protocols.Negotiation, allowed []string, fallback string) protocols.Negotiation {
		n.Allowed, n.Fallback = allowed, fallback
		return n
	}
	const noMatch = "" // want: ErrNoSubprotocol
	tests := []struct {
		name       string
		order      []string // server order: the enabled protocols
		registered []string // implementations present
		values     []string // Sec-WebSocket-Protocol header lines
		n          protocols.Negotiation
		want       string // selected name, or noMatch
		wantParse  bool   // the header is malformed: ParseOffer fails
	}{
		// The seed's example: "ship, done" in one header, both registered.
		{name: "seed client policy", order: both, registered: both, values: []string{"ship, done"}, n: client, want: "ship"},
		{name: "seed server policy", order: []string{"done", "ship"}, registered: both, values: []string{"ship, done"}, n: server, want: "done"},
		{name: "seed server policy other order", order: []string{"ship", "done"}, registered: both, values: []string{"ship, done"}, n: server, want: "ship"},
		{name: "seed client policy any server order", order: []string{"done", "ship"}, registered: both, values: []string{"ship, done"}, n: client, want: "ship"},
		{name: "empty policy is client", order: []string{"done", "ship"}, registered: both, values: []string{"ship, done"}, n: protocols.Negotiation{}, want: "ship"},

		// Policies over a mixed offer.
		{name: "client skips unknown", order: both, registered: both, values: []string{"mqtt, done, ship"}, n: client, want: "done"},
		{name: "server skips unknown", order: []string{"ship", "done"}, registered: both, values: []string{"mqtt, done, ship"}, n: server, want: "ship"},
		{name: "client one offered", order: both, registered: both, values: []string{"ship"}, n: client, want: "ship"},
		{name: "server one offered", order: both, registered: both, values: []string{"ship"}, n: server, want: "ship"},

		// Header shapes.
		{name: "several header lines client", order: both, registered: both, values: []string{"ship", "done"}, n: client, want: "ship"},
		{name: "several header lines server", order: both, registered: both, values: []string{"ship", "done"}, n: server, want: "done"},
		{name: "duplicates client", order: both, registered: both, values: []string{"ship, ship, done", "ship"}, n: client, want: "ship"},
		{name: "duplicates server", order: both, registered: both, values: []string{"ship, ship, done, done"}, n: server, want: "done"},
		{name: "whitespace and tabs", order: both, registered: both, values: []string{"\t ship\t, \tdone "}, n: client, want: "ship"},
		{name: "empty tokens", order: both, registered: both, values: []string{",,done,"}, n: client, want: "done"},
		{name: "empty tokens server", order: both, registered: both, values: []string{",ship,,", ",done"}, n: server, want: "done"},
		{name: "invalid token", order: both, registered: both, values: []string{"done, sh ip"}, n: client, wantParse: true},
		{name: "invalid token in second line", order: both, registered: both, values: []string{"done", "ship/2"}, n: server, wantParse: true},

		// Names compare exactly.
		{name: "upper case does not match", order: both, registered: both, values: []string{"DONE"}, n: client, want: noMatch},
		{name: "mixed case does not match server", order: both, registered: both, values: []string{"Done, SHIP"}, n: server, want: noMatch},
		{name: "exact name after other case", order: both, registered: both, values: []string{"DONE, Ship, done"}, n: client, want: "done"},
		{name: "prefix does not match", order: both, registered: both, values: []string{"don, doneX, shi"}, n: client, want: noMatch},

		// Unknown, disabled and absent protocols.
		{name: "unknown only client", order: both, registered: both, values: []string{"mqtt, stomp"}, n: client, want: noMatch},
		{name: "unknown only server", order: both, registered: both, values: []string{"mqtt"}, n: server, want: noMatch},
		{name: "registered not enabled client", order: []string{"done"}, registered: both, values: []string{"ship"}, n: client, want: noMatch},
		{name: "registered not enabled server", order: []string{"done"}, registered: both, values: []string{"ship"}, n: server, want: noMatch},
		{name: "registered not enabled skipped", order: []string{"done"}, registered: both, values: []string{"ship, done"}, n: client, want: "done"},
		{name: "enabled not registered skipped client", order: both, registered: []string{"done"}, values: []string{"ship, done"}, n: client, want: "done"},
		{name: "enabled not registered skipped server", order: []string{"ship", "done"}, registered: []string{"done"}, values: []string{"ship, done"}, n: server, want: "done"},
		{name: "enabled not registered alone", order: both, registered: []string{"done"}, values: []string{"ship"}, n: client, want: noMatch},
		{name: "nothing enabled", order: nil, registered: both, values: []string{"done, ship"}, n: client, want: noMatch},

		// Listener restriction.
		{name: "allowed picks the allowed one client", order: both, registered: both, values: []string{"ship, done"}, n: with(client, []string{"done"}, ""), want: "done"},
		{name: "allowed picks the allowed one server", order: []string{"done", "ship"}, registered: both, values: []string{"ship, done"}, n: with(server, []string{"ship"}, ""), want: "ship"},
		{name: "allowed excludes every offer", order: both, registered: both, values: []string{"ship"}, n: with(client, []string{"done"}, ""), want: noMatch},
		{name: "allowed does not enable", order: []string{"done"}, registered: both, values: []string{"ship"}, n: with(client, []string{"ship"}, ""), want: noMatch},
		{name: "allowed both keeps policy", order: both, registered: both, values: []string{"ship, done"}, n: with(server, both, ""), want: "done"},

		// Fallback: only for a client that offers nothing.
		{name: "no offer no fallback", order: both, registered: both, values: nil, n: client, want: noMatch},
		{name: "no offer fallback", order: both, registered: both, values: nil, n: with(client, nil, "ship"), want: "ship"},
		{name: "no offer fallback server", order: both, registered: both, values: nil, n: with(server, nil, "ship"), want: "ship"},
		{name: "empty header fallback", order: both, registered: both, values: []string{""}, n: with(client, nil, "done"), want: "done"},
		{name: "only separators fallback", order: both, registered: both, values: []string{" , ,"}, n: with(client, nil, "done"), want: "done"},
		{name: "unknown offer with fallback", order: both, registered: both, values: []string{"mqtt"}, n: with(client, nil, "done"), want: noMatch},
		{name: "unknown offer with fallback server", order: both, registered: both, values: []string{"mqtt"}, n: with(server, nil, "done"), want: noMatch},
		{name: "wrong case offer with fallback", order: both, registered: both, values: []string{"DONE"}, n: with(client, nil, "done"), want: noMatch},
		{name: "fallback not enabled", order: []string{"done"}, registered: both, values: nil, n: with(client, nil, "ship"), want: noMatch},
		{name: "fallback not registered", order: both, registered: []string{"done"}, values: nil, n: with(client, nil, "ship"), want: noMatch},
		{name: "fallback not allowed", order: both, registered: both, values: nil, n: with(client, []string{"done"}, "ship"), want: noMatch},
		{name: "fallback allowed", order: both, registered: both, values: nil, n: with(client, []string{"ship"}, "ship"), want: "ship"},
		{name: "offer ignores fallback", order: both, registered: both, values: []string{"done"}, n: with(client, nil, "ship"), want: "done"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRegistry(t, tt.order, tt.registered)
			got, err := negotiate(t, r, tt.values, tt.n)
			switch {
			case tt.wantParse:
				if err == nil || errors.Is(err, protocols.ErrNoSubprotocol) {
					t.Fatalf("got %q, %v; want a ParseOffer error", got, err)
				}
			case tt.want == noMatch:
				if !errors.Is(err, protocols.ErrNoSubprotocol) {
					t.Fatalf("got %q, %v; want ErrNoSubprotocol", got, err)
				}
			default:
				if err != nil {
					t.Fatalf("Negotiate: %v; want %q", err, tt.want)
				}
				if got != tt.want {
					t.Errorf("selected %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestNegotiateErrorNamesOffer(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, []string{"done"}, []string{"done"})
	_, err := r.Negotiate(protocols.Handshake{Offered: []string{"mqtt", "stomp"}}, protocols.Negotiation{})
	if !errors.Is(err, protocols.ErrNoSubprotocol) {
		t.Fatalf("err = %v, want ErrNoSubprotocol", err)
	}
	if got, want := err.Error(), "no supported subprotocol offered: offered mqtt, stomp"; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
}

func TestUnregister(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, []string{"done", "ship"}, []string{"done", "ship"})
	offer := []string{"ship", "done"}
	n := protocols.Negotiation{Policy: protocols.PolicyClient}

	check := func(want string) {
		t.Helper()
		p, err := r.Negotiate(protocols.Handshake{Offered: offer}, n)
		if want == "" {
			if !errors.Is(err, protocols.ErrNoSubprotocol) {
				t.Fatalf("Negotiate = %v, %v; want ErrNoSubprotocol", p, err)
			}
			return
		}
		if err != nil || p.Name() != want {
			t.Fatalf("Negotiate = %v, %v; want %q", p, err, want)
		}
	}
	check("ship")

	r.Unregister("ship")
	check("done")
	if _, ok := r.Lookup("ship"); ok {
		t.Error("Lookup(ship) after Unregister found it")
	}
	if got := r.Supported(n); !slices.Equal(got, []string{"done"}) {
		t.Errorf("Supported = %q, want [done]", got)
	}
	// A fallback that was unregistered is no longer served either.
	if _, err := r.Negotiate(protocols.Handshake{}, protocols.Negotiation{Fallback: "ship"}); !errors.Is(err, protocols.ErrNoSubprotocol) {
		t.Errorf("fallback to unregistered ship: err = %v, want ErrNoSubprotocol", err)
	}

	r.Unregister("done")
	check("")
	r.Unregister("done")    // twice is harmless
	r.Unregister("unknown") // never registered is harmless
	if got := r.Supported(n); len(got) != 0 {
		t.Errorf("Supported = %q, want none", got)
	}

	// A plugin that restarts registers again.
	if err := r.Register(&fakeProtocol{"ship"}, "plugin ship"); err != nil {
		t.Fatalf("Register after Unregister: %v", err)
	}
	check("ship")
}

func TestRegister(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, []string{"done"}, []string{"done"})

	err := r.Register(&fakeProtocol{"done"}, "plugin /opt/done")
	if !errors.Is(err, protocols.ErrDuplicate) {
		t.Fatalf("second Register(done) = %v, want ErrDuplicate", err)
	}
	if got, want := err.Error(), `register "done" from plugin /opt/done: protocol name already registered (by builtin)`; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	// The first registration stays.
	if e := r.Entries(); len(e) != 1 || e[0].Origin != "builtin" {
		t.Errorf("Entries after duplicate = %+v", e)
	}

	for _, name := range []string{"", "a b", "a,b", "a/b", "ü"} {
		err := r.Register(&fakeProtocol{name}, "builtin")
		if err == nil || errors.Is(err, protocols.ErrDuplicate) {
			t.Errorf("Register(%q) = %v, want a not-a-token error", name, err)
		}
	}
	// A disabled name may be registered (it shows in Entries) and a
	// different case is a different name.
	for _, name := range []string{"ship", "DONE"} {
		if err := r.Register(&fakeProtocol{name}, "builtin"); err != nil {
			t.Errorf("Register(%q): %v", name, err)
		}
	}
}

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	valid := [][]string{nil, {}, {"done"}, {"done", "ship"}, {"done", "DONE"}, {"v1.json", "x-y_z"}}
	for _, order := range valid {
		r, err := protocols.NewRegistry(order)
		if err != nil {
			t.Errorf("NewRegistry(%q): %v", order, err)
			continue
		}
		if got := r.Order(); !slices.Equal(got, order) {
			t.Errorf("Order() = %q, want %q", got, order)
		}
	}
	invalid := []struct {
		order []string
		want  string
	}{
		{[]string{"done", "done"}, `protocol "done" listed twice`},
		{[]string{"done", "ship", "done"}, `protocol "done" listed twice`},
		{[]string{""}, `protocol name "" is not an HTTP token`},
		{[]string{"done", "a b"}, `protocol name "a b" is not an HTTP token`},
		{[]string{"a,b"}, `protocol name "a,b" is not an HTTP token`},
		{[]string{"done\t"}, `protocol name "done\t" is not an HTTP token`},
	}
	for _, tt := range invalid {
		r, err := protocols.NewRegistry(tt.order)
		if err == nil {
			t.Errorf("NewRegistry(%q) succeeded, want %q", tt.order, tt.want)
			continue
		}
		if r != nil {
			t.Errorf("NewRegistry(%q) returned a registry with its error", tt.order)
		}
		if err.Error() != tt.want {
			t.Errorf("NewRegistry(%q) = %q, want %q", tt.order, err, tt.want)
		}
	}
}

func TestOrderIsACopy(t *testing.T) {
	t.Parallel()
	order := []string{"done", "ship"}
	r := newRegistry(t, order, []string{"done", "ship"})
	order[0] = "ship" // the caller's slice changes after NewRegistry
	got := r.Order()
	got[1] = "changed"
	if again := r.Order(); !slices.Equal(again, []string{"done", "ship"}) {
		t.Errorf("Order() = %q after callers changed their slices", again)
	}
}

func TestSupported(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, []string{"ship", "done", "absent"}, []string{"done", "ship", "extra"})
	tests := []struct {
		n    protocols.Negotiation
		want []string
	}{
		{protocols.Negotiation{}, []string{"ship", "done"}},
		{protocols.Negotiation{Policy: protocols.PolicyServer}, []string{"ship", "done"}},
		{protocols.Negotiation{Allowed: []string{"done"}}, []string{"done"}},
		{protocols.Negotiation{Allowed: []string{"done", "ship"}}, []string{"ship", "done"}},
		{protocols.Negotiation{Allowed: []string{"extra", "absent"}}, nil},
		{protocols.Negotiation{Allowed: []string{"DONE"}}, nil},
	}
	for _, tt := range tests {
		if got := r.Supported(tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("Supported(%+v) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestEntries(t *testing.T) {
	t.Parallel()
	r, err := protocols.NewRegistry([]string{"ship", "done", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, reg := range []struct{ name, origin string }{
		{"done", "builtin"}, {"zeta", "plugin /opt/zeta"}, {"ship", "plugin /opt/ship"}, {"alpha", "builtin"},
	} {
		if err := r.Register(&fakeProtocol{reg.name}, reg.origin); err != nil {
			t.Fatal(err)
		}
	}
	want := []protocols.Entry{
		{Name: "ship", Origin: "plugin /opt/ship", Enabled: true, Ready: true},
		{Name: "done", Origin: "builtin", Enabled: true, Ready: true},
		{Name: "absent", Enabled: true},
		{Name: "alpha", Origin: "builtin", Ready: true},
		{Name: "zeta", Origin: "plugin /opt/zeta", Ready: true},
	}
	if got := r.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() =\n%+v\nwant\n%+v", got, want)
	}

	r.Unregister("ship")
	r.Unregister("zeta")
	want = []protocols.Entry{
		{Name: "ship", Enabled: true},
		{Name: "done", Origin: "builtin", Enabled: true, Ready: true},
		{Name: "absent", Enabled: true},
		{Name: "alpha", Origin: "builtin", Ready: true},
	}
	if got := r.Entries(); !slices.Equal(got, want) {
		t.Errorf("Entries() after Unregister =\n%+v\nwant\n%+v", got, want)
	}

	empty, _ := protocols.NewRegistry(nil)
	if got := empty.Entries(); len(got) != 0 {
		t.Errorf("empty registry Entries() = %+v", got)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, []string{"done", "absent"}, []string{"done", "disabled"})
	if p, ok := r.Lookup("done"); !ok || p.Name() != "done" {
		t.Errorf("Lookup(done) = %v, %v", p, ok)
	}
	for _, name := range []string{"absent", "disabled", "DONE", "", "unknown"} {
		if p, ok := r.Lookup(name); ok || p != nil {
			t.Errorf("Lookup(%q) = %v, %v; want nothing", name, p, ok)
		}
	}
}

// TestRegistryConcurrent exercises the locking under -race: plugins come and
// go while connections negotiate.
func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, []string{"done", "ship"}, []string{"done"})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				if i%2 == 0 {
					_ = r.Register(&fakeProtocol{"ship"}, fmt.Sprint("plugin ", i, j))
					r.Unregister("ship")
					continue
				}
				p, err := r.Negotiate(protocols.Handshake{Offered: []string{"ship", "done"}}, protocols.Negotiation{})
				if err != nil || (p.Name() != "ship" && p.Name() != "done") {
					t.Errorf("Negotiate = %v, %v", p, err)
					return
				}
				_ = r.Supported(protocols.Negotiation{})
				_ = r.Entries()
			}
		}()
	}
	wg.Wait()
}

// choosyProtocol admits only clients that present a TLS client
// certificate, as SHIP does.
type choosyProtocol struct{ fakeProtocol }

var errNoCertificate = errors.New("needs a client certificate")

func (p *choosyProtocol) Admit(h protocols.Handshake) error {
	if h.TLS == nil || len(h.TLS.PeerCertificates) == 0 {
		return errNoCertificate
	}
	return nil
}

var _ protocols.Admitter = (*choosyProtocol)(nil)

// TestNegotiateAdmit: a protocol that declines a client is passed over as
// if it had not been offered, under both policies and as a fallback, and
// the error says why when nothing is left.
func TestNegotiateAdmit(t *testing.T) {
	t.Parallel()
	r, err := protocols.NewRegistry([]string{"ship", "done"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []protocols.Protocol{&choosyProtocol{fakeProtocol{"ship"}}, &fakeProtocol{"done"}} {
		if err := r.Register(p, "builtin"); err != nil {
			t.Fatal(err)
		}
	}
	withCert := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
	tests := []struct {
		name     string
		offered  []string
		tls      *tls.ConnectionState
		n        protocols.Negotiation
		want     string
		declined string // the error's reasons when nothing is chosen
	}{
		{"client policy, certificate", []string{"ship", "done"}, withCert, protocols.Negotiation{}, "ship", ""},
		{"client policy, no certificate", []string{"ship", "done"}, nil, protocols.Negotiation{}, "done", ""},
		{"client prefers done", []string{"done", "ship"}, withCert, protocols.Negotiation{}, "done", ""},
		{"server policy", []string{"done", "ship"}, withCert, protocols.Negotiation{Policy: protocols.PolicyServer}, "ship", ""},
		{"server policy, no certificate", []string{"done", "ship"}, nil, protocols.Negotiation{Policy: protocols.PolicyServer}, "done", ""},
		{"only ship, no certificate", []string{"ship"}, nil, protocols.Negotiation{}, "", "ship: needs a client certificate"},
		{"fallback admitted", nil, withCert, protocols.Negotiation{Fallback: "ship"}, "ship", ""},
		{"fallback declined", nil, nil, protocols.Negotiation{Fallback: "ship"}, "", "ship: needs a client certificate"},
		{"declining protocol not allowed here", []string{"ship"}, nil, protocols.Negotiation{Allowed: []string{"done"}}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := r.Negotiate(protocols.Handshake{Offered: tt.offered, TLS: tt.tls}, tt.n)
			if tt.want != "" {
				if err != nil || p.Name() != tt.want {
					t.Fatalf("Negotiate = %v, %v; want %q", p, err, tt.want)
				}
				return
			}
			var nerr *protocols.NegotiationError
			if !errors.As(err, &nerr) || !errors.Is(err, protocols.ErrNoSubprotocol) {
				t.Fatalf("Negotiate = %v, %v; want a NegotiationError", p, err)
			}
			if got := nerr.Reasons(); got != tt.declined {
				t.Errorf("reasons %q, want %q", got, tt.declined)
			}
			if tt.declined != "" && !strings.Contains(err.Error(), tt.declined) {
				t.Errorf("error %q does not say %q", err, tt.declined)
			}
		})
	}
}
