package plugins

import (
	"context"
	"errors"
	"fmt"
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

// NewSession starts the session on the plugin's link and returns once the
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

// open starts a session on the running process's link, unless its
// address is refused.
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
	// The session lives as long as the plugin process, not as long as the
	// connection's context: the Closed event must still go out after the
	// connection has ended.
	sessionCtx, cancel := context.WithCancel(proc.ctx)
	s := &remoteSession{
		plugin: p, proc: proc, link: proc.link, info: info, out: out, ctx: sessionCtx, cancel: cancel,
		credits:  make(chan struct{}, window),
		opened:   make(chan error, 1),
		progress: make(chan struct{}, 1),
		wakeAct:  make(chan struct{}, 1),
	}
	for range window {
		s.credits <- struct{}{}
	}
	if err := s.link.add(s); err != nil {
		cancel()
		p.log.Debug("open session", "err", err)
		return nil, errUnavailable
	}
	s.awaiting.Store(true)
	proc.track(s)
	if !proc.goSession(s.actLoop) {
		s.cut()
		return nil, errUnavailable
	}
	s.link.queue(s, &pluginpb.Event{Event: &pluginpb.Event_Open{Open: &pluginpb.Open{
		Protocol: protocol, Info: pluginpb.FromSessionInfo(info), Window: uint32(window)}}}, false)
	if err := s.awaitOpened(ctx); err != nil {
		s.abandon()
		return nil, err
	}
	return s, nil
}

// remoteSession relays one connection's events to the plugin and its
// actions back, over the process's link. Its own goroutine carries out
// the plugin's actions, in order, as the link's reader hands them over.
type remoteSession struct {
	plugin *supervised
	proc   *process
	link   *link
	id     uint64 // the session's number on the link
	info   protocols.SessionInfo
	out    protocols.Outlet
	ctx    context.Context // ends with the session, or with the process
	cancel context.CancelFunc
	// credits hold one token per Message or Command event the plugin may
	// have outstanding; its Consumed actions return them.
	credits  chan struct{}
	opened   chan error    // the plugin's answer to Open
	progress chan struct{} // an Attach was answered while waiting for Opened
	// replies counts the acks and answers queued on the link and not yet
	// sent.
	replies atomic.Int32

	// The plugin's actions, waiting for actLoop, and why the link ended
	// (nil while it runs).
	inMu     sync.Mutex
	inbox    []inbound
	linkErr  error
	wakeAct  chan struct{}
	finished atomic.Bool // ended: the session is over on the gateway's side

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
			case err := <-s.opened: // answered, then the link ended
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

// abandon ends a session that did not start. The plugin gets Closed, so
// that it gives up the NewSession call, if it is still in it, and closes
// the session if it has one; what it answers is dropped.
func (s *remoteSession) abandon() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.link.queue(s, &pluginpb.Event{Event: &pluginpb.Event_Closed{Closed: &pluginpb.Closed{}}}, false)
	s.cut()
}

// cut ends the session on the gateway's side without waiting for the
// plugin: it has no part in a crash from now on.
func (s *remoteSession) cut() {
	s.link.remove(s)
	s.proc.untrack(s)
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
		s.link.queue(s, ev, false)
		return nil
	default:
	}
	timer := time.NewTimer(s.plugin.host.opts.StallTimeout)
	defer timer.Stop()
	select {
	case <-s.credits:
		s.link.queue(s, ev, false)
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
	s.link.queue(s, &pluginpb.Event{Event: &pluginpb.Event_GoingAway{GoingAway: &pluginpb.GoingAway{}}}, false)
}

// Close implements protocols.Session: the plugin learns of the end, and
// answers with Ended once its session has closed. A plugin that does not
// answer within the stall timeout has the session cut.
func (s *remoteSession) Close(err error) {
	ev := &pluginpb.Event{Event: &pluginpb.Event_Closed{Closed: &pluginpb.Closed{Error: pluginpb.ToError(err)}}}
	s.mu.Lock()
	already := s.closing
	s.closing = true
	s.mu.Unlock()
	if already {
		return
	}
	s.link.queue(s, ev, false)
	cut := time.AfterFunc(s.plugin.host.opts.StallTimeout, s.cut)
	context.AfterFunc(s.ctx, func() { cut.Stop() })
}

