package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// remoteProtocol is a protocol implemented by a plugin process.
type remoteProtocol struct {
	name   string
	plugin *supervised
}

func (p *remoteProtocol) Name() string { return p.name }

// NewSession opens the session's stream to the plugin.
func (p *remoteProtocol) NewSession(_ context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	client, pluginCtx := p.plugin.current()
	if client == nil {
		return nil, fmt.Errorf("plugin %s is not running", p.plugin.name)
	}
	// The stream lives as long as the session and the plugin process, not
	// as long as the connection's context: the Closed event must still go
	// out after the connection has ended.
	ctx, cancel := context.WithCancel(pluginCtx)
	stream, err := client.Session(ctx)
	if err == nil {
		err = stream.Send(&pluginpb.Event{Event: &pluginpb.Event_Open{Open: &pluginpb.Open{Protocol: p.name, Info: pluginpb.FromSessionInfo(info)}}})
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("plugin %s: open session: %w", p.plugin.name, err)
	}
	s := &remoteSession{
		plugin: p.plugin, out: out, stream: stream, ctx: ctx, cancel: cancel,
		events: make(chan *pluginpb.Event, p.plugin.host.opts.SessionQueue),
	}
	go s.sendLoop()
	go s.recvLoop()
	return s, nil
}

// remoteSession relays one connection's events to the plugin and its
// actions back. A send goroutine drains a bounded queue into the stream; a
// receive goroutine carries out the plugin's actions. Both end with the
// stream.
type remoteSession struct {
	plugin *supervised
	out    protocols.Outlet
	stream pluginpb.Protocol_SessionClient
	ctx    context.Context // the stream's
	cancel context.CancelFunc
	events chan *pluginpb.Event

	mu      sync.Mutex
	closing bool // Close was called: no event may follow Closed
}

// enqueue hands an event to the send goroutine, waiting up to the stall
// timeout when the plugin does not keep up. A plugin that stalls longer is
// treated as hung: it is restarted, and this session fails.
func (s *remoteSession) enqueue(ev *pluginpb.Event, wait bool) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return protocols.ErrClosed
	}
	select {
	case s.events <- ev:
		return nil
	default:
	}
	if wait {
		timer := time.NewTimer(s.plugin.host.opts.StallTimeout)
		defer timer.Stop()
		select {
		case s.events <- ev:
			return nil
		case <-s.ctx.Done():
			return protocols.ErrClosed
		case <-timer.C:
		}
	}
	s.plugin.stalled()
	return &protocols.CloseError{Code: protocols.CloseInternalError, Reason: "protocol plugin stalled"}
}

// OnMessage implements protocols.Session.
func (s *remoteSession) OnMessage(m protocols.Message) error {
	m.Data = append([]byte(nil), m.Data...) // the gateway reuses its buffer
	return s.enqueue(&pluginpb.Event{Event: &pluginpb.Event_Message{Message: pluginpb.FromMessage(m)}}, true)
}

// OnCommand implements protocols.Session. The plugin's verdict comes back
// as a CommandFailed action when it refuses.
func (s *remoteSession) OnCommand(cmd protocols.Command) error {
	c := &pluginpb.Command{Device: cmd.Device, Id: cmd.ID, Name: cmd.Name, Args: cmd.Args}
	if err := s.enqueue(&pluginpb.Event{Event: &pluginpb.Event_Command{Command: c}}, true); err != nil {
		return fmt.Errorf("plugin %s: %w", s.plugin.name, err)
	}
	return nil
}

// Close implements protocols.Session: the plugin learns of the end, then
// the stream closes. A plugin that does not finish within the stall
// timeout has its stream cut.
func (s *remoteSession) Close(err error) {
	ev := &pluginpb.Event{Event: &pluginpb.Event_Closed{Closed: &pluginpb.Closed{Error: pluginpb.ToError(err)}}}
	s.mu.Lock()
	already := s.closing
	s.closing = true
	s.mu.Unlock()
	if already {
		return
	}
	select {
	case s.events <- ev:
		time.AfterFunc(s.plugin.host.opts.StallTimeout, s.cancel)
	default: // a stalled plugin: cut the stream now
		s.cancel()
	}
}

// ack is the Frame.Ack of frames the plugin asked to be told about. It
// runs on the bridge's goroutine and must not block.
func (s *remoteSession) ack(id uint64) func(error) {
	return func(err error) {
		ev := &pluginpb.Event{Event: &pluginpb.Event_Ack{Ack: &pluginpb.Ack{Frame: id, Error: pluginpb.ToError(err)}}}
		if e := s.enqueue(ev, false); e != nil && !errors.Is(e, protocols.ErrClosed) {
			s.out.Close(protocols.CloseInternalError, "protocol plugin stalled")
		}
	}
}

// sendLoop writes events to the stream until Closed has gone out or the
// stream ends; recvLoop notices a broken stream.
func (s *remoteSession) sendLoop() {
	for {
		select {
		case ev := <-s.events:
			if err := s.stream.Send(ev); err != nil {
				return
			}
			if ev.GetClosed() != nil {
				_ = s.stream.CloseSend()
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *remoteSession) recvLoop() {
	defer s.cancel()
	for {
		a, err := s.stream.Recv()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if !closing || !errors.Is(err, io.EOF) {
				s.plugin.log.Debug("session stream ended", "err", err)
			}
			if !closing {
				s.out.Close(protocols.CloseInternalError, "protocol plugin unavailable")
			}
			return
		}
		s.act(a)
	}
}

// act carries out one action of the plugin.
func (s *remoteSession) act(a *pluginpb.Action) {
	switch a := a.GetAction().(type) {
	case *pluginpb.Action_Attach:
		if err := s.out.Attach(a.Attach.GetDevice()); err != nil {
			s.plugin.log.Warn("attach refused", "device", a.Attach.GetDevice(), "err", err)
			s.out.Close(protocols.CloseInternalError, "attach failed")
		}
	case *pluginpb.Action_Send:
		_ = s.out.Send(a.Send.ToMessage()) // a failure closes the connection
	case *pluginpb.Action_Publish:
		p := a.Publish
		f := protocols.Frame{Channel: p.GetChannel(), Payload: p.GetPayload(), QoS: byte(p.GetQos()), Retain: p.GetRetain()}
		if p.GetWantsAck() {
			f.Ack = s.ack(p.GetId())
		}
		if err := s.out.Publish(f); err != nil && f.Ack != nil {
			f.Ack(err)
		}
	case *pluginpb.Action_Close:
		s.out.Close(int(a.Close.GetCode()), a.Close.GetReason())
	case *pluginpb.Action_CommandFailed:
		c := a.CommandFailed
		f, err := protocols.ResultFrame(c.GetName(), protocols.Result{ID: c.GetId(), OK: false, Error: c.GetError().Err().Error()})
		if err == nil {
			_ = s.out.Publish(f)
		}
	}
}
