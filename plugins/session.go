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
	window := p.plugin.host.opts.SessionQueue
	stream, err := client.Session(ctx)
	if err == nil {
		err = stream.Send(&pluginpb.Events{Events: []*pluginpb.Event{{Event: &pluginpb.Event_Open{Open: &pluginpb.Open{
			Protocol: p.name, Info: pluginpb.FromSessionInfo(info), Window: uint32(window)}}}}})
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("plugin %s: open session: %w", p.plugin.name, err)
	}
	s := &remoteSession{
		plugin: p.plugin, out: out, stream: stream, ctx: ctx, cancel: cancel,
		events:  make(chan *pluginpb.Event, window),
		acks:    make(chan *pluginpb.Event, ackQueue),
		credits: make(chan struct{}, window),
	}
	for range window {
		s.credits <- struct{}{}
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
	acks   chan *pluginpb.Event // sent before events: they never wait behind messages
	// credits hold one token per Message or Command event the plugin may
	// have outstanding; its Consumed actions return them.
	credits chan struct{}

	mu      sync.Mutex
	closing bool // Close was called: no event may follow Closed
}

// enqueue hands a Message or Command event to the send goroutine once the
// plugin has window for it, waiting up to the stall timeout. A plugin that
// stalls longer is treated as hung: it is restarted, and this session
// fails.
func (s *remoteSession) enqueue(ev *pluginpb.Event) error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return protocols.ErrClosed
	}
	select {
	case <-s.credits:
		s.events <- ev // never blocks: events has room for every credit
		return nil
	default:
	}
	timer := time.NewTimer(s.plugin.host.opts.StallTimeout)
	defer timer.Stop()
	select {
	case <-s.credits:
		s.events <- ev
		return nil
	case <-s.ctx.Done():
		return protocols.ErrClosed
	case <-timer.C:
	}
	s.plugin.stalled()
	return &protocols.CloseError{Code: protocols.CloseInternalError, Reason: "protocol plugin stalled"}
}

// OnMessage implements protocols.Session.
func (s *remoteSession) OnMessage(m protocols.Message) error {
	m.Data = append([]byte(nil), m.Data...) // the gateway reuses its buffer
	return s.enqueue(&pluginpb.Event{Event: &pluginpb.Event_Message{Message: pluginpb.FromMessage(m)}})
}

// OnCommand implements protocols.Session. The plugin's verdict comes back
// as a CommandFailed action when it refuses.
func (s *remoteSession) OnCommand(cmd protocols.Command) error {
	c := &pluginpb.Command{Device: cmd.Device, Id: cmd.ID, Name: cmd.Name, Args: cmd.Args}
	if err := s.enqueue(&pluginpb.Event{Event: &pluginpb.Event_Command{Command: c}}); err != nil {
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

// ackQueue bounds the acks waiting to go to a plugin. They have their own
// queue, sent first, and the plugin always reads its stream (the window
// bounds what it queues), so this fills only when the plugin stops reading
// altogether.
const ackQueue = 1024

// ack is the Frame.Ack of frames the plugin asked to be told about. It
// runs on the bridge's goroutine and must not block.
func (s *remoteSession) ack(id uint64) func(error) {
	return func(err error) {
		ev := &pluginpb.Event{Event: &pluginpb.Event_Ack{Ack: &pluginpb.Ack{Frame: id, Error: pluginpb.ToError(err)}}}
		select {
		case s.acks <- ev:
		case <-s.ctx.Done():
		default:
			s.plugin.stalled()
			s.out.Close(protocols.CloseInternalError, "protocol plugin stalled")
		}
	}
}

// maxBatch bounds the events sent in one stream message.
const maxBatch = 128

// sendLoop writes events to the stream, acks first, batching whatever is
// queued, until Closed has gone out or the stream ends; recvLoop notices a
// broken stream.
func (s *remoteSession) sendLoop() {
	batch := make([]*pluginpb.Event, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case ev := <-s.acks:
			batch = append(batch, ev)
		case ev := <-s.events:
			batch = append(batch, ev)
		case <-s.ctx.Done():
			return
		}
		closed := batch[0].GetClosed() != nil
	fill:
		for !closed && len(batch) < maxBatch {
			select {
			case ev := <-s.acks:
				batch = append(batch, ev)
				continue
			default:
			}
			select {
			case ev := <-s.events:
				batch = append(batch, ev)
				closed = ev.GetClosed() != nil
			default:
				break fill
			}
		}
		if err := s.stream.Send(&pluginpb.Events{Events: batch}); err != nil {
			return
		}
		if closed {
			_ = s.stream.CloseSend()
			return
		}
	}
}

func (s *remoteSession) recvLoop() {
	defer s.cancel()
	for {
		batch, err := s.stream.Recv()
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
		for _, a := range batch.GetActions() {
			s.act(a)
		}
	}
}

// act carries out one action of the plugin.
func (s *remoteSession) act(a *pluginpb.Action) {
	switch a := a.GetAction().(type) {
	case *pluginpb.Action_Attach:
		if err := s.out.Attach(protocols.Device{ID: a.Attach.GetDevice(), Token: a.Attach.GetToken()}); err != nil {
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
	case *pluginpb.Action_Consumed:
		for range min(int(a.Consumed.GetEvents()), cap(s.credits)) {
			select {
			case s.credits <- struct{}{}:
			default: // more than was lent: ignore the excess
			}
		}
	case *pluginpb.Action_CommandFailed:
		c := a.CommandFailed
		f, err := protocols.ResultFrame(c.GetName(), protocols.Result{ID: c.GetId(), OK: false, Error: c.GetError().Err().Error()})
		if err == nil {
			_ = s.out.Publish(f)
		}
	}
}
