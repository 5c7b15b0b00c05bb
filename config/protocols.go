package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/wsgate/wsgate/protocols/module"
)

// defaultModules is every registered protocol's configuration with its
// defaults.
func defaultModules() map[string]module.Config {
	configs := map[string]module.Config{}
	for _, m := range module.All() {
		configs[m.Name] = m.NewConfig()
	}
	return configs
}

// decodeProtocols decodes the [protocols] table: its own keys, and each
// built-in protocol's table into that protocol's configuration. It returns
// the decoding errors, the keys whose decoding failed (the decoder stops
// there, leaving the table's other keys undecoded), and the keys it does
// not know (tables of protocols that are not built in).
func (c *Config) decodeProtocols(md *toml.MetaData) (errs []error, failed, stray []string) {
	for _, key := range slices.Sorted(maps.Keys(c.ProtocolTables)) {
		table := c.ProtocolTables[key]
		var err error
		switch key {
		case "order":
			err = md.PrimitiveDecode(table, &c.Protocols.Order)
		case "policy":
			err = md.PrimitiveDecode(table, &c.Protocols.Policy)
		default:
			if mc, ok := c.Protocols.Modules[key]; ok {
				err = md.PrimitiveDecode(table, mc)
			} else {
				stray = append(stray, key)
			}
		}
		if err != nil {
			errs, failed = append(errs, err), append(failed, key)
		}
	}
	c.ProtocolTables = nil // decoded; Protocols holds the result
	return errs, failed, stray
}

// Settings are the gateway-wide settings the protocols see.
func (c *Config) Settings() module.Settings {
	return module.Settings{GatewayID: c.Gateway.ID, StateDir: StateDir(), SendQueue: c.WebSocket.SendQueue}
}

// validateModules validates every built-in protocol's table, enabled or
// not: a mistake in a table is worth knowing before the protocol is
// turned on.
func (c *Config) validateModules() []fault {
	var fs []fault
	settings := c.Settings()
	for _, name := range slices.Sorted(maps.Keys(c.Protocols.Modules)) {
		for _, ke := range module.KeyErrors(c.Protocols.Modules[name].Validate(settings)) {
			f := fault{path: "protocols." + name, msg: ke.Msg}
			if ke.Key != "" {
				f.path += "." + ke.Key
			}
			if ke.Entry != "" { // point at the entry's own line
				f.at = toml.Key(append(strings.Split(f.path, "."), ke.Entry)).String()
			}
			fs = append(fs, f)
		}
	}
	return fs
}

// moduleListener is a listener an enabled protocol brings.
type moduleListener struct {
	module.Listener
	protocol string
}

// moduleListeners are the listeners of the enabled protocols, by address.
func (c *Config) moduleListeners() map[string]moduleListener {
	out := map[string]moduleListener{}
	for _, name := range c.Protocols.Order {
		l, ok := c.Protocols.Modules[name].(module.Listening)
		if !ok {
			continue
		}
		for _, ml := range l.Listeners() {
			out[ml.Address] = moduleListener{Listener: ml, protocol: name}
		}
	}
	return out
}

// tableHint explains an unknown table that names a built-in protocol in
// the wrong place, or a protocol that is not built in.
func tableHint(key toml.Key) string {
	switch {
	case len(key) == 1:
		if _, ok := module.Lookup(key[0]); ok {
			return fmt.Sprintf(" (a protocol's table is [protocols.%s]; enable the protocol by naming %q in protocols.order)", key[0], key[0])
		}
	case len(key) == 2 && key[0] == "protocols":
		if tag, ok := module.Omitted(key[1]); ok {
			return fmt.Sprintf(" (%s is not in this build of wsgate: built with -tags %s)", key[1], tag)
		}
		return fmt.Sprintf(" (built-in protocols: %s; plugins take no table here)", strings.Join(module.Names(), ", "))
	}
	return ""
}