var (
	_ protocols.Session   = (*remoteSession)(nil)
	_ protocols.GoingAway = (*remoteSession)(nil)
)

// replyQueue bounds a session's acks and answers waiting to go to a
// plugin. They go before events, and the plugin always reads its link
// (the window bounds what it queues), so this fills only when the plugin
// stops reading altogether.
const replyQueue = 1024

// reply queues an ack or an answer. It must not block: acks run on the
// bridge's goroutine.
func (s *remoteSession) reply(ev *pluginpb.Event) {
	if s.ctx.Err() != nil {
		return
	}
	if s.replies.Add(1) > replyQueue {
		s.replies.Add(-1)
		s.proc.stalled(s)
		s.out.Close(protocols.CloseInternalError, "protocol plugin stalled")
		return
	}
	s.link.queue(s, ev, true)
}

// sending is called by the link's writer for each of the session's events
// just before the batch holding it goes out.
func (s *remoteSession) sending(ev *pluginpb.Event) {
	switch ev.GetEvent().(type) {
	case *pluginpb.Event_Message:
		s.sentMessages.Add(1)
	case *pluginpb.Event_Closed:
		s.awaiting.Store(true)
	case *pluginpb.Event_Ack, *pluginpb.Event_Attached:
		s.replies.Add(-1)
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

// inbound is an action waiting for the session's goroutine, and its
// batch.
type inbound struct {
	action *pluginpb.Action
	batch  *received
}

// deliver hands an action to the session's goroutine, which reports it
// done to its batch; false when the session is over and it was not taken.
// The link's reader calls it and must never wait.
func (s *remoteSession) deliver(a *pluginpb.Action, b *received) bool {
	if s.finished.Load() {
		return false
	}
	s.inMu.Lock()
	first := len(s.inbox) == 0
	s.inbox = append(s.inbox, inbound{a, b})
	s.inMu.Unlock()
	if first {
		select {
		case s.wakeAct <- struct{}{}:
		default:
		}
	}
	return true
}

// linkEnded tells the session's goroutine that no more actions come.
func (s *remoteSession) linkEnded(err error) {
	s.inMu.Lock()
	s.linkErr = err
	s.inMu.Unlock()
	select {
	case s.wakeAct <- struct{}{}:
	default:
	}
}

// actLoop carries out the plugin's actions in order until the session
// ends: the plugin's Ended, the link's end or the gateway cutting it.
func (s *remoteSession) actLoop() {
	defer s.cancel()
	var actions []inbound
	for {
		select {
		case <-s.wakeAct:
		case <-s.ctx.Done():
			s.ended(s.ctx.Err())
			return
		}
		s.inMu.Lock()
		actions, s.inbox = s.inbox, actions[:0]
		linkErr := s.linkErr
		s.inMu.Unlock()
		for _, in := range actions {
			if !s.finished.Load() {
				s.act(in.action)
			}
			in.batch.Done()
		}
		clear(actions)
		if s.finished.Load() {
			return
		}
		if linkErr != nil {
			s.ended(linkErr)
			return
		}
	}
}

// ended handles the end of the session on the gateway's side: clean after
// the plugin's Ended, else the link ended (err) or the gateway cut the
// session (its context's error).
func (s *remoteSession) ended(err error) {
	if !s.finished.CompareAndSwap(false, true) {
		return
	}
	s.link.remove(s)
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	clean := closing && err == nil
	if clean || s.ctx.Err() != nil {
		// Nothing of the session is in the plugin's hands any more, or
		// the gateway cut it: it has no part in a crash. Otherwise it
		// stays tracked until the supervisor has seen whether the process
		// died.
		s.proc.untrack(s)
	}
	if !clean {
		s.plugin.log.Debug("session ended", "err", err)
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
			s.closing = true // the session is over: that is no failure
			s.mu.Unlock()
		}
		s.awaiting.Store(false)
		select {
		case s.opened <- err:
		default: // answered twice: the first answer stands
		}
		if err != nil {
			s.ended(nil)
		}
	case *pluginpb.Action_Ended:
		s.ended(nil)
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
