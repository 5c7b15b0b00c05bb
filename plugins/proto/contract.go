// Package pluginpb is the contract between wsgate and its protocol plugins:
// the gRPC service generated from plugin.proto, the go-plugin handshake
// both sides must agree on, and the conversions between the wire messages
// and the protocols package's types.
//
// The gateway side lives in package plugins, the plugin side in
// plugins/sdk; both import this package and nothing of each other.
package pluginpb

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/wsgate/wsgate/protocols"
)

// Handshake is checked by go-plugin before anything else: a binary that
// is not a wsgate plugin, or speaks another contract version, is refused.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "WSGATE_PLUGIN",
	MagicCookieValue: "c6b1c1d4-wsgate-protocol-plugin",
}

// PluginName is the name the protocol service is dispensed under.
const PluginName = "protocol"

// GRPCPlugin adapts the service to go-plugin. The plugin side sets Impl;
// the gateway side leaves it nil and gets a ProtocolClient.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl ProtocolServer
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterProtocolServer(s, p.Impl)
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewProtocolClient(c), nil
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// windowSize is gRPC's flow-control window, per stream and per
// connection. The default 64 KiB makes a busy session wait for window
// updates between batches; both sides use this one.
const windowSize = 1 << 20

// StreamOptions are the gateway side's dial options.
func StreamOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(windowSize), grpc.WithInitialConnWindowSize(windowSize)}
}

// NewServer builds the plugin side's gRPC server (go-plugin's
// ServeConfig.GRPCServer) with the same window.
func NewServer(opts []grpc.ServerOption) *grpc.Server {
	return plugin.DefaultGRPCServer(append(opts, grpc.InitialWindowSize(windowSize), grpc.InitialConnWindowSize(windowSize)))
}

// ToError encodes err for the wire; nil stays nil.
func ToError(err error) *Error {
	if err == nil {
		return nil
	}
	kind := ErrorKind_ERROR_KIND_OTHER
	switch {
	case errors.Is(err, protocols.ErrBusy):
		kind = ErrorKind_ERROR_KIND_BUSY
	case errors.Is(err, protocols.ErrInvalidFrame):
		kind = ErrorKind_ERROR_KIND_INVALID_FRAME
	case errors.Is(err, protocols.ErrClosed):
		kind = ErrorKind_ERROR_KIND_CLOSED
	case errors.Is(err, protocols.ErrDeviceOffline):
		kind = ErrorKind_ERROR_KIND_DEVICE_OFFLINE
	}
	return &Error{Kind: kind, Message: err.Error()}
}

// remoteError keeps the message from the other side and matches the
// sentinel of its kind with errors.Is.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// Err decodes the wire error; a nil *Error is a nil error.
func (e *Error) Err() error {
	if e == nil {
		return nil
	}
	var kind error
	switch e.GetKind() {
	case ErrorKind_ERROR_KIND_BUSY:
		kind = protocols.ErrBusy
	case ErrorKind_ERROR_KIND_INVALID_FRAME:
		kind = protocols.ErrInvalidFrame
	case ErrorKind_ERROR_KIND_CLOSED:
		kind = protocols.ErrClosed
	case ErrorKind_ERROR_KIND_DEVICE_OFFLINE:
		kind = protocols.ErrDeviceOffline
	}
	return &remoteError{msg: e.GetMessage(), kind: kind}
}

// FromMessage encodes a message.
func FromMessage(m protocols.Message) *Message {
	t := MessageType_MESSAGE_TYPE_TEXT
	if m.Type == protocols.Binary {
		t = MessageType_MESSAGE_TYPE_BINARY
	}
	return &Message{Type: t, Data: m.Data}
}

// ToMessage decodes a message.
func (m *Message) ToMessage() protocols.Message {
	t := protocols.Text
	if m.GetType() == MessageType_MESSAGE_TYPE_BINARY {
		t = protocols.Binary
	}
	return protocols.Message{Type: t, Data: m.GetData()}
}

// FromSessionInfo encodes session information.
func FromSessionInfo(i protocols.SessionInfo) *SessionInfo {
	return &SessionInfo{
		Id: i.ID, Subprotocol: i.Subprotocol, RemoteAddr: i.RemoteAddr, Path: i.Path,
		MaxMessage: i.MaxMessage, HeartbeatMs: i.Heartbeat.Milliseconds(), Gateway: i.Gateway, Tls: i.TLS != nil,
	}
}

// ToSessionInfo decodes session information. The TLS state does not cross
// the process boundary; a TLS connection gets an empty state.
func (i *SessionInfo) ToSessionInfo() protocols.SessionInfo {
	info := protocols.SessionInfo{
		ID: i.GetId(), Subprotocol: i.GetSubprotocol(), RemoteAddr: i.GetRemoteAddr(), Path: i.GetPath(),
		MaxMessage: i.GetMaxMessage(), Heartbeat: time.Duration(i.GetHeartbeatMs()) * time.Millisecond, Gateway: i.GetGateway(),
	}
	if i.GetTls() {
		info.TLS = &tls.ConnectionState{}
	}
	return info
}
