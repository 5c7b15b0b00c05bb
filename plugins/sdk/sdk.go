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
	"runtime"
	"runtime/debug"
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
	if os.Getenv("GOGC") == "" {
		// A plugin's live heap is a few MiB while every message allocates
		// its events and actions: at the default GOGC the collector runs
		// so often that it costs a plugin about a third of its throughput. A
		// higher target trades a few MiB for that; GOGC overrides it.
		debug.SetGCPercent(400)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         plugin.PluginSet{pluginpb.PluginName: &pluginpb.GRPCPlugin{Impl: srv}},
		GRPCServer:      pluginpb.NewServer,
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

// stderr is the process's standard error as the gateway reads it: once
// Serve runs, go-plugin points os.Stderr elsewhere.
var stderr = os.Stderr

// Logger returns a logger whose lines reach the gateway's log, at their
// level and with the plugin's name. Write nothing else to stdout: it is
// the go-plugin handshake channel.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// go-plugin parses hclog's JSON keys on the gateway side.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.Format(hclogTimeFormat))
				}
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

// hclogTimeFormat is the only timestamp layout go-plugin parses.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

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

// Session runs one device connection.
func (s *server) Session(stream pluginpb.Protocol_SessionServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	var open *pluginpb.Open
	if evs := first.GetEvents(); len(evs) == 1 {
		open = evs[0].GetOpen()
	}
	if open == nil {
		return errors.New("the first event of a session must be Open, alone")
	}
	p, ok := s.protocols[open.GetProtocol()]
	if !ok {
		return fmt.Errorf("this plugin does not implement %q", open.GetProtocol())
	}
	info, err := open.GetInfo().ToSessionInfo()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	out := newOutlet(ctx, stream)
	session, err := p.NewSession(ctx, info, out)
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}

	// The receiver ends with the stream, which ends when this handler
	// returns. The gateway sends at most window messages and commands ahead
	// of our Consumed actions, so the queue never fills and the receiver
	// always keeps reading: acks reach their frames at once.
	window := int(open.GetWindow())
	events := make(chan *pluginpb.Event, window+1) // +1: the Closed event
	go func() {
		defer close(events)
		for {
			batch, err := stream.Recv()
			if err != nil {
				return
			}
			for _, ev := range batch.GetEvents() {
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
		}
	}()

	consumed := 0
	for ev := range events {
		switch e := ev.GetEvent().(type) {
		case *pluginpb.Event_Message:
			consumed++
			if err := session.OnMessage(e.Message.ToMessage()); err != nil {
				out.fail(err)
			}
		case *pluginpb.Event_Command:
			consumed++
			c := e.Command
			cmd := protocols.Command{Device: c.GetDevice(), ID: c.GetId(), Name: c.GetName(), Args: c.GetArgs()}
			if err := session.OnCommand(cmd); err != nil {
				out.action(&pluginpb.Action{Action: &pluginpb.Action_CommandFailed{CommandFailed: &pluginpb.CommandFailed{
					Id: cmd.ID, Name: cmd.Name, Error: pluginpb.ToError(err)}}})
			}
		case *pluginpb.Event_Closed:
			session.Close(e.Closed.GetError().Err())
			out.flush()
			return nil
		}
		// Return window credit in batches, and whenever the queue runs dry.
		if consumed > 0 && (len(events) == 0 || consumed >= window/4) {
			out.action(&pluginpb.Action{Action: &pluginpb.Action_Consumed{Consumed: &pluginpb.Consumed{Events: uint32(consumed)}}})
			consumed = 0
		}
	}
	// The stream broke without a Closed event: the gateway went away.
	session.Close(errors.New("the gateway ended the session stream"))
	return nil
}

// maxActions bounds the actions queued to the gateway; a session that
// produces more waits for the stream.
const maxActions = 4096

// outlet is the plugin-side protocols.Outlet: each call queues an action,
// and a writer goroutine sends whatever is queued as one batch.
type outlet struct {
	stream pluginpb.Protocol_SessionServer

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the queue changes
	queue   []*pluginpb.Action
	spare   []*pluginpb.Action // the writer's other buffer
	sending bool               // the writer holds a batch
	broken  error

	acksMu sync.Mutex
	nextID uint64
	acks   map[uint64]func(error)
}

var _ protocols.Outlet = (*outlet)(nil)

func newOutlet(ctx context.Context, stream pluginpb.Protocol_SessionServer) *outlet {
	o := &outlet{stream: stream, acks: make(map[uint64]func(error))}
	o.cond = sync.NewCond(&o.mu)
	go o.write(ctx)
	return o
}

// write sends queued actions in batches until ctx ends.
func (o *outlet) write(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() {
		o.mu.Lock()
		if o.broken == nil {
			o.broken = fmt.Errorf("%w: session ended", protocols.ErrClosed)
		}
		o.cond.Broadcast()
		o.mu.Unlock()
	})
	defer stop()
	for {
		o.mu.Lock()
		for len(o.queue) == 0 && o.broken == nil {
			o.cond.Wait()
		}
		if len(o.queue) < maxActions/2 {
			// Let the session queue what it is about to send, so that one
			// stream message carries it all.
			o.mu.Unlock()
			runtime.Gosched()
			o.mu.Lock()
		}
		if o.broken != nil {
			o.mu.Unlock()
			return
		}
		// Two buffers take turns, so that a busy session allocates none.
		batch := o.queue
		o.queue = o.spare[:0]
		o.sending = true
		o.cond.Broadcast()
		o.mu.Unlock()
		err := o.stream.Send(&pluginpb.Actions{Actions: batch})
		clear(batch)
		o.mu.Lock()
		o.spare = batch
		o.sending = false
		if err != nil {
			o.broken = fmt.Errorf("%w: session stream: %v", protocols.ErrClosed, err)
		}
		o.cond.Broadcast()
		o.mu.Unlock()
	}
}

// action queues a, waiting while the queue is full.
func (o *outlet) action(a *pluginpb.Action) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.queue) >= maxActions && o.broken == nil {
		o.cond.Wait()
	}
	if o.broken != nil {
		return o.broken
	}
	o.queue = append(o.queue, a)
	o.cond.Broadcast()
	return nil
}

// flush waits until every queued action has been sent.
func (o *outlet) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for (len(o.queue) > 0 || o.sending) && o.broken == nil {
		o.cond.Wait()
	}
}

// Attach implements protocols.Outlet. The gateway does not answer: an id
// that passes protocols.ValidDeviceID is attached, and should that still
// fail (a device the listener does not authenticate, say), the gateway
// closes the connection.
func (o *outlet) Attach(d protocols.Device) error {
	if !protocols.ValidDeviceID(d.ID) {
		return fmt.Errorf("attach %q: invalid device id", d.ID)
	}
	return o.action(&pluginpb.Action{Action: &pluginpb.Action_Attach{Attach: &pluginpb.Attach{Device: d.ID, Token: d.Token}}})
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
