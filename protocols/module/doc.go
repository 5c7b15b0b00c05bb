// Package module is how a built-in protocol plugs into wsgate, in the
// manner of Caddy's modules and Telegraf's inputs: a protocol package
// registers a Module in init, and protocols/all imports every built-in one
// (each behind a build tag, so that `-tags noship` leaves SHIP out).
//
// A module owns its configuration table, [protocols.<name>]: the config
// package decodes the table into the module's Config (its defaults preset),
// runs its Validate for `wsgate check`, and the binary turns a valid Config
// into a running protocols.Protocol with New.
//
// Whatever a protocol needs beyond negotiation and sessions it declares by
// implementing optional capabilities, each a small interface that the
// composition root looks for:
//
//   - on its Config: Listening (listeners of its own, such as SHIP's port
//     4711) and Subcommand (`wsgate <name> ...`);
//   - on its Protocol: protocols.Admitter (turn clients away at
//     negotiation), TLSProvider (the server identity of its listeners),
//     Runner (background work with Start and Stop), AdminRouter (HTTP routes
//     on the admin address), GatewayCommander (commands to the gateway over
//     MQTT) and prometheus.Collector (its metrics).
//
// Implementations state the capabilities they mean to have with
// compile-time interface guards. Nothing outside a protocol's package names
// the protocol; the gateway, the config and the binary only walk the
// registered modules.
//
// This package depends on the protocols contract, and on mdns for the
// responder a Host hands its Runners.
package module
