package eebus

import "encoding/json"

// The SHIP message names: the root keys of the messages (section 6).
// NameData, the data message, is declared with the conversion rules.
const (
	NameConnectionHello               = "connectionHello"
	NameMessageProtocolHandshake      = "messageProtocolHandshake"
	NameMessageProtocolHandshakeError = "messageProtocolHandshakeError"
	NameConnectionPinState            = "connectionPinState"
	NameConnectionPinInput            = "connectionPinInput"
	NameConnectionPinError            = "connectionPinError"
	NameAccessMethodsRequest          = "accessMethodsRequest"
	NameAccessMethods                 = "accessMethods"
	NameConnectionClose               = "connectionClose"
)

// ProtocolIDSPINE is the data header's protocolId for SPINE (section 6.6).
const ProtocolIDSPINE = "ee1.0"

// HelloPhase is connectionHello's phase.
type HelloPhase string

// The hello phases.
const (
	HelloReady   HelloPhase = "ready"
	HelloPending HelloPhase = "pending"
	HelloAborted HelloPhase = "aborted"
)

// ConnectionHello is the hello message (section 6.2), type control.
// Waiting is in milliseconds.
type ConnectionHello struct {
	Phase               HelloPhase `json:"phase"`
	Waiting             *uint32    `json:"waiting,omitempty"`
	ProlongationRequest *bool      `json:"prolongationRequest,omitempty"`
}

// HandshakeType is messageProtocolHandshake's handshakeType.
type HandshakeType string

// The protocol handshake types.
const (
	HandshakeAnnounceMax HandshakeType = "announceMax"
	HandshakeSelect      HandshakeType = "select"
)

// Format is a message format of the protocol handshake.
type Format string

// The formats; only JSON-UTF8 is used in practice.
const (
	FormatJSONUTF8  Format = "JSON-UTF8"
	FormatJSONUTF16 Format = "JSON-UTF16"
)

// Version is a SHIP protocol version.
type Version struct {
	Major uint8 `json:"major"`
	Minor uint8 `json:"minor"`
}

// Formats lists message formats.
type Formats struct {
	Format []Format `json:"format"`
}

// MessageProtocolHandshake is the protocol handshake message (section 6.3),
// type control.
type MessageProtocolHandshake struct {
	HandshakeType HandshakeType `json:"handshakeType"`
	Version       Version       `json:"version"`
	Formats       Formats       `json:"formats"`
}

// HandshakeErrorCode is messageProtocolHandshakeError's error.
type HandshakeErrorCode uint8

// The protocol handshake error codes.
const (
	HandshakeErrorRFU               HandshakeErrorCode = 0
	HandshakeErrorTimeout           HandshakeErrorCode = 1
	HandshakeErrorUnexpectedMessage HandshakeErrorCode = 2
	HandshakeErrorSelectionMismatch HandshakeErrorCode = 3
)

// MessageProtocolHandshakeError ends a failed protocol handshake (section
// 6.3), type control. Marshal writes the wrapped form
// {"messageProtocolHandshakeError":[{"error":N}]}; Unmarshal also accepts
// ship-go's unwrapped {"error":N}.
type MessageProtocolHandshakeError struct {
	Error HandshakeErrorCode `json:"error"`
}

// PinState is connectionPinState's pinState.
type PinState string

// The PIN states.
const (
	PinRequired PinState = "required"
	PinOptional PinState = "optional"
	PinOK       PinState = "pinOk"
	PinNone     PinState = "none"
)

// PinInputPermission is connectionPinState's inputPermission.
type PinInputPermission string

// The PIN input permissions.
const (
	PinInputBusy PinInputPermission = "busy"
	PinInputOK   PinInputPermission = "ok"
)

// ConnectionPinState announces a node's PIN state (section 6.4), type
// control.
type ConnectionPinState struct {
	PinState        PinState            `json:"pinState"`
	InputPermission *PinInputPermission `json:"inputPermission,omitempty"`
}

// ConnectionPinInput carries a PIN: 8 to 16 hex digits (section 6.4), type
// control.
type ConnectionPinInput struct {
	Pin string `json:"pin"`
}

// PinErrorCode is connectionPinError's error.
type PinErrorCode uint8

// PinErrorWrongPin is the one PIN error code known (section 6.4).
const PinErrorWrongPin PinErrorCode = 1

// ConnectionPinError rejects a PIN (section 6.4), type control.
type ConnectionPinError struct {
	Error PinErrorCode `json:"error"`
}

// AccessMethodsRequest asks the peer for its access methods (section 6.5),
// type control. It has no fields: it is always {"accessMethodsRequest":[]}.
type AccessMethodsRequest struct{}

// AccessMethods answers an AccessMethodsRequest (section 6.5), type
// control. ID, the SHIP ID, is required by the handshake; it is a pointer
// so that a message without one can be told from one with an empty ID.
type AccessMethods struct {
	ID        *string    `json:"id,omitempty"`
	DNSSDmDNS *DNSSDmDNS `json:"dnsSd_mDns,omitempty"`
	DNS       *DNS       `json:"dns,omitempty"`
}

