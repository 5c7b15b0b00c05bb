// Package pluginpb is the contract between wsgate and its protocol plugins:
// the gRPC service and the link's messages generated from plugin.proto, the
// link's framing, the go-plugin handshake both sides must agree on, and the
// conversions between the wire messages and the protocols package's types.
//
// The gateway side lives in package plugins, the plugin side in
// plugins/sdk; both import this package and nothing of each other.
package pluginpb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/wsgate/wsgate/protocols"
)

// Handshake is checked by go-plugin before anything else: a binary that
// is not a wsgate plugin, or speaks another contract version, is refused.
var Handshake = plugin.HandshakeConfig{
	// 2: Open is answered with Opened and Attach with Attached.
	// 3: the sessions travel on the link (link.go), not on gRPC streams.
	ProtocolVersion:  3,
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

// sentinels are the errors callers distinguish, by their wire kind. Both
// sides map through this one table, so errors.Is works across the process
// boundary.
var sentinels = []struct {
	kind ErrorKind
	err  error
}{
	{ErrorKind_ERROR_KIND_BUSY, protocols.ErrBusy},
	{ErrorKind_ERROR_KIND_INVALID_FRAME, protocols.ErrInvalidFrame},
	{ErrorKind_ERROR_KIND_CLOSED, protocols.ErrClosed},
	{ErrorKind_ERROR_KIND_DEVICE_OFFLINE, protocols.ErrDeviceOffline},
	{ErrorKind_ERROR_KIND_UNAUTHORIZED, protocols.ErrUnauthorized},
	{ErrorKind_ERROR_KIND_FORBIDDEN, protocols.ErrForbidden},
	{ErrorKind_ERROR_KIND_SEND_QUEUE_FULL, protocols.ErrSendQueueFull},
}

// ToError encodes err for the wire: its text, the sentinel it matches and
// the close it asks for; nil stays nil.
func ToError(err error) *Error {
	if err == nil {
		return nil
	}
	e := &Error{Kind: ErrorKind_ERROR_KIND_OTHER, Message: err.Error()}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			e.Kind = s.kind
			break
		}
	}
	if ce, ok := errors.AsType[*protocols.CloseError](err); ok {
		e.CloseCode, e.CloseReason = int32(ce.Code), ce.Reason
	}
	return e
}

// remoteError keeps the text from the other side and matches its sentinel
// with errors.Is and its close with errors.As.
type remoteError struct {
	msg  string
	wrap []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.wrap }

// Err decodes the wire error; a nil *Error is a nil error.
func (e *Error) Err() error {
	if e == nil {
		return nil
	}
	r := &remoteError{msg: e.GetMessage()}
	for _, s := range sentinels {
		if e.GetKind() == s.kind {
			r.wrap = append(r.wrap, s.err)
			break
		}
	}
	if e.GetCloseCode() != 0 {
		r.wrap = append(r.wrap, &protocols.CloseError{Code: int(e.GetCloseCode()), Reason: e.GetCloseReason()})
	}
	return r
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
		MaxMessage: i.MaxMessage, HeartbeatMs: i.Heartbeat.Milliseconds(), Gateway: i.Gateway,
		Tls: fromTLS(i.TLS), Outbound: i.Outbound, CommandTimeoutMs: i.CommandTimeout.Milliseconds(),
	}
}

func fromTLS(cs *tls.ConnectionState) *TLS {
	if cs == nil {
		return nil
	}
	t := &TLS{Version: uint32(cs.Version), CipherSuite: uint32(cs.CipherSuite), ServerName: cs.ServerName, NegotiatedProtocol: cs.NegotiatedProtocol}
	for _, c := range cs.PeerCertificates {
		t.PeerCertificates = append(t.PeerCertificates, c.Raw)
	}
	return t
}

// ToSessionInfo decodes session information. The TLS state has what
// fromTLS carries; the peer's certificates are parsed again, and verified
// chains are left out (the gateway verified them).
func (i *SessionInfo) ToSessionInfo() (protocols.SessionInfo, error) {
	info := protocols.SessionInfo{
		ID: i.GetId(), Subprotocol: i.GetSubprotocol(), RemoteAddr: i.GetRemoteAddr(), Path: i.GetPath(),
		MaxMessage: i.GetMaxMessage(), Heartbeat: time.Duration(i.GetHeartbeatMs()) * time.Millisecond, Gateway: i.GetGateway(),
		Outbound: i.GetOutbound(), CommandTimeout: time.Duration(i.GetCommandTimeoutMs()) * time.Millisecond,
	}
	t := i.GetTls()
	if t == nil {
		return info, nil
	}
	info.TLS = &tls.ConnectionState{
		Version: uint16(t.GetVersion()), CipherSuite: uint16(t.GetCipherSuite()), ServerName: t.GetServerName(),
		NegotiatedProtocol: t.GetNegotiatedProtocol(), HandshakeComplete: true,
	}
	for _, der := range t.GetPeerCertificates() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return info, fmt.Errorf("peer certificate: %w", err)
		}
		info.TLS.PeerCertificates = append(info.TLS.PeerCertificates, c)
	}
	return info, nil
}
