// Package echo implements the diagnostic "echo" subprotocol: every text and
// binary message comes back unchanged, as the same message type. It exists
// to test the WebSocket layer (docs/CONFORMANCE.md); it attaches no device
// and publishes nothing.
//
// It registers itself as a built-in module and depends only on the
// protocols contract.
package echo

import (
	"context"

	"github.com/wsgate/wsgate/protocols"
)

// Name is the subprotocol token.
const Name = "echo"

// Protocol is the echo protocol.
type Protocol struct{}

// Name implements protocols.Protocol.
func (Protocol) Name() string { return Name }

// NewSession implements protocols.Protocol.
func (Protocol) NewSession(_ context.Context, _ protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	return session{out: out}, nil
}

type session struct{ out protocols.Outlet }

// OnMessage sends the message back. The data is copied: the gateway reuses
// its read buffer once OnMessage returns.
func (s session) OnMessage(m protocols.Message) error {
	return s.out.Send(protocols.Message{Type: m.Type, Data: append([]byte(nil), m.Data...)})
}

// OnCommand refuses: an echo session is never attached to a device.
func (session) OnCommand(protocols.Command) error { return protocols.ErrDeviceOffline }

// Close implements protocols.Session.
func (session) Close(error) {}

var _ protocols.Protocol = Protocol{}
