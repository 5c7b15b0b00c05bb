package sdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// serveLink serves the gateway's link, which carries every session: it
// starts a session at each Open and hands each event to its session, until
// the gateway ends the link.
func (s *server) serveLink(conn net.Conn) error {
	ctx, cancel := context.WithCancel(context.Background())
	l := newLink(ctx, conn)
	defer func() {
		// The sessions still running get Close, with a little time for it
		// before the process exits.
		l.end()
		cancel()
		conn.Close()
		done := make(chan struct{})
		go func() {
			l.sessions.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeGrace):
		}
	}()
	r := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	var run *run
	for {
		b := &received{Batch: pluginpb.EventsFromVTPool()}
		var err error
		if buf, err = pluginpb.ReadFrame(r, buf, b.Batch); err != nil {
			return err
		}
		events := b.Batch.GetEvents()
		b.Hold(len(events))
		for _, ev := range events {
			id := ev.GetSession()
			if open := ev.GetOpen(); open != nil {
				s.start(l, id, open) // Open is not pooled: the session may keep it
				b.Done()
				continue
			}
			if run == nil || run.out.id != id {
				run = l.lookup(id)
			}
			if run == nil {
				b.Done() // the session has ended: what is left for it is moot
				continue
			}
			if !run.receive(ctx, ev, b) {
				return nil
			}
		}
		b.Done()
		run = nil // a session that ended meanwhile must not keep getting events
	}
}

// received is a batch of the gateway's events. A message's data is the
// session's only during OnMessage; a command is not pooled, so a session
// may keep its arguments.
type received = pluginpb.Shared[*pluginpb.Events]

// inbound is an event waiting for its session, and its batch.
type inbound struct {
	event *pluginpb.Event
	batch *received
}

// closeGrace bounds the wait for the sessions' Close once the link has
// ended: the gateway kills a plugin that takes longer to exit.
const closeGrace = time.Second

// start runs a new session: Open, answered with Opened once the protocol's
// NewSession has returned, then the session's events until Closed.
func (s *server) start(l *link, id uint64, open *pluginpb.Open) {
	ctx, cancel := context.WithCancel(l.ctx)
	window := int(open.GetWindow())
	r := &run{
		out:    newOutlet(ctx, l, id),
		cancel: cancel,
		// The gateway sends at most window messages and commands ahead of
		// our Consumed actions, plus GoingAway and Closed, so the queue
		// never fills and the link's reader never waits for a session:
		// acks and answers reach their callers at once.
		events: make(chan inbound, window+2),
	}
	r.opening.Store(true)
	info, infoErr := open.GetInfo().ToSessionInfo()
	r.info = info
	if !l.add(id, r) {
		cancel()
		return
	}
	l.sessions.Go(func() {
		defer l.forget(id, r)
		p, ok := s.protocols[open.GetProtocol()]
		if !ok {
			r.out.opened(fmt.Errorf("this plugin does not implement %q", open.GetProtocol()))
			return
		}
		if infoErr != nil {
			r.out.opened(infoErr)
			return
		}
		session, err := r.newSession(ctx, p)
		r.opening.Store(false)
		r.out.opened(err)
		if err != nil {
			return
		}
		r.serve(session, r.events, window)
		r.out.ended()
	})
}

// run is one session on the plugin side.
type run struct {
	info   protocols.SessionInfo
	out    *outlet
	cancel context.CancelFunc // ends the session's context
	events chan inbound
	// opening is set until NewSession has returned: a Closed meanwhile
	// means the gateway gave up on the session, and ends its context.
	opening atomic.Bool
	// failed is set once a method panicked: the session's state is suspect
	// and its connection is closing, so it gets no more messages or
	// commands, only Close.
	failed atomic.Bool
}

// receive takes one of the session's events on the link's reader: acks
// and Attach answers are settled at once, the others queued for serve. It
// reports false when the link is ending.
func (r *run) receive(ctx context.Context, ev *pluginpb.Event, b *received) bool {
	switch e := ev.GetEvent().(type) {
	case *pluginpb.Event_Ack:
		r.settle(e.Ack)
		b.Done()
		return true
	case *pluginpb.Event_Attached:
		r.out.attached(e.Attached.GetId(), e.Attached.GetError().Err())
		b.Done()
		return true
	case *pluginpb.Event_Closed:
		if r.opening.Load() {
			r.cancel()
		}
	}
	select {
	case r.events <- inbound{ev, b}:
		return true
	case <-ctx.Done():
		return false
	}
}

