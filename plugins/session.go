package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

var (
	errUnavailable = &protocols.CloseError{Code: protocols.CloseInternalError, Reason: "protocol plugin unavailable"}
	errStalled     = &protocols.CloseError{Code: protocols.CloseInternalError, Reason: "protocol plugin stalled"}
)

// remoteProtocol is a protocol implemented by a plugin process.
type remoteProtocol struct {
	name   string
	plugin *supervised
}

func (p *remoteProtocol) Name() string { return p.name }

// NewSession opens the session's stream to the plugin and returns once the
// plugin's NewSession has returned. An error is the one the plugin's
// NewSession returned, with its text and, for a *protocols.CloseError, its
// code, just as a built-in protocol's would be; the connection is closed
// with that code and reason, or with 1011 and the error's text.
func (p *remoteProtocol) NewSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	s, err := p.plugin.open(ctx, p.name, info, out)
	if err != nil {
		p.plugin.log.Info("session refused", "protocol", p.name, "remote", info.RemoteAddr, "path", info.Path, "err", err)
		if ce, ok := errors.AsType[*protocols.CloseError](err); ok {
			out.Close(ce.Code, ce.Reason)
		} else {
			out.Close(protocols.CloseInternalError, err.Error())
		}
		return nil, err
	}
	return s, nil
}

// open starts a session on the running process, unless its address is
// refused.
func (p *supervised) open(ctx context.Context, protocol string, info protocols.SessionInfo, out protocols.Outlet) (*remoteSession, error) {
	addr := hostOf(info.RemoteAddr)
	if until, refused := p.faults.refusedUntil(culprit{addr: addr}, time.Now()); refused {
		return nil, fmt.Errorf("address %s keeps causing plugin faults; refused until %s: %w", addr, until.Format(time.RFC3339),
			&protocols.CloseError{Code: protocols.ClosePolicyViolation, Reason: "refused: this address keeps crashing the protocol plugin"})
	}
	proc := p.running()
	if proc == nil {
		return nil, errUnavailable
	}
	window := p.host.opts.SessionQueue
	streamCtx, cancel := context.WithCancel(proc.ctx)
	s := &remoteSession{
		plugin: p, proc: proc, info: info, out: out, ctx: streamCtx, cancel: cancel,
		events:   make(chan *pluginpb.Event, window+2), // +2: GoingAway and Closed
		replies:  make(chan *pluginpb.Event, replyQueue),
		credits:  make(chan struct{}, window),
		opened:   make(chan error, 1),
		progress: make(chan struct{}, 1),
	}
	for range window {
		s.credits <- struct{}{}
	}
	// The stream lives as long as the session and the plugin process, not
	// as long as the connection's context: the Closed event must still go
	// out after the connection has ended.
	stream, err := proc.rpc.Session(s.ctx)
	if err == nil {
		s.stream = stream
		s.awaiting.Store(true)
		proc.track(s)
		err = stream.Send(&pluginpb.Events{Events: []*pluginpb.Event{{Event: &pluginpb.Event_Open{Open: &pluginpb.Open{
			Protocol: protocol, Info: pluginpb.FromSessionInfo(info), Window: uint32(window)}}}}})
	}
	if err != nil || !proc.goSession(s.sendLoop, s.recvLoop) {
		cancel()
		proc.untrack(s)
		p.log.Debug("open session", "err", err)
		return nil, errUnavailable
	}
	if err := s.awaitOpened(ctx); err != nil {
		s.abandon()
		return nil, err
	}
	return s, nil
}

// remoteSession relays one connection's events to the plugin and its
// actions back. A send goroutine drains bounded queues into the stream; a
// receive goroutine carries out the plugin's actions. Both end with the
// stream.
type remoteSession struct {
	plugin *supervised
	proc   *process
	info   protocols.SessionInfo
	out    protocols.Outlet
	stream pluginpb.Protocol_SessionClient
	ctx    context.Context // the stream's
	cancel context.CancelFunc
	events chan *pluginpb.Event
	// replies (acks and Attach answers) are sent before events: they never
	// wait behind messages.
	replies chan *pluginpb.Event
	// credits hold one token per Message or Command event the plugin may
	// have outstanding; its Consumed actions return them.
	credits  chan struct{}
	opened   chan error    // the plugin's answer to Open
	progress chan struct{} // an Attach was answered while waiting for Opened

	// What of the device's own the plugin has in hand, for crash
	// accounting: messages sent and not yet consumed, and Open or Closed
	// not yet answered.
	sentMessages, consumedMessages atomic.Int64
	awaiting                       atomic.Bool

	mu        sync.Mutex
	closing   bool // Close was called, or the session never started: no event may follow
	goingAway bool
	device    string // attached as
}

