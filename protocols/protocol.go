package protocols

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// MessageType is the RFC 6455 data frame type of a whole message.
type MessageType int

// The two data message types of RFC 6455; the numbers are the opcodes.
const (
	Text   MessageType = 1
	Binary MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case Text:
		return "text"
	case Binary:
		return "binary"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// Message is one complete WebSocket data message, in either direction.
type Message struct {
	Type MessageType
	Data []byte
}

// Protocol implements one WebSocket subprotocol.
type Protocol interface {
	// Name is the subprotocol token negotiated in Sec-WebSocket-Protocol.
	Name() string
	// NewSession starts the protocol on a freshly upgraded connection. ctx is
	// cancelled when the connection ends; timers the session starts should
	// stop with it.
	NewSession(ctx context.Context, info SessionInfo, out Outlet) (Session, error)
}

// Session is the protocol state of one connection. The gateway never calls
// its methods concurrently, so a session needs no locking for state that only
// these methods touch. Callbacks it receives from elsewhere (Frame.Ack) run
// on other goroutines.
type Session interface {
	// OnMessage handles one inbound message. A non-nil error closes the
	// connection: with the code of a *CloseError, else 1011. The message's
	// Data is only valid during the call (the gateway reuses the buffer):
	// copy what must outlive it. A panic in any method is recovered by the
	// gateway and closes the connection with 1011.
	OnMessage(Message) error
	// OnCommand delivers a downlink command addressed to the device this
	// session attached as. An error is reported as the command's result.
	OnCommand(Command) error
	// Close tells the session its connection has ended; err is nil for a
	// normal close. No other method is called afterwards.
	Close(err error)
}

// GoingAway is implemented by sessions whose protocol has a closing
// handshake of its own (SHIP's connectionClose). When the gateway shuts
// down, or no longer wants a connection it dialled, it calls GoingAway
// instead of closing with 1001; the session then closes the connection
// through its Outlet. Connections still open when the shutdown grace ends
// are cut.
type GoingAway interface {
	GoingAway()
}

// Outlet is what a session can do to the world. Every method is safe for
// concurrent use and none blocks on the network.
type Outlet interface {
	// Attach binds the session to a device identity once the protocol has
	// established it (after a hello, a SHIP handshake...). From then on
	// commands for the device reach OnCommand, and the device is announced
	// online. A session attaches once; a later session attaching the same
	// device replaces this one. On a listener that authenticates devices
	// the gateway checks the device first and refuses it with an error
	// matching ErrUnauthorized; the session should then close with 1008.
	Attach(Device) error
	// Send queues a message to the device. It fails with ErrSendQueueFull
	// when the device does not keep up; the gateway then closes the
	// connection.
	Send(Message) error
	// Publish hands a frame to the router. It fails fast (ErrBusy) instead
	// of blocking when the router's queues are full.
	Publish(Frame) error
	// Close starts the closing handshake with the given code and reason.
	Close(code int, reason string)
}

// Device is who a session attaches as.
type Device struct {
	// ID names the device; it must satisfy ValidDeviceID.
	ID string
	// Token is the secret the device presented in the protocol's own
	// messages (done's hello token), if any. On a listener that
	// authenticates devices by token the gateway checks it, or else the
	// upgrade request's Authorization: Bearer token. It is never logged
	// or published.
	Token string
	// Description, when the device gives one, says what it is and what it
	// measures and controls; nil otherwise.
	Description *Description
}

// SessionInfo describes the connection a session runs on.
type SessionInfo struct {
	ID          string        // unique within this gateway process
	Subprotocol string        // the negotiated name
	RemoteAddr  string        // host:port of the peer
	Path        string        // the request path the client upgraded on
	MaxMessage  int64         // read limit per message in bytes
	Heartbeat   time.Duration // interval of the gateway's WebSocket pings
	Gateway     string        // the gateway instance id
	TLS         *tls.ConnectionState
	// Outbound is true when the gateway dialled the connection (it is the
	// WebSocket client), false when the peer connected to it.
	Outbound bool
	// CommandTimeout is how long the gateway waits for the result of a
	// command it hands to OnCommand. Then it answers the command itself
	// with "timeout" (and with "device disconnected" for those unanswered
	// when the session ends): a session can forget a command by then, and
	// a result it publishes later is refused.
	CommandTimeout time.Duration
}

// CloseError asks the gateway to close the connection with a specific code.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("close %d: %s", e.Code, e.Reason)
}

// Close codes used across the gateway: RFC 6455 section 7.4.1's, and one
// of its own.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseMessageTooBig   = 1009
	CloseInternalError   = 1011
	// CloseReplaced (private use, RFC 6455 section 7.4.2) closes a session
	// because a newer session of the same device took over, through this
	// gateway or another one of the fleet. A device that gets it while it
	// still wants to be connected has a second connection somewhere.
	CloseReplaced = 4000
)

// Errors that callers distinguish.
var (
	// ErrNoSubprotocol: the client offered no subprotocol this gateway serves.
	ErrNoSubprotocol = errors.New("no supported subprotocol offered")
	// ErrBusy: a bounded queue on the way to the broker is full; retry later.
	ErrBusy = errors.New("busy: queue full")
	// ErrSendQueueFull: the device does not read its messages fast enough.
	ErrSendQueueFull = errors.New("send queue to device full")
	// ErrClosed: the connection or component has been closed.
	ErrClosed = errors.New("closed")
	// ErrDeviceOffline: a command names a device that has no session here.
	ErrDeviceOffline = errors.New("device offline")
	// ErrInvalidFrame: a frame cannot be routed (e.g. its channel is not a
	// valid topic); sending it again will not help.
	ErrInvalidFrame = errors.New("invalid frame")
	// ErrUnauthorized: the device could not prove its identity (Attach).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the device may not publish on that channel, or receive
	// that command (the gateway's access rules).
	ErrForbidden = errors.New("forbidden")
)
