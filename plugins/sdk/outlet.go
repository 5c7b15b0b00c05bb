package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// The actions a session may have queued for the gateway: Send, Publish and
// Attach fail fast beyond either bound, as the contract says no Outlet
// method blocks. The actions the SDK itself sends (Consumed, Close, the
// answers) are few per event and always queued.
const (
	maxActions     = 4096
	maxActionBytes = 16 << 20
)

// attachTimeout bounds the wait for the gateway's answer to Attach. The
// gateway answers as soon as it has checked the device, which takes at most
// its handshake timeout (10 s by default) when tokens are verified.
const attachTimeout = 30 * time.Second

var (
	errSendBacklog    = fmt.Errorf("%w: the gateway is not taking this session's actions", protocols.ErrSendQueueFull)
	errPublishBacklog = fmt.Errorf("%w: the gateway is not taking this session's actions", protocols.ErrBusy)
)

// outlet is the plugin-side protocols.Outlet of one session: each call
// queues an action on the link, whose writer sends whatever any session
// has queued as one batch.
type outlet struct {
	ctx  context.Context // the session's
	link *link
	id   uint64 // the session's number on the link

	// Guarded by link.mu.
	queued int  // actions not yet taken by the writer
	bytes  int  // payload of the queued Send and Publish actions
	over   bool // Opened with an error, or Ended, is queued: nothing may follow

	mu         sync.Mutex
	closed     bool   // a Close is queued: later ones would change nothing
	attachedAs string // the device id, for log lines

	pendingMu sync.Mutex
	nextID    uint64
	acks      map[uint64]func(error)
	answers   map[uint64]chan error // Attach calls waiting for the gateway
}

var _ protocols.Outlet = (*outlet)(nil)

func newOutlet(ctx context.Context, l *link, id uint64) *outlet {
	return &outlet{ctx: ctx, link: l, id: id, acks: make(map[uint64]func(error)), answers: make(map[uint64]chan error)}
}

// push queues a. With full set, a counts against the bounds and full is
// returned instead of queueing beyond them; size is its payload.
func (o *outlet) push(a *pluginpb.Action, size int, full error) error {
	return o.link.push(o, a, size, full, false)
}

// Attach implements protocols.Outlet: it returns the gateway's answer, the
// error a built-in protocol would get (protocols.ErrUnauthorized and the
// other sentinels match with errors.Is). It waits for that answer, up to
// attachTimeout, so it must not be called from a Frame.Ack callback: those
// run on the link's reader, the goroutine that receives the answer.
func (o *outlet) Attach(d protocols.Device) error {
	if !protocols.ValidDeviceID(d.ID) {
		return fmt.Errorf("attach %q: invalid device id", d.ID)
	}
	answer := make(chan error, 1)
	o.pendingMu.Lock()
	o.nextID++
	id := o.nextID
	o.answers[id] = answer
	o.pendingMu.Unlock()
	defer func() {
		o.pendingMu.Lock()
		delete(o.answers, id)
		o.pendingMu.Unlock()
	}()
	a := &pluginpb.Action{Action: &pluginpb.Action_Attach{Attach: &pluginpb.Attach{Device: d.ID, Token: d.Token, Id: id}}}
	if err := o.push(a, 0, errPublishBacklog); err != nil {
		return fmt.Errorf("attach %q: %w", d.ID, err)
	}
	timer := time.NewTimer(attachTimeout)
	defer timer.Stop()
	select {
	case err := <-answer:
		if err != nil {
			return err
		}
		o.mu.Lock()
		o.attachedAs = d.ID
		o.mu.Unlock()
		return nil
	case <-o.ctx.Done():
		return fmt.Errorf("attach %q: %w", d.ID, protocols.ErrClosed)
	case <-timer.C:
		return fmt.Errorf("attach %q: no answer from the gateway within %v: %w", d.ID, attachTimeout, protocols.ErrBusy)
	}
}

