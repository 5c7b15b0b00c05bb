// Package trust owns the SHIP pairing state (ship.md section 2.2): which
// peer SKIs are trusted, which wait for the user (pending) and which were
// rejected, with their SHIP IDs and when they were first and last seen. The
// store is one JSON file, rewritten atomically (temporary file, fsync,
// rename) on every change, so pairing survives restarts and a crash leaves
// the old or the new file, never a partial one.
//
// A SHIP session asks Check when a peer's SKI is known (after TLS): trusted
// means hello "ready", rejected means abort (close 4452), pending means
// hello "pending" while it calls Wait with a context bound to the hello
// timer; Approve and Reject, from the admin API or the CLI, wake it. With
// auto-accept an unknown SKI is trusted at once. Pending entries are bounded
// (MaxPending, least recently seen dropped), and so are auto-accepted ones
// (MaxAutoAccepted), so a stream of fresh keys cannot grow the file without
// limit. Subscribe reports every change, for instance so that a Reject can
// close a running connection.
//
// KeepNewer and KeepOutgoing state the double-connection rules.
//
// # Dependencies
//
// trust uses the standard library, identity.NormalizeSKI and
// internal/atomicfile only. It must not depend on TLS, WebSocket, the SHIP
// state machine, mDNS or the gateway: it keys peers by SKI strings and knows
// nothing of connections.
package trust
