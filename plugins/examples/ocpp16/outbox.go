package ocpp16

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// outbox sends the CALLs of MQTT commands to the charge point one at a
// time: OCPP-J 1.6 allows a sender one unanswered CALL. The others wait in
// order, a bounded number of them. A command expires timeout after it
// arrived, waiting or on the wire; then the next goes out. No result is
// published for an expired command: the gateway publishes a timeout for
// every command left unanswered.
//
// Its state is shared with timers, hence the lock; the session's methods
// alone never run concurrently.
type outbox struct {
	send    func(*outCall) error // writes the CALL to the charge point
	clock   clock
	timeout time.Duration
	limit   int // commands waiting behind the one on the wire
	log     *slog.Logger

	mu       sync.Mutex
	inflight *outCall    // on the wire, unanswered; nil when none
	stop     func() bool // stops inflight's expiry
	waiting  []*outCall  // in order; empty while inflight is nil
	closed   bool
}

// outCall is a command on its way to the charge point.
type outCall struct {
	id, action string
	payload    json.RawMessage
	deadline   time.Time
}

// push sends c, or queues it behind the CALL on the wire. An error refuses
// the command.
func (o *outbox) push(c *outCall) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return protocols.ErrClosed
	case len(o.waiting) >= o.limit:
		return fmt.Errorf("%w: %d commands already wait for the charge point to answer", protocols.ErrBusy, o.limit)
	}
	o.waiting = append(o.waiting, c)
	if o.inflight == nil {
		return o.next()
	}
	return nil
}

// answered takes the CALL on the wire off it if id is its id, and sends
// the next. An answer to anything else (a CALL that expired, say) is not
// ours to take: ok is false.
func (o *outbox) answered(id string) (c *outCall, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight == nil || o.inflight.id != id {
		return nil, false
	}
	c = o.inflight
	o.stop()
	o.inflight = nil
	if err := o.next(); err != nil {
		o.log.Debug("the next command was not sent", "err", err)
	}
	return c, true
}

// expire frees the wire of c if the charge point has not answered it.
func (o *outbox) expire(c *outCall) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight != c {
		return // answered meanwhile
	}
	o.inflight = nil
	o.log.Info("the charge point did not answer in time", "action", c.action, "id", c.id, "timeout", o.timeout)
	if err := o.next(); err != nil {
		o.log.Debug("the next command was not sent", "err", err)
	}
}

// close forgets every command; the connection has ended.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight != nil {
		o.stop()
	}
	o.inflight, o.waiting, o.closed = nil, nil, true
}

// next sends the first waiting command that has not expired. An expired
// one is dropped unsent: the gateway has reported it timed out, and a
// Reset carried out minutes after that would surprise whoever sent it.
// o.mu is held.
func (o *outbox) next() error {
	for len(o.waiting) > 0 {
		c := o.waiting[0]
		o.waiting[0] = nil
		o.waiting = o.waiting[1:]
		left := c.deadline.Sub(o.clock.Now())
		if left <= 0 {
			o.log.Info("command expired before the charge point was free", "action", c.action, "id", c.id)
			continue
		}
		if err := o.send(c); err != nil {
			// The gateway fails a Send only for a connection that is
			// ending (its queue to the device overflowed, or it closed):
			// nothing more will reach the charge point.
			o.inflight, o.waiting, o.closed = nil, nil, true
			return err
		}
		o.inflight = c
		o.stop = o.clock.AfterFunc(left, func() { o.expire(c) })
		return nil
	}
	return nil
}

// clock is the time the outbox and transaction ids run on; tests bring
// their own.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
