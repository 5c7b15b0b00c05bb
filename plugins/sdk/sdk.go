// Package sdk is what a protocol plugin imports. A plugin author writes a
// protocols.Protocol, exactly as for a built-in protocol, and hands it to
// Serve in main:
//
//	func main() { sdk.Serve(myprotocol.New()) }
//
// The gateway starts the binary, checks its checksum and handshake, and
// runs one session per device connection through it. plugins/README.md is
// the tutorial.
//
// It depends on the protocols contract and plugins/proto, never on the
// gateway.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// Version is reported to the gateway by Describe; set it from main (for
// example with -ldflags "-X github.com/wsgate/wsgate/plugins/sdk.Version=1.2.0").
var Version = "dev"

// Serve runs the protocols as a wsgate plugin and does not return. It exits
// when the gateway stops the plugin, and also when the gateway process dies
// without doing so, so that no plugin outlives its gateway.
func Serve(ps ...protocols.Protocol) {
	if len(ps) == 0 {
		fmt.Fprintln(os.Stderr, "sdk.Serve: no protocols")
		os.Exit(2)
	}
	srv := &server{protocols: make(map[string]protocols.Protocol)}
	for _, p := range ps {
		srv.protocols[p.Name()] = p
		srv.names = append(srv.names, p.Name())
	}
	go exitWithParent(os.Getppid())
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         plugin.PluginSet{pluginpb.PluginName: &pluginpb.GRPCPlugin{Impl: srv}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
	os.Exit(0)
}

// exitWithParent ends the plugin when its parent, the gateway, is gone: a
// gateway killed with SIGKILL cannot stop its plugins itself.
func exitWithParent(parent int) {
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			os.Exit(0)
		}
	}
}

// Logger returns a logger whose lines reach the gateway's log, at their
// level and with the plugin's name. Write nothing else to stdout: it is
// the go-plugin handshake channel.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// go-plugin parses hclog's JSON keys on the gateway side.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
			case slog.LevelKey:
				a.Key = "@level"
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(hclogLevel(l))
				}
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

func hclogLevel(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// server serves the gRPC contract for the protocols of this plugin.
type server struct {
	pluginpb.UnimplementedProtocolServer
	protocols map[string]protocols.Protocol
	names     []string
}

func (s *server) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	return &pluginpb.DescribeResponse{Protocols: s.names, Version: Version}, nil
}

// eventQueue bounds the events read ahead of the session; when the session
// is slower, the stream's flow control holds the gateway back, and the
// gateway closes connections whose plugin stalls for too long.
const eventQueue = 64

// Session runs one device connection.
func (s *server) Session(stream pluginpb.Protocol_SessionServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return errors.New("the first event of a session must be Open")
	}
	p, ok := s.protocols[open.GetProtocol()]
	if !ok {
		return fmt.Errorf("this plugin does not implement %q", open.GetProtocol())
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out := &outlet{stream: stream, acks: make(map[uint64]func(error))}
	session, err := p.NewSession(ctx, open.GetInfo().ToSessionInfo(), out)
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}

	// The receiver ends with the stream, which ends when this handler
	// returns.
	events := make(chan *pluginpb.Event, eventQueue)
	go func() {
		defer close(events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			if ack := ev.GetAck(); ack != nil {
				out.settle(ack.GetFrame(), ack.GetError().Err())
				continue
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	for ev := range events {
		switch e := ev.GetEvent().(type) {
		case *pluginpb.Event_Message:
			if err := session.OnMessage(e.Message.ToMessage()); err != nil {
				out.fail(err)
			}
		case *pluginpb.Event_Command:
			c := e.Command
			cmd := protocols.Command{Device: c.GetDevice(), ID: c.GetId(), Name: c.GetName(), Args: c.GetArgs()}
			if err := session.OnCommand(cmd); err != nil {
				out.action(&pluginpb.Action{Action: &pluginpb.Action_CommandFailed{CommandFailed: &pluginpb.CommandFailed{
					Id: cmd.ID, Name: cmd.Name, Error: pluginpb.ToError(err)}}})
			}
		case *pluginpb.Event_Closed:
			session.Close(e.Closed.GetError().Err())
			return nil
		}
	}
	// The stream broke without a Closed event: the gateway went away.
	session.Close(errors.New("the gateway ended the session stream"))
	return nil
}

// outlet is the plugin-side protocols.Outlet: each call becomes an action
// on the session's stream.
type outlet struct {
	mu     sync.Mutex // gRPC streams allow one sender at a time
	stream pluginpb.Protocol_SessionServer
	broken error

	acksMu sync.Mutex
	nextID uint64
	acks   map[uint64]func(error)
}

var _ protocols.Outlet = (*outlet)(nil)

func (o *outlet) action(a *pluginpb.Action) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.broken != nil {
		return o.broken
	}
	if err := o.stream.Send(a); err != nil {
		o.broken = fmt.Errorf("%w: session stream: %v", protocols.ErrClosed, err)
		return o.broken
	}
	return nil
}

// Attach implements protocols.Outlet. The gateway does not answer: an id
// that passes protocols.ValidDeviceID is attached, and should that still
// fail, the gateway closes the connection.
func (o *outlet) Attach(device string) error {
	if !protocols.ValidDeviceID(device) {
		return fmt.Errorf("attach %q: invalid device id", device)
	}
	return o.action(&pluginpb.Action{Action: &pluginpb.Action_Attach{Attach: &pluginpb.Attach{Device: device}}})
}

// Send implements protocols.Outlet.
func (o *outlet) Send(m protocols.Message) error {
	return o.action(&pluginpb.Action{Action: &pluginpb.Action_Send{Send: pluginpb.FromMessage(m)}})
}

// Publish implements protocols.Outlet. Refusals by the gateway (busy,
// invalid) arrive through the frame's Ack, since they are only known there.
func (o *outlet) Publish(f protocols.Frame) error {
	frame := &pluginpb.Frame{Channel: f.Channel, Payload: f.Payload, Qos: uint32(f.QoS), Retain: f.Retain}
	if f.Ack != nil {
		o.acksMu.Lock()
		o.nextID++
		frame.Id, frame.WantsAck = o.nextID, true
		o.acks[frame.Id] = f.Ack
		o.acksMu.Unlock()
	}
	err := o.action(&pluginpb.Action{Action: &pluginpb.Action_Publish{Publish: frame}})
	if err != nil && f.Ack != nil {
		o.acksMu.Lock()
		delete(o.acks, frame.Id)
		o.acksMu.Unlock()
	}
	return err
}

// Close implements protocols.Outlet.
func (o *outlet) Close(code int, reason string) {
	_ = o.action(&pluginpb.Action{Action: &pluginpb.Action_Close{Close: &pluginpb.Close{Code: int32(code), Reason: reason}}})
}

// fail closes the connection for an error returned by OnMessage, with the
// code of a *protocols.CloseError or 1011.
func (o *outlet) fail(err error) {
	var ce *protocols.CloseError
	if errors.As(err, &ce) {
		o.Close(ce.Code, ce.Reason)
		return
	}
	o.Close(protocols.CloseInternalError, "internal error")
}

func (o *outlet) settle(id uint64, err error) {
	o.acksMu.Lock()
	ack := o.acks[id]
	delete(o.acks, id)
	o.acksMu.Unlock()
	if ack != nil {
		ack(err)
	}
}
