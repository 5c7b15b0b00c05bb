// Package shiptest holds what the SHIP tests share: the canonical
// messages a scripted SHIP peer sends, and the readers of the section 10
// traces and their plain JSON in protocols/ship/eebus/testdata.
//
// It is imported by tests only. It spells every message as it goes over
// the wire (the type byte, then the EEBus JSON) and imports nothing of
// wsgate, so the tests of eebus itself can use it and the expected bytes
// never come from the code under test.
package shiptest

import (
	"fmt"
	"time"
)

// The SHIP message types (the first byte of a message).
const (
	typeInit    byte = 0
	typeControl byte = 1
	typeData    byte = 2
	typeEnd     byte = 3
)

// message is one SHIP message: the type byte followed by body. Its
// capacity is its length, so that appending to it never writes into a
// message another test holds.
func message(typ byte, body string) []byte {
	msg := make([]byte, 1+len(body))
	msg[0] = typ
	copy(msg[1:], body)
	return msg
}

// CMI is the connection mode initialisation both sides send first.
var CMI = []byte{typeInit, 0x00}

// Control is a control message (type 1) with the EEBus JSON json.
func Control(json string) []byte { return message(typeControl, json) }

// End is an end message (type 3) with the EEBus JSON json.
func End(json string) []byte { return message(typeEnd, json) }

// The messages of a handshake that goes through: both roles send the same
// hello, select, PIN state and access methods request.
var (
	HelloReady           = Control(`{"connectionHello":[{"phase":"ready"},{"waiting":60000}]}`)
	AnnounceMax          = Control(`{"messageProtocolHandshake":[{"handshakeType":"announceMax"},{"version":[{"major":1},{"minor":0}]},{"formats":[{"format":["JSON-UTF8"]}]}]}`)
	Select               = Control(`{"messageProtocolHandshake":[{"handshakeType":"select"},{"version":[{"major":1},{"minor":0}]},{"formats":[{"format":["JSON-UTF8"]}]}]}`)
	PINNone              = Control(`{"connectionPinState":[{"pinState":"none"}]}`)
	AccessMethodsRequest = Control(`{"accessMethodsRequest":[]}`)
)

// Aborted is the hello that aborts the handshake.
var Aborted = Control(`{"connectionHello":[{"phase":"aborted"}]}`)

// Confirm confirms the peer's close announce.
var Confirm = End(`{"connectionClose":[{"phase":"confirm"}]}`)

// Hello is a hello of phase with waiting in milliseconds.
func Hello(phase string, waiting time.Duration) []byte {
	return Control(fmt.Sprintf(`{"connectionHello":[{"phase":%q},{"waiting":%d}]}`, phase, waiting.Milliseconds()))
}

// AccessMethods answers the access methods request with SHIP ID id.
func AccessMethods(id string) []byte {
	return Control(fmt.Sprintf(`{"accessMethods":[{"id":%q}]}`, id))
}

// HandshakeError is the protocol handshake error with code.
func HandshakeError(code int) []byte {
	return Control(fmt.Sprintf(`{"messageProtocolHandshakeError":[{"error":%d}]}`, code))
}

// Announce announces the close with maxTime in milliseconds and reason.
func Announce(maxTime time.Duration, reason string) []byte {
	return End(fmt.Sprintf(`{"connectionClose":[{"phase":"announce"},{"maxTime":%d},{"reason":%q}]}`, maxTime.Milliseconds(), reason))
}

// DataMessage is a data message (type 2) that carries the SPINE payload
// payload (EEBus JSON) in its EEBus root form.
func DataMessage(payload string) []byte {
	return message(typeData, `{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":`+payload+`}]}`)
}