// awaitOpened waits for the plugin's NewSession, up to the stall timeout,
// which starts again whenever the gateway has answered an Attach: checking
// a device's token takes the gateway's time, not the plugin's.
func (s *remoteSession) awaitOpened(ctx context.Context) error {
	stall := time.NewTimer(s.plugin.host.opts.StallTimeout)
	defer stall.Stop()
	for {
		select {
		case err := <-s.opened:
			return err
		case <-s.progress:
			stall.Reset(s.plugin.host.opts.StallTimeout)
		case <-s.ctx.Done():
			select {
			case err := <-s.opened: // answered, then the stream ended
				return err
			default:
				return errUnavailable
			}
		case <-ctx.Done():
			return fmt.Errorf("the connection ended while the plugin started its session: %w", ctx.Err())
		case <-stall.C:
			s.proc.stalled(s)
			return errStalled
		}
	}
}

// abandon ends a session that did not start.
func (s *remoteSession) abandon() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.cancel()
}

// suspect returns the session's device if one of its own events is in the
// plugin's hands.
func (s *remoteSession) suspect() (culprit, bool) {
	if !s.awaiting.Load() && s.sentMessages.Load() <= s.consumedMessages.Load() {
		return culprit{}, false
	}
	return s.culprit(), true
}

func (s *remoteSession) culprit() culprit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return culprit{device: s.device, addr: hostOf(s.info.RemoteAddr)}
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
	s.proc.stalled(s)
	return errStalled
}

