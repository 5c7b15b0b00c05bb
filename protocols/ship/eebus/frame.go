package eebus

import (
	"bytes"
	"errors"
	"fmt"
)

// MessageType is the first byte of every SHIP message (section 4): it says
// what the rest of the WebSocket message is.
type MessageType byte

// The SHIP message types.
const (
	TypeInit    MessageType = 0x00 // CMI only: the whole message is 00 00
	TypeControl MessageType = 0x01 // hello, protocol handshake, PIN, access methods
	TypeData    MessageType = 0x02 // data: one SPINE datagram
	TypeEnd     MessageType = 0x03 // connectionClose
)

// String names the type as section 4 does ("init", "control", "data",
// "end").
func (t MessageType) String() string {
	switch t {
	case TypeInit:
		return "init"
	case TypeControl:
		return "control"
	case TypeData:
		return "data"
	case TypeEnd:
		return "end"
	}
	return fmt.Sprintf("MessageType(0x%02x)", byte(t))
}

var (
	// ErrShortMessage is returned by Decode for a message with no type byte,
	// no value, or (types 1-3) nothing but NUL bytes after the type byte.
	ErrShortMessage = errors.New("eebus: SHIP message too short")
	// ErrUnknownType is returned by Decode for a type byte above TypeEnd.
	// Decode still returns the type and the body, so that a caller that
	// tolerates such peers can go on.
	ErrUnknownType = errors.New("eebus: unknown SHIP message type")
)

// CMI returns the Connection Mode Initialisation message: type init
// followed by the CMI head 0, exactly the two bytes 00 00. Each call
// returns a new slice.
func CMI() []byte {
	return []byte{byte(TypeInit), 0x00}
}

// Encode frames body as one SHIP message: the type byte followed by body
// (for types 1-3 the EEBus JSON, for TypeInit the CMI head). It adds
// nothing else: no newline, no NUL. Encode(TypeInit, []byte{0}) is the CMI.
func Encode(t MessageType, body []byte) []byte {
	msg := make([]byte, 1+len(body))
	msg[0] = byte(t)
	copy(msg[1:], body)
	return msg
}

// Decode splits one SHIP message (one WebSocket binary message) into its
// type and body. For TypeInit the body is returned as it is (for the CMI,
// the single head byte 0x00). For every other type the body is JSON, and
// Decode removes leading and trailing NUL bytes from it, because some
// devices append a 0x00 to their messages (section 4); a body that is
// nothing but NULs is ErrShortMessage. The body shares memory with msg.
//
// Messages shorter than two bytes fail with ErrShortMessage, as in ship-go,
// whose reader drops them. A type byte above TypeEnd fails with
// ErrUnknownType, but the type and the body are returned with the error.
// Decode does not look at the JSON itself.
func Decode(msg []byte) (MessageType, []byte, error) {
	if len(msg) < 2 {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrShortMessage, len(msg))
	}
	t := MessageType(msg[0])
	body := msg[1:]
	if t == TypeInit {
		return t, body, nil
	}
	body = bytes.Trim(body, "\x00")
	if len(body) == 0 {
		return t, nil, fmt.Errorf("%w: %s message without JSON", ErrShortMessage, t)
	}
	if t > TypeEnd {
		return t, body, fmt.Errorf("%w: 0x%02x", ErrUnknownType, byte(t))
	}
	return t, body, nil
}
