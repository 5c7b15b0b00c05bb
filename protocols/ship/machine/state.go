package machine

import "fmt"

// Role says which side of the connection the machine is: the side that
// accepted the WebSocket is the SHIP server, the side that dialled it the
// SHIP client (section 1).
type Role int

// The roles.
const (
	Server Role = iota
	Client
)

// String returns "server" or "client".
func (r Role) String() string {
	switch r {
	case Server:
		return "server"
	case Client:
		return "client"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// State is a state of the SHIP connection. The values 0 to 39 are ship-go's
// ShipMessageExchangeState numbers as section 6 lists them, so that logs
// read alike; Closing and Closed are wsgate's own. Not every state is
// entered: the init states (ReadyInit, PendingInit, ...) are passed through
// without a StateChanged, and the PIN states other than CheckListen and
// CheckOK are declared only for the numbering (the machine supports PIN
// state "none" only).
type State int

// The states (section 6).
const (
	// CMI (section 6.1).
	CMIInitStart      State = 0
	CMIClientSend     State = 1
	CMIClientWait     State = 2
	CMIClientEvaluate State = 3
	CMIServerWait     State = 4
	CMIServerEvaluate State = 5

	// Connection hello (section 6.2).
	HelloState           State = 6
	HelloReadyInit       State = 7
	HelloReadyListen     State = 8
	HelloReadyTimeout    State = 9
	HelloPendingInit     State = 10
	HelloPendingListen   State = 11
	HelloPendingTimeout  State = 12
	HelloOK              State = 13
	HelloAbort           State = 14
	HelloAbortDone       State = 15
	HelloRemoteAbortDone State = 16
	HelloRejected        State = 17

	// Protocol handshake (section 6.3).
	ProtHServerInit           State = 18
	ProtHClientInit           State = 19
	ProtHServerListenProposal State = 20
	ProtHServerListenConfirm  State = 21
	ProtHClientListenChoice   State = 22
	ProtHTimeout              State = 23
	ProtHClientOK             State = 24
	ProtHServerOK             State = 25

	// PIN verification (section 6.4).
	PinCheckInit     State = 26
	PinCheckListen   State = 27
	PinCheckError    State = 28
	PinCheckBusyInit State = 29
	PinCheckBusyWait State = 30
	PinCheckOK       State = 31
	PinAskInit       State = 32
	PinAskProcess    State = 33
	PinAskRestricted State = 34
	PinAskOK         State = 35

	// Access methods and data exchange (sections 6.5, 6.6).
	AccessMethodsRequest State = 36
	Approved             State = 37
	Complete             State = 38

	// Error: a handshake or protocol error closed the connection (ship-go's
	// SmeStateError). Terminal.
	Error State = 39

	// Closing: a connectionClose announce was sent or confirmed (section
	// 6.7); the machine waits for the confirm or for the close delay.
	Closing State = 40
	// Closed: the machine has asked for the WebSocket to be closed.
	// Terminal.
	Closed State = 41
)

var stateNames = map[State]string{
	CMIInitStart: "CMIInitStart", CMIClientSend: "CMIClientSend", CMIClientWait: "CMIClientWait",
	CMIClientEvaluate: "CMIClientEvaluate", CMIServerWait: "CMIServerWait",
	CMIServerEvaluate: "CMIServerEvaluate",
	HelloState:        "HelloState", HelloReadyInit: "HelloReadyInit", HelloReadyListen: "HelloReadyListen",
	HelloReadyTimeout: "HelloReadyTimeout", HelloPendingInit: "HelloPendingInit",
	HelloPendingListen: "HelloPendingListen", HelloPendingTimeout: "HelloPendingTimeout",
	HelloOK: "HelloOK", HelloAbort: "HelloAbort", HelloAbortDone: "HelloAbortDone",
	HelloRemoteAbortDone: "HelloRemoteAbortDone", HelloRejected: "HelloRejected",
	ProtHServerInit: "ProtHServerInit", ProtHClientInit: "ProtHClientInit",
	ProtHServerListenProposal: "ProtHServerListenProposal",
	ProtHServerListenConfirm:  "ProtHServerListenConfirm",
	ProtHClientListenChoice:   "ProtHClientListenChoice", ProtHTimeout: "ProtHTimeout",
	ProtHClientOK: "ProtHClientOK", ProtHServerOK: "ProtHServerOK",
	PinCheckInit: "PinCheckInit", PinCheckListen: "PinCheckListen", PinCheckError: "PinCheckError",
	PinCheckBusyInit: "PinCheckBusyInit", PinCheckBusyWait: "PinCheckBusyWait",
	PinCheckOK: "PinCheckOK", PinAskInit: "PinAskInit", PinAskProcess: "PinAskProcess",
	PinAskRestricted: "PinAskRestricted", PinAskOK: "PinAskOK",
	AccessMethodsRequest: "AccessMethodsRequest", Approved: "Approved", Complete: "Complete",
	Error: "Error", Closing: "Closing", Closed: "Closed",
}

// String returns the state's name and number, for example
// "HelloReadyListen(8)".
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return fmt.Sprintf("%s(%d)", n, int(s))
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Terminal reports whether s is Error or Closed: the machine ignores every
// further input.
func (s State) Terminal() bool { return s == Error || s == Closed }

// inHello reports whether s waits for the peer's connectionHello.
func (s State) inHello() bool { return s == HelloReadyListen || s == HelloPendingListen }

// inProtocolHandshake reports whether s waits for a protocol handshake
// message.
func (s State) inProtocolHandshake() bool {
	return s == ProtHServerListenProposal || s == ProtHServerListenConfirm || s == ProtHClientListenChoice
}

// beforeHello reports whether the hello has not started yet.
func (s State) beforeHello() bool { return s <= CMIServerEvaluate }
