package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// Session runs one device connection: Open, answered with Opened once the
// protocol's NewSession has returned, then the session's events until
// Closed.
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
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	info, err := open.GetInfo().ToSessionInfo()
	r := &run{info: info, out: newOutlet(ctx, stream)}
	if err != nil {
		r.out.opened(err)
		r.out.flush()
		return nil
	}

	// The receiver runs from the start: it carries the answers to Attach,
	// which NewSession may already call. It ends with the stream, which
	// ends when this handler returns. The gateway sends at most window
	// messages and commands ahead of our Consumed actions, plus GoingAway
	// and Closed, so the queue never fills and the receiver always keeps
	// reading: acks and answers reach their callers at once.
	window := int(open.GetWindow())
	events := make(chan *pluginpb.Event, window+2)
	go r.receive(ctx, stream, events)

	session, err := r.newSession(ctx, p)
	r.out.opened(err)
	if err != nil {
		r.out.flush()
		return nil
	}
	r.serve(session, events, window)
	return nil
}

// run is one session on the plugin side.
type run struct {
	info protocols.SessionInfo
	out  *outlet
	// failed is set once a method panicked: the session's state is suspect
	// and its connection is closing, so it gets no more messages or
	// commands, only Close.
	failed atomic.Bool
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

// receive reads the stream: acks and Attach answers are settled here, the
// other events queued for serve.
func (r *run) receive(ctx context.Context, stream pluginpb.Protocol_SessionServer, events chan<- *pluginpb.Event) {
	defer close(events)
	// One batch's slice serves every Recv; the events themselves are new
	// each time, since serve may not have handled them yet.
	batch := new(pluginpb.Events)
	for {
		clear(batch.Events)
		batch.Events = batch.Events[:0]
		if err := stream.RecvMsg(batch); err != nil {
			return
		}
		for _, ev := range batch.GetEvents() {
			switch e := ev.GetEvent().(type) {
			case *pluginpb.Event_Ack:
				r.settle(e.Ack)
			case *pluginpb.Event_Attached:
				r.out.attached(e.Attached.GetId(), e.Attached.GetError().Err())
			default:
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// serve calls the session for each event, one at a time, until Closed or
// the end of the stream.
func (r *run) serve(session protocols.Session, events <-chan *pluginpb.Event, window int) {
	var consumed, commands uint32
	for ev := range events {
		switch e := ev.GetEvent().(type) {
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
			r.close(session, e.Closed.GetError().Err())
			r.out.flush()
			return
		}
		// Return window credit in batches, and whenever the queue runs dry:
		// the gateway also reads from it which events are still in hand
		// should the plugin crash.
		if consumed > 0 && (len(events) == 0 || int(consumed) >= window/4) {
			r.out.consumed(consumed, commands)
			consumed, commands = 0, 0
		}
	}
	r.close(session, errors.New("the gateway ended the session stream"))
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
