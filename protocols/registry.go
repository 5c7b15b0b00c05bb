package protocols

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Policy decides whose preference order wins during negotiation.
type Policy string

const (
	// PolicyClient picks the first name the client offered that is enabled,
	// as RFC 6455 intends.
	PolicyClient Policy = "client"
	// PolicyServer picks the first enabled name, in server order, that the
	// client offered.
	PolicyServer Policy = "server"
)

// Valid reports whether p is a known policy.
func (p Policy) Valid() bool { return p == PolicyClient || p == PolicyServer }

// Negotiation is one listener's negotiation settings.
type Negotiation struct {
	Policy Policy
	// Allowed restricts the listener to these names; empty allows every
	// enabled protocol.
	Allowed []string
	// Fallback serves clients that offer no subprotocol at all. Empty means
	// such clients are refused.
	Fallback string
}

// Entry describes one protocol known to the registry.
type Entry struct {
	Name    string
	Origin  string // "builtin", or where a plugin came from
	Enabled bool   // listed in the server order
	Ready   bool   // an implementation is registered right now
}

// ErrDuplicate is returned when a name is registered twice.
var ErrDuplicate = errors.New("protocol name already registered")

type registration struct {
	protocol Protocol
	origin   string
}

// Registry holds the protocol implementations and the server's preference
// order. Implementations come and go at run time (a plugin restarts), the
// order is configuration. It is safe for concurrent use.
type Registry struct {
	order []string // immutable after NewRegistry

	mu        sync.RWMutex
	protocols map[string]registration
}

// NewRegistry creates a registry whose server preference order, which is
// also the set of enabled protocols, is order.
func NewRegistry(order []string) (*Registry, error) {
	seen := make(map[string]bool, len(order))
	for _, name := range order {
		if !IsToken(name) {
			return nil, fmt.Errorf("protocol name %q is not an HTTP token", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("protocol %q listed twice", name)
		}
		seen[name] = true
	}
	return &Registry{order: slices.Clone(order), protocols: make(map[string]registration)}, nil
}

// Register adds an implementation under its name.
func (r *Registry) Register(p Protocol, origin string) error {
	name := p.Name()
	if !IsToken(name) {
		return fmt.Errorf("register %q: not an HTTP token", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if have, ok := r.protocols[name]; ok {
		return fmt.Errorf("register %q from %s: %w (by %s)", name, origin, ErrDuplicate, have.origin)
	}
	r.protocols[name] = registration{protocol: p, origin: origin}
	return nil
}

// Unregister removes the implementation of name, if any. Connections already
// running on it are not affected.
func (r *Registry) Unregister(name string) {
	r.mu.Lock()
	delete(r.protocols, name)
	r.mu.Unlock()
}

// Order returns the server preference order.
func (r *Registry) Order() []string { return slices.Clone(r.order) }

// Entries lists the enabled protocols in server order, then the registered
// but disabled ones by name.
func (r *Registry) Entries() []Entry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	entries := make([]Entry, 0, len(r.protocols)+len(r.order))
	for _, name := range r.order {
		reg, ok := r.protocols[name]
		entries = append(entries, Entry{Name: name, Origin: reg.origin, Enabled: true, Ready: ok})
	}
	var disabled []Entry
	for name, reg := range r.protocols {
		if !slices.Contains(r.order, name) {
			disabled = append(disabled, Entry{Name: name, Origin: reg.origin, Ready: true})
		}
	}
	slices.SortFunc(disabled, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return append(entries, disabled...)
}

// Lookup returns the implementation of an enabled protocol.
func (r *Registry) Lookup(name string) (Protocol, bool) {
	if !slices.Contains(r.order, name) {
		return nil, false
	}
	r.mu.RLock()
	reg, ok := r.protocols[name]
	r.mu.RUnlock()
	return reg.protocol, ok
}

// Negotiate selects the protocol for a client whose offer, in its
// preference order, is h.Offered (already parsed with ParseOffer). A
// protocol that is an Admitter and declines the client is passed over.
// When nothing matches the error is a *NegotiationError (ErrNoSubprotocol);
// the caller answers with the names Supported reports.
func (r *Registry) Negotiate(h Handshake, n Negotiation) (Protocol, error) {
	nerr := &NegotiationError{Offered: h.Offered, Fallback: n.Fallback}
	try := func(name string) Protocol {
		p, ok := r.usable(name, n)
		if !ok {
			return nil
		}
		if a, ok := p.(Admitter); ok {
			if err := a.Admit(h); err != nil {
				nerr.Declined = append(nerr.Declined, Decline{Protocol: name, Reason: err})
				return nil
			}
		}
		return p
	}
	switch {
	case len(h.Offered) == 0:
		if n.Fallback != "" {
			if p := try(n.Fallback); p != nil {
				return p, nil
			}
		}
	case n.Policy == PolicyServer:
		for _, name := range r.order {
			if slices.Contains(h.Offered, name) {
				if p := try(name); p != nil {
					return p, nil
				}
			}
		}
	default:
		for _, name := range h.Offered {
			if p := try(name); p != nil {
				return p, nil
			}
		}
	}
	return nil, nerr
}

// Supported lists, in server order, the names a listener with settings n
// serves right now.
func (r *Registry) Supported(n Negotiation) []string {
	var names []string
	for _, name := range r.order {
		if _, ok := r.usable(name, n); ok {
			names = append(names, name)
		}
	}
	return names
}

func (r *Registry) usable(name string, n Negotiation) (Protocol, bool) {
	if len(n.Allowed) > 0 && !slices.Contains(n.Allowed, name) {
		return nil, false
	}
	return r.Lookup(name)
}