// attached hands the gateway's answer to the Attach call waiting for it.
func (o *outlet) attached(id uint64, err error) {
	o.pendingMu.Lock()
	answer := o.answers[id]
	o.pendingMu.Unlock()
	if answer != nil {
		answer <- err // buffered, and answered once
	}
}

// device is the id the session attached as, "" before.
func (o *outlet) device() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attachedAs
}

// Send implements protocols.Outlet. It fails with ErrSendQueueFull when the
// gateway has stopped taking this session's actions; a device that does
// not read is the gateway's to close, as for a built-in protocol.
func (o *outlet) Send(m protocols.Message) error {
	return o.push(pluginpb.SendAction(m), len(m.Data), errSendBacklog)
}

// Publish implements protocols.Outlet. It fails with ErrBusy when the
// gateway has stopped taking this session's actions; refusals by the
// gateway (busy, invalid) arrive through the frame's Ack, since they are
// only known there.
func (o *outlet) Publish(f protocols.Frame) error {
	var id uint64
	if f.Ack != nil {
		o.pendingMu.Lock()
		o.nextID++
		id = o.nextID
		o.acks[id] = f.Ack
		o.pendingMu.Unlock()
	}
	err := o.push(pluginpb.PublishAction(f, id), len(f.Payload), errPublishBacklog)
	if err != nil && f.Ack != nil {
		o.takeAck(id)
	}
	return err
}

// takeAck returns the Ack of a frame and forgets it.
func (o *outlet) takeAck(id uint64) func(error) {
	o.pendingMu.Lock()
	defer o.pendingMu.Unlock()
	ack := o.acks[id]
	delete(o.acks, id)
	return ack
}

// Close implements protocols.Outlet. The first Close decides the code;
// the gateway would ignore later ones.
func (o *outlet) Close(code int, reason string) {
	o.mu.Lock()
	first := !o.closed
	o.closed = true
	o.mu.Unlock()
	if first {
		_ = o.push(&pluginpb.Action{Action: &pluginpb.Action_Close{Close: &pluginpb.Close{Code: int32(code), Reason: reason}}}, 0, nil)
	}
}

// fail closes the connection for an error returned by OnMessage, with the
// code of a *protocols.CloseError or 1011.
func (o *outlet) fail(err error) {
	if ce, ok := errors.AsType[*protocols.CloseError](err); ok {
		o.Close(ce.Code, ce.Reason)
		return
	}
	o.Close(protocols.CloseInternalError, "internal error")
}

// opened answers Open; with an error it is the session's last action.
func (o *outlet) opened(err error) {
	a := &pluginpb.Action{Action: &pluginpb.Action_Opened{Opened: &pluginpb.Opened{Error: pluginpb.ToError(err)}}}
	_ = o.link.push(o, a, 0, nil, err != nil)
}

// ended tells the gateway the session has closed: its last action.
func (o *outlet) ended() {
	_ = o.link.push(o, &pluginpb.Action{Action: &pluginpb.Action_Ended{Ended: &pluginpb.Ended{}}}, 0, nil, true)
}

func (o *outlet) consumed(events, commands uint32) {
	_ = o.push(&pluginpb.Action{Action: &pluginpb.Action_Consumed{Consumed: &pluginpb.Consumed{Events: events, Commands: commands}}}, 0, nil)
}

func (o *outlet) commandFailed(cmd protocols.Command, err error) {
	_ = o.push(&pluginpb.Action{Action: &pluginpb.Action_CommandFailed{CommandFailed: &pluginpb.CommandFailed{
		Id: cmd.ID, Name: cmd.Name, Error: pluginpb.ToError(err)}}}, 0, nil)
}

func (o *outlet) panicked(method string, value any) {
	_ = o.push(&pluginpb.Action{Action: &pluginpb.Action_Panicked{Panicked: &pluginpb.Panicked{
		Method: method, Value: fmt.Sprint(value)}}}, 0, nil)
}
