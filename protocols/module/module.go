package module

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/wsgate/wsgate/protocols"
)

// Module describes a built-in protocol.
type Module struct {
	// Name is the subprotocol token, and the name of the protocol's
	// table: [protocols.<Name>].
	Name string
	// SelfAuthenticating is set for a protocol that authenticates devices
	// itself (SHIP pairs them by the key of their certificate): listeners
	// that authenticate devices (auth = "token" or "mtls") do not serve it.
	SelfAuthenticating bool
	// TLSOnly is set for a protocol that serves clients over TLS only
	// (SHIP): a plain ws:// listener does not list it among what it
	// serves in its mDNS announcement.
	TLSOnly bool
	// DefaultOrder places the protocol in the default protocols.order,
	// lower first; 0 leaves it disabled unless the configuration enables
	// it.
	DefaultOrder int
	// Sample is the protocol's table with every key at its default value,
	// documented (the package's embedded sample.toml). config/example.toml
	// holds it verbatim.
	Sample string
	// NewConfig returns the protocol's configuration with its defaults set,
	// as a pointer the table is decoded into.
	NewConfig func() Config
}

// Config is a protocol's configuration, decoded from its table.
type Config interface {
	// Validate checks the options without acquiring anything (`wsgate
	// check` runs it). Problems are KeyErrors, joined, so that they can
	// be reported with the file and line of their key.
	Validate(Settings) error
	// New provisions the protocol from a valid configuration: it may
	// read or create files (keys, stores) but starts no work; Runner does.
	New(Env) (protocols.Protocol, error)
}

// Settings are the gateway-wide settings a protocol may depend on.
type Settings struct {
	GatewayID string
	// StateDir is the gateway's state directory, for protocols that keep
	// files (identities, trust stores).
	StateDir string
	// SendQueue is websocket.send_queue: messages queued to one device.
	SendQueue int
}

// Env is what New gets.
type Env struct {
	Settings
	Log *slog.Logger
}

// KeyError is a problem with one key of a protocol's table.
type KeyError struct {
	// Key is the key's path below [protocols.<name>], dotted, with
	// array indexes as numbers: "timers.cmi", "peers.0.ski".
	Key string
	// Entry, for a key whose value is a table of entries (device
	// tokens), is the entry at fault; its line is shown.
	Entry string
	Msg   string
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Msg }

// Errorf returns a KeyError for key.
func Errorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

var (
	mu      sync.RWMutex
	modules = map[string]Module{}
)

// Register makes a built-in protocol available. It panics when the module
// is incomplete or its name is taken: a programming error, caught when the
// binary starts.
func Register(m Module) {
	if !protocols.IsToken(m.Name) || m.NewConfig == nil {
		panic(fmt.Sprintf("module: invalid module %q (a token name and NewConfig are required)", m.Name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := modules[m.Name]; dup {
		panic(fmt.Sprintf("module: protocol %q registered twice", m.Name))
	}
	modules[m.Name] = m
}

// Lookup returns the module of a built-in protocol.
func Lookup(name string) (Module, bool) {
	mu.RLock()
	defer mu.RUnlock()
	m, ok := modules[name]
	return m, ok
}

// All returns the registered modules, by name.
func All() []Module {
	mu.RLock()
	defer mu.RUnlock()
	all := make([]Module, 0, len(modules))
	for _, m := range modules {
		all = append(all, m)
	}
	slices.SortFunc(all, func(a, b Module) int { return cmp.Compare(a.Name, b.Name) })
	return all
}

// Names lists the built-in protocols, by name.
func Names() []string {
	var names []string
	for _, m := range All() {
		names = append(names, m.Name)
	}
	return names
}

// DefaultOrder is the default protocols.order: the modules that have a
// DefaultOrder, in that order.
func DefaultOrder() []string {
	all := slices.DeleteFunc(All(), func(m Module) bool { return m.DefaultOrder == 0 })
	slices.SortStableFunc(all, func(a, b Module) int { return cmp.Compare(a.DefaultOrder, b.DefaultOrder) })
	var order []string
	for _, m := range all {
		order = append(order, m.Name)
	}
	return order
}

// KeyErrors splits what Validate returned into its problems; an error that
// is not a KeyError is returned with an empty Key.
func KeyErrors(err error) []*KeyError {
	if err == nil {
		return nil
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*KeyError
	for _, e := range errs {
		var ke *KeyError
		if !errors.As(e, &ke) {
			ke = &KeyError{Msg: e.Error()}
		}
		out = append(out, ke)
	}
	return out
}

var omitted = map[string]string{} // built-in protocols left out, with the build tag

// Omit records that this binary was built without a built-in protocol (by
// a build tag of protocols/all), so that a configuration that names it is
// told why it is unknown.
func Omit(name, tag string) {
	mu.Lock()
	defer mu.Unlock()
	omitted[name] = tag
}

// Omitted returns the build tag that left the protocol name out, if one did.
func Omitted(name string) (tag string, ok bool) {
	mu.RLock()
	defer mu.RUnlock()
	tag, ok = omitted[name]
	return tag, ok
}