// OnMessage implements protocols.Session.
func (s *remoteSession) OnMessage(m protocols.Message) error {
	m.Data = append([]byte(nil), m.Data...) // the gateway reuses its buffer
	return s.enqueue(pluginpb.MessageEvent(m))
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

// GoingAway implements protocols.GoingAway: the plugin's session ends the
// connection with its own closing handshake, or with 1001 when it has
// none.
func (s *remoteSession) GoingAway() {
	s.mu.Lock()
	first := !s.closing && !s.goingAway
	s.goingAway = true
	s.mu.Unlock()
	if !first {
		return
	}
	select {
	case s.events <- &pluginpb.Event{Event: &pluginpb.Event_GoingAway{GoingAway: &pluginpb.GoingAway{}}}:
	default: // events keeps room for it; should it not, close as the gateway would
		s.out.Close(protocols.CloseGoingAway, "going away")
	}
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

var (
	_ protocols.Session   = (*remoteSession)(nil)
	_ protocols.GoingAway = (*remoteSession)(nil)
)

// replyQueue bounds the acks and answers waiting to go to a plugin. They
// have their own queue, sent first, and the plugin always reads its stream
// (the window bounds what it queues), so this fills only when the plugin
// stops reading altogether.
const replyQueue = 1024

// reply queues an ack or an answer. It must not block: acks run on the
// bridge's goroutine.
func (s *remoteSession) reply(ev *pluginpb.Event) {
	select {
	case s.replies <- ev:
	case <-s.ctx.Done():
	default:
		s.proc.stalled(s)
		s.out.Close(protocols.CloseInternalError, "protocol plugin stalled")
	}
}

// qosOf is a frame's QoS as the gateway takes it: a number beyond a byte
// stays out of range, to be refused as invalid, instead of wrapping around
// into one (257 is not QoS 1).
func qosOf(q uint32) byte { return byte(min(q, 255)) }

// ack is the Frame.Ack of frames the plugin asked to be told about.
func (s *remoteSession) ack(id uint64) func(error) {
	return func(err error) {
		s.reply(pluginpb.AckEvent(id, err))
	}
}

// maxBatch bounds the events sent in one stream message.
const maxBatch = 128

// sendLoop writes events to the stream, replies first, batching whatever
// is queued, until Closed has gone out or the stream ends; recvLoop
// notices a broken stream.
func (s *remoteSession) sendLoop() {
	batch := make([]*pluginpb.Event, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case ev := <-s.replies:
			batch = append(batch, ev)
		case ev := <-s.events:
			batch = append(batch, ev)
		case <-s.ctx.Done():
			return
		}
		closed := batch[0].GetClosed() != nil
		size := pluginpb.BatchedSize(batch[0])
	fill:
		for !closed && len(batch) < maxBatch && size < pluginpb.MaxBatchBytes {
			var ev *pluginpb.Event
			select {
			case ev = <-s.replies:
			default:
				select {
				case ev = <-s.events:
					closed = ev.GetClosed() != nil
				default:
					break fill
				}
			}
			batch = append(batch, ev)
			size += pluginpb.BatchedSize(ev)
		}
		var messages int64
		for _, ev := range batch {
			if ev.GetMessage() != nil {
				messages++
			}
		}
		// Counted before they go: from now on a crash may be theirs.
		s.sentMessages.Add(messages)
		if closed {
			s.awaiting.Store(true)
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
	// One batch serves every Recv: the actions, their frames and their
	// messages are decoded into the previous ones' (act takes what the
	// gateway keeps), so that a busy session allocates little more than
	// its payloads.
	batch := pluginpb.ActionsFromVTPool()
	defer batch.ReturnToVTPool()
	for {
		batch.ResetVT()
		if err := s.stream.RecvMsg(batch); err != nil {
			s.ended(err)
			return
		}
		for _, a := range batch.GetActions() {
			s.act(a)
		}
	}
}

// ended handles the end of the stream.
func (s *remoteSession) ended(err error) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	clean := closing && errors.Is(err, io.EOF)
	if clean || s.ctx.Err() != nil {
		// Nothing of the session is in the plugin's hands any more, or
		// the gateway cut it: it has no part in a crash. Otherwise it
		// stays tracked until the supervisor has seen whether the process
		// died.
		s.proc.untrack(s)
	}
	if !clean {
		s.plugin.log.Debug("session stream ended", "err", err)
	}
	if !closing {
		s.out.Close(protocols.CloseInternalError, "protocol plugin unavailable")
	}
}

// act carries out one action of the plugin.
func (s *remoteSession) act(a *pluginpb.Action) {
	switch a := a.GetAction().(type) {
	case *pluginpb.Action_Opened:
		err := a.Opened.GetError().Err()
		if err != nil {
			s.mu.Lock()
			s.closing = true // the plugin ends the stream: that is no failure
			s.mu.Unlock()
		}
		s.awaiting.Store(false)
		select {
		case s.opened <- err:
		default: // answered twice: the first answer stands
		}
	case *pluginpb.Action_Attach:
		err := s.attach(a.Attach)
		s.reply(&pluginpb.Event{Event: &pluginpb.Event_Attached{Attached: &pluginpb.Attached{Id: a.Attach.GetId(), Error: pluginpb.ToError(err)}}})
		select {
		case s.progress <- struct{}{}:
		default:
		}
	case *pluginpb.Action_Send:
		m := a.Send.ToMessage()
		a.Send.Data = nil // the gateway keeps it; the decoder must not reuse it
		_ = s.out.Send(m) // a failure closes the connection
	case *pluginpb.Action_Publish:
		p := a.Publish
		f := protocols.Frame{Channel: p.GetChannel(), Payload: p.GetPayload(), QoS: qosOf(p.GetQos()), Retain: p.GetRetain(),
			Seq: p.GetSeq(), HasSeq: p.GetHasSeq()}
		p.Payload = nil // as for Send
		if p.GetWantsAck() {
			f.Ack = s.ack(p.GetId())
		}
		if err := s.out.Publish(f); err != nil && f.Ack != nil {
			f.Ack(err)
		}
	case *pluginpb.Action_Close:
		s.out.Close(int(a.Close.GetCode()), a.Close.GetReason())
	case *pluginpb.Action_Consumed:
		c := a.Consumed
		s.consumedMessages.Add(int64(c.GetEvents()) - int64(min(c.GetCommands(), c.GetEvents())))
		for range min(int(c.GetEvents()), cap(s.credits)) {
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
	case *pluginpb.Action_Panicked:
		// The plugin has logged the panic with its stack and closes the
		// connection; what is left is whose fault it was.
		switch method := a.Panicked.GetMethod(); method {
		case "NewSession", "OnMessage", "Close":
			s.plugin.blame(s.culprit(), "the session panicked in "+method+": "+a.Panicked.GetValue())
		}
	}
}

// attach attaches the session's device through the gateway, unless the
// device has been refused for causing faults.
func (s *remoteSession) attach(a *pluginpb.Attach) error {
	who := culprit{device: a.GetDevice(), addr: hostOf(s.info.RemoteAddr)}
	if until, refused := s.plugin.faults.refusedUntil(who, time.Now()); refused {
		s.plugin.log.Info("device refused: it keeps causing plugin faults", "device", who.device, "remote", s.info.RemoteAddr,
			"until", until.Format(time.RFC3339))
		s.out.Close(protocols.ClosePolicyViolation, "refused: this device keeps crashing the protocol plugin")
		return fmt.Errorf("%w: device %s keeps crashing the protocol plugin", protocols.ErrForbidden, who.device)
	}
	if err := s.out.Attach(protocols.Device{ID: who.device, Token: a.GetToken()}); err != nil {
		return err
	}
	s.mu.Lock()
	s.device = who.device
	s.mu.Unlock()
	return nil
}
