// Package machine owns the SHIP connection state machine (section 6 of the
// project's SHIP fact sheet, ship.md) for both roles: CMI, connection
// hello with trust and prolongation, protocol handshake, PIN state,
// access methods, data exchange and connection close. It is pure and
// event-driven: it does no I/O, starts no goroutine and reads no clock.
//
// # Events and outputs
//
// The session that owns a WebSocket creates a Machine with New and feeds
// it events, each with the current time:
//
//   - Start when the WebSocket is open;
//   - Receive for every binary WebSocket message (type byte + JSON);
//   - Tick when the time NextDeadline returned has come;
//   - Approve or Reject after a NeedsTrust output;
//   - SendData for every SPINE message to send once Complete;
//   - Close to end the connection.
//
// Every event returns the outputs to carry out, in order: Send (write a
// binary WebSocket message), Deliver (a received SPINE message, in its
// EEBus root form), PeerID (the peer's SHIP ID), NeedsTrust (ask the trust
// store or the user), Close (close the WebSocket with this code and
// reason; the machine is then done), StateChanged and Warning (for logs).
// After every event the caller re-arms its timer from NextDeadline. Text
// messages never reach the machine: the caller closes the WebSocket with
// CodeUnsupportedData (1003). When the peer closes the WebSocket the
// caller simply drops the machine.
//
// # What is implemented
//
//   - 6.1 CMI: the client sends 00 00 at Start, the server answers the
//     client's; a CMI that does not start 00 00 is an error, a timeout
//     (Config.CMITimeout, 30 s) too; both close with 4001 and the error.
//   - 6.2 hello: ready when Config.AutoAccept or after Approve, otherwise
//     pending with NeedsTrust. The Wait-For-Ready timer (T_hello_init,
//     sent as waiting), prolongation requests answered in both states,
//     our own prolongation request T_hello_prolong_waiting_gap before the
//     peer's waiting runs out (when that is at least
//     T_hello_prolong_thr_inc), a waiting below T_hello_prolong_min
//     aborts. An abort (Reject, timeout, unexpected message) sends the
//     aborted hello and closes with 4452 after Config.AbortDelay; so does
//     an aborted hello from the peer. Every hello we send carries the full
//     T_hello_init, and the Wait-For-Ready timer is restarted with it.
//   - 6.3 protocol handshake: the client announces 1.0 JSON-UTF8, the
//     server accepts any announceMax of 1.0 or more that lists JSON-UTF8
//     and selects 1.0 JSON-UTF8, the client echoes the select. Anything
//     else sends the wrapped messageProtocolHandshakeError (2 unexpected,
//     3 mismatch, 1 timeout) and closes with 4001; a handshake error from
//     the peer (wrapped, or ship-go's unwrapped form) closes with 4001.
//   - 6.4 PIN: both sides send "none"; any other PIN state, PIN input or
//     PIN error closes with 4001 (ErrPINUnsupported). No connectionPinError
//     is sent: its only code means "wrong PIN", which would mislead.
//   - 6.5 access methods: both sides request, answer every request (also
//     after Complete), and reach Approved then Complete on the peer's
//     accessMethods. No id closes with 4001, an id other than
//     Config.PeerSHIPID with 4450.
//   - 6.6 data: type 2 data with protocolId ee1.0 and a payload is
//     delivered; data before Complete is buffered and delivered at
//     Complete.
//   - 6.7 close: announce with maxTime Config.CloseWait, close 4001 "close"
//     on the confirm or when it runs out; on an announce, confirm and close
//     4001 "close" after Config.CloseWait. Before Complete no
//     connectionClose is sent (section 9): 4001, or 4500 "User close" for
//     reason removedConnection.
//
// Not implemented: PIN verification itself, the dnsSd_mDns and dns access
// methods (ignored), double-connection handling (the hub's job, close
// 1000), and the hello's "application no longer allows waiting" branch:
// while pending the machine waits until Approve, Reject or a timer.
//
// # Where it is liberal (sections 4, 11, 14)
//
// Messages are taken by their JSON root key, which must agree with the
// type byte; a wrong or unknown type byte with a valid SHIP message is
// handled with a Warning. Stray NULs around the JSON are dropped
// (eebus.Decode), a CMI longer than two bytes is accepted with a Warning,
// the unwrapped handshake error is understood, announceMax above 1.0 is
// accepted, access methods that arrive during the PIN exchange and data
// before Complete are buffered (at most Config.MaxEarly), any close reason
// text is accepted, and after Complete a malformed or unexpected message
// is ignored with a Warning instead of ending the connection. Before
// Complete, malformed messages end the handshake as the spec says.
//
// # Dependencies
//
// The package depends on the standard library and protocols/ship/eebus
// (the wire format) only; not on the network, TLS, the trust store or
// MQTT.
package machine