// newSession calls the protocol's NewSession. A panic is the device's
// connection closing with 1011, as for a built-in protocol.
func (r *run) newSession(ctx context.Context, p protocols.Protocol) (session protocols.Session, err error) {
	err = r.call("NewSession", func() (err error) {
		session, err = p.NewSession(ctx, r.info, r.out)
		return err
	})
	if isPanic(err) {
		return nil, &protocols.CloseError{Code: protocols.CloseInternalError, Reason: "internal error"}
	}
	return session, err
}

// serve calls the session for each event, one at a time, until Closed or
// the end of the link.
func (r *run) serve(session protocols.Session, events <-chan inbound, window int) {
	var consumed, commands uint32
	for in := range events {
		switch e := in.event.GetEvent().(type) {
		case *pluginpb.Event_Message:
			consumed++
			r.onMessage(session, e.Message.ToMessage())
		case *pluginpb.Event_Command:
			consumed++
			commands++
			r.onCommand(session, e.Command)
		case *pluginpb.Event_GoingAway:
			r.goingAway(session)
		case *pluginpb.Event_Closed:
			err := e.Closed.GetError().Err()
			in.batch.Done()
			r.close(session, err)
			return
		}
		in.batch.Done()
		// Return window credit in batches, and whenever the queue runs dry:
		// the gateway also reads from it which events are still in hand
		// should the plugin crash.
		if consumed > 0 && (len(events) == 0 || int(consumed) >= window/4) {
			r.out.consumed(consumed, commands)
			consumed, commands = 0, 0
		}
	}
	r.close(session, errors.New("the gateway ended the link"))
}

func (r *run) onMessage(s protocols.Session, m protocols.Message) {
	if r.failed.Load() {
		return
	}
	if err := r.call("OnMessage", func() error { return s.OnMessage(m) }); err != nil {
		r.out.fail(err)
	}
}

func (r *run) onCommand(s protocols.Session, c *pluginpb.Command) {
	cmd := protocols.Command{Device: c.GetDevice(), ID: c.GetId(), Name: c.GetName(), Args: c.GetArgs()}
	err := fmt.Errorf("%w: the session failed", protocols.ErrClosed)
	if !r.failed.Load() {
		err = r.call("OnCommand", func() error { return s.OnCommand(cmd) })
	}
	if err != nil {
		r.out.commandFailed(cmd, err)
	}
	if isPanic(err) {
		r.out.Close(protocols.CloseInternalError, "internal error")
	}
}

// goingAway hands the gateway's shutdown to a session with a closing
// handshake of its own; others close with 1001, as the gateway closes
// built-in sessions.
func (r *run) goingAway(s protocols.Session) {
	if r.failed.Load() {
		return
	}
	g, ok := s.(protocols.GoingAway)
	if ok && r.call("GoingAway", func() error { g.GoingAway(); return nil }) == nil {
		return
	}
	r.out.Close(protocols.CloseGoingAway, "going away")
}

func (r *run) close(s protocols.Session, err error) {
	_ = r.call("Close", func() error { s.Close(err); return nil })
}

// settle calls the Ack of a published frame; a panic in it fails the
// session like one in its methods.
func (r *run) settle(a *pluginpb.Ack) {
	ack := r.out.takeAck(a.GetFrame())
	if ack == nil {
		return
	}
	if isPanic(r.call("Frame.Ack", func() error { ack(a.GetError().Err()); return nil })) {
		r.out.Close(protocols.CloseInternalError, "internal error")
	}
}

// call runs one of the protocol's methods and recovers a panic in it as the
// gateway does for a built-in protocol: the panic and its stack go to the
// log, the session is failed, and the gateway is told so that it can count
// the panic against the device. The caller closes the connection.
func (r *run) call(method string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			r.failed.Store(true)
			Logger().Error("protocol session panicked", "method", method, "session", r.info.ID,
				"remote", r.info.RemoteAddr, "device", r.out.device(), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			r.out.panicked(method, v)
			err = &panicError{method: method, value: v}
		}
	}()
	return f()
}

// panicError is the error a panicking method turns into.
type panicError struct {
	method string
	value  any
}

func (p *panicError) Error() string {
	return fmt.Sprintf("protocol session panicked in %s: %v", p.method, p.value)
}

func isPanic(err error) bool {
	_, ok := err.(*panicError)
	return ok
}
