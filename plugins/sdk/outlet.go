package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// outlet is the plugin-side protocols.Outlet: each call queues an action,
// and a writer goroutine sends whatever is queued as one batch.
type outlet struct {
	ctx    context.Context // the session's
	stream pluginpb.Protocol_SessionServer

	mu         sync.Mutex
	cond       *sync.Cond // signalled when the queue changes
	queue      []*pluginpb.Action
	spare      []*pluginpb.Action // the writer's other buffer
	bytes      int                // payload queued by Send and Publish
	sending    bool               // the writer holds a batch
	closed     bool               // a Close is queued: later ones would change nothing
	broken     error
	attachedAs string // the device id, for log lines

	pendingMu sync.Mutex
	nextID    uint64
	acks      map[uint64]func(error)
	answers   map[uint64]chan error // Attach calls waiting for the gateway
}

var _ protocols.Outlet = (*outlet)(nil)

func newOutlet(ctx context.Context, stream pluginpb.Protocol_SessionServer) *outlet {
	o := &outlet{ctx: ctx, stream: stream, acks: make(map[uint64]func(error)), answers: make(map[uint64]chan error)}
	o.cond = sync.NewCond(&o.mu)
	go o.write()
	return o
}

// write sends queued actions in batches until the session ends.
func (o *outlet) write() {
	stop := context.AfterFunc(o.ctx, func() {
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
		o.queue, o.bytes = o.spare[:0], 0
		o.sending = true
		o.cond.Broadcast()
		o.mu.Unlock()
		var err error
		for rest := batch; len(rest) > 0 && err == nil; {
			n := pluginpb.FitActions(rest)
			err = o.stream.Send(&pluginpb.Actions{Actions: rest[:n]})
			rest = rest[n:]
		}
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

// push queues a. With full set, a counts against the bounds and full is
// returned instead of queueing beyond them; size is its payload.
func (o *outlet) push(a *pluginpb.Action, size int, full error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.broken != nil {
		return o.broken
	}
	if full != nil && len(o.queue) > 0 && (len(o.queue) >= maxActions || o.bytes+size > maxActionBytes) {
		return full
	}
	o.queue = append(o.queue, a)
	if full != nil {
		o.bytes += size
	}
	o.cond.Broadcast()
	return nil
}

// flush waits until every queued action has been sent, or the stream is
// gone.
func (o *outlet) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for (len(o.queue) > 0 || o.sending) && o.broken == nil {
		o.cond.Wait()
	}
}

// Attach implements protocols.Outlet: it returns the gateway's answer, the
// error a built-in protocol would get (protocols.ErrUnauthorized and the
// other sentinels match with errors.Is). It waits for that answer, up to
// attachTimeout, so it must not be called from a Frame.Ack callback: those
// run on the goroutine that receives the answer.
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

func (o *outlet) opened(err error) {
	_ = o.push(&pluginpb.Action{Action: &pluginpb.Action_Opened{Opened: &pluginpb.Opened{Error: pluginpb.ToError(err)}}}, 0, nil)
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
