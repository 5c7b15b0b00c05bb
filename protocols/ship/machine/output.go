package machine

import (
	"encoding/json"
	"errors"
)

// Output is something the caller must do, or may want to know, as the
// result of an input. It is one of Send, Deliver, PeerID, NeedsTrust,
// Close, StateChanged and Warning. Outputs come in the order they must be
// carried out: send the Send messages in order, and a Close after them.
type Output interface {
	isOutput()
}

// Send asks the caller to send Message, complete with its type byte, as
// one binary WebSocket message.
type Send struct {
	Message []byte
}

// Deliver hands over one received SPINE message after Complete: the data
// message's payload as it came, in its EEBus root form ({"datagram":[...]},
// section 6.6).
type Deliver struct {
	Payload json.RawMessage
}

// PeerID reports the peer's SHIP ID from its accessMethods (section 6.5),
// once, just before Complete.
type PeerID struct {
	SHIPID string
}

// NeedsTrust asks the caller whether the peer is trusted: the machine says
// hello pending until the caller calls Approve or Reject (section 6.2).
// Emitted only when Config.AutoAccept is false.
type NeedsTrust struct{}

// Close asks the caller to close the WebSocket with Code and Reason (at
// most 123 bytes). The machine is then in a terminal state (Closed, or
// Error when Err is not nil) and ignores every further input. Err says
// why, for errors.Is; it is nil for a normal close.
type Close struct {
	Code   int
	Reason string
	Err    error
}

// StateChanged reports a transition, for logs and metrics.
type StateChanged struct {
	From, To State
}

// Warning reports a deviation the machine tolerated (a wrong type byte, a
// stray CMI byte) or a message it ignored (a malformed message after
// Complete). The connection goes on; log it.
type Warning struct {
	Err error
}

func (Send) isOutput()         {}
func (Deliver) isOutput()      {}
func (PeerID) isOutput()       {}
func (NeedsTrust) isOutput()   {}
func (Close) isOutput()        {}
func (StateChanged) isOutput() {}
func (Warning) isOutput()      {}

// The WebSocket close codes the machine uses (section 9). Whether the
// 4xxx codes are SHIP's or ship-go's is open (section 14, item 7).
const (
	// CodeClose is the normal SHIP close, and (as in ship-go) the code of
	// every handshake error, with the error text as the reason.
	CodeClose = 4001
	// CodeSHIPIDMismatch: the peer's accessMethods id is not the one
	// expected.
	CodeSHIPIDMismatch = 4450
	// CodeNodeRejected: the hello was aborted, by us or by the peer, or
	// timed out.
	CodeNodeRejected = 4452
	// CodeUserClose: Close with reason removedConnection (unpairing)
	// before Complete.
	CodeUserClose = 4500
	// CodeUnsupportedData (RFC 6455) is for the caller: the machine sees
	// only binary messages, and a text message should be answered by
	// closing with this code without passing it to the machine.
	CodeUnsupportedData = 1003
)

// The close reasons the machine uses.
const (
	ReasonClose          = "close"
	ReasonNodeRejected   = "Node rejected by application"
	ReasonSHIPIDMismatch = "SHIP id mismatch"
	ReasonUserClose      = "User close"
)

// Errors, carried by Close.Err and Warning.Err and returned by SendData.
var (
	// ErrTimeout: a timer of section 7 ran out.
	ErrTimeout = errors.New("ship: timeout")
	// ErrBadCMI: the peer's CMI was not 00 00.
	ErrBadCMI = errors.New("ship: bad CMI")
	// ErrUnexpectedMessage: a message the current state does not allow.
	ErrUnexpectedMessage = errors.New("ship: unexpected message")
	// ErrMalformed: a message that is not a SHIP message at all.
	ErrMalformed = errors.New("ship: malformed message")
	// ErrWrongType: a message whose type byte does not fit its JSON; it is
	// handled by its JSON (Warning).
	ErrWrongType = errors.New("ship: message type byte does not match its content")
	// ErrRejected: the hello was aborted (trust refused, by either side).
	ErrRejected = errors.New("ship: node rejected")
	// ErrHandshake: the protocol handshake failed (a mismatch, or the peer
	// sent messageProtocolHandshakeError).
	ErrHandshake = errors.New("ship: protocol handshake failed")
	// ErrPINUnsupported: the peer wants PIN verification; only "none" is
	// supported.
	ErrPINUnsupported = errors.New("ship: PIN verification not supported")
	// ErrSHIPID: the peer's accessMethods has no id, or not the expected one.
	ErrSHIPID = errors.New("ship: SHIP id")
	// ErrTooManyEarly: more than Config.MaxEarly messages arrived before
	// they could be handled.
	ErrTooManyEarly = errors.New("ship: too many early messages")
	// ErrNotComplete: SendData outside data exchange.
	ErrNotComplete = errors.New("ship: connection not in data exchange")
	// ErrPayload: SendData with a payload that is not JSON.
	ErrPayload = errors.New("ship: bad data payload")
)