// DNSSDmDNS says a node can be found by DNS-SD over mDNS. It has no fields.
type DNSSDmDNS struct{}

// DNS says a node can be found by DNS, at URI.
type DNS struct {
	URI string `json:"uri"`
}

// Data carries one SPINE message (section 6.6), type data. Payload holds
// the SPINE message in its own EEBus root form (rule 5), for example
// {"datagram":[...]}: Marshal copies it as it is (compacted) and Unmarshal
// stores it as it came, so it is decoded (or converted with FromEEBus) on
// its own. An empty Payload is written as null; SHIP requires a payload.
type Data struct {
	Header    DataHeader      `json:"header"`
	Payload   json.RawMessage `json:"payload"`
	Extension *Extension      `json:"extension,omitempty"`
}

// DataHeader is the header of a Data message.
type DataHeader struct {
	ProtocolID string `json:"protocolId"`
}

// Extension is the optional extension of a Data message. Binary is
// hexBinary, kept as its hex text.
type Extension struct {
	ExtensionID *string `json:"extensionId,omitempty"`
	Binary      *string `json:"binary,omitempty"`
	String      *string `json:"string,omitempty"`
}

// ClosePhase is connectionClose's phase.
type ClosePhase string

// The close phases.
const (
	CloseAnnounce ClosePhase = "announce"
	CloseConfirm  ClosePhase = "confirm"
)

// CloseReason is connectionClose's reason. Send only the two values below
// (ship-go sends free text, quirk Q8: accept anything).
type CloseReason string

// The close reasons.
const (
	CloseUnspecific        CloseReason = "unspecific"
	CloseRemovedConnection CloseReason = "removedConnection"
)

// ConnectionClose announces or confirms the end of a connection (section
// 6.7), type end. MaxTime is in milliseconds.
type ConnectionClose struct {
	Phase   ClosePhase   `json:"phase"`
	MaxTime *uint32      `json:"maxTime,omitempty"`
	Reason  *CloseReason `json:"reason,omitempty"`
}

// MessageName implements Message.
func (ConnectionHello) MessageName() string { return NameConnectionHello }

// MessageName implements Message.
func (MessageProtocolHandshake) MessageName() string { return NameMessageProtocolHandshake }

// MessageName implements Message.
func (MessageProtocolHandshakeError) MessageName() string {
	return NameMessageProtocolHandshakeError
}

// MessageName implements Message.
func (ConnectionPinState) MessageName() string { return NameConnectionPinState }

// MessageName implements Message.
func (ConnectionPinInput) MessageName() string { return NameConnectionPinInput }

// MessageName implements Message.
func (ConnectionPinError) MessageName() string { return NameConnectionPinError }

// MessageName implements Message.
func (AccessMethodsRequest) MessageName() string { return NameAccessMethodsRequest }

// MessageName implements Message.
func (AccessMethods) MessageName() string { return NameAccessMethods }

// MessageName implements Message.
func (Data) MessageName() string { return NameData }

// MessageName implements Message.
func (ConnectionClose) MessageName() string { return NameConnectionClose }

// MessageType implements Message.
func (ConnectionHello) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (MessageProtocolHandshake) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (MessageProtocolHandshakeError) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (ConnectionPinState) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (ConnectionPinInput) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (ConnectionPinError) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (AccessMethodsRequest) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (AccessMethods) MessageType() MessageType { return TypeControl }

// MessageType implements Message.
func (Data) MessageType() MessageType { return TypeData }

// MessageType implements Message.
func (ConnectionClose) MessageType() MessageType { return TypeEnd }

// Interface guards.
var (
	_ Message = ConnectionHello{}
	_ Message = MessageProtocolHandshake{}
	_ Message = MessageProtocolHandshakeError{}
	_ Message = ConnectionPinState{}
	_ Message = ConnectionPinInput{}
	_ Message = ConnectionPinError{}
	_ Message = AccessMethodsRequest{}
	_ Message = AccessMethods{}
	_ Message = Data{}
	_ Message = ConnectionClose{}
)

// NewMessage returns a pointer to a new, zero message of the type named
// name (a root key as Peek returns it), ready for Unmarshal, or false for
// a name that is not a SHIP message.
func NewMessage(name string) (Message, bool) {
	switch name {
	case NameConnectionHello:
		return new(ConnectionHello), true
	case NameMessageProtocolHandshake:
		return new(MessageProtocolHandshake), true
	case NameMessageProtocolHandshakeError:
		return new(MessageProtocolHandshakeError), true
	case NameConnectionPinState:
		return new(ConnectionPinState), true
	case NameConnectionPinInput:
		return new(ConnectionPinInput), true
	case NameConnectionPinError:
		return new(ConnectionPinError), true
	case NameAccessMethodsRequest:
		return new(AccessMethodsRequest), true
	case NameAccessMethods:
		return new(AccessMethods), true
	case NameData:
		return new(Data), true
	case NameConnectionClose:
		return new(ConnectionClose), true
	}
	return nil, false
}
