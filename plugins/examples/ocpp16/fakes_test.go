package ocpp16

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// fakeOutlet records what a session does. Frames wait for the test to
// acknowledge them, as they wait for the broker.
type fakeOutlet struct {
	mu       sync.Mutex
	attached []protocols.Device
	sent     []string
	frames   []protocols.Frame
	// refuse, when set, fails Publish: returned, and through the frame's
	// Ack too if ackRefusal.
	refuse     error
	ackRefusal bool
	sendErr    error
}

func (o *fakeOutlet) Attach(d protocols.Device) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.attached = append(o.attached, d)
	return nil
}

func (o *fakeOutlet) Send(m protocols.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sendErr != nil {
		return o.sendErr
	}
	o.sent = append(o.sent, string(m.Data))
	return nil
}

func (o *fakeOutlet) Publish(f protocols.Frame) error {
	o.mu.Lock()
	refuse, ack := o.refuse, o.ackRefusal
	if refuse == nil {
		o.frames = append(o.frames, f)
	}
	o.mu.Unlock()
	if refuse != nil && ack && f.Ack != nil {
		f.Ack(refuse)
	}
	return refuse
}

func (o *fakeOutlet) Close(int, string) {}

// takeSent returns the messages sent to the charge point since the last
// call.
func (o *fakeOutlet) takeSent() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	sent := o.sent
	o.sent = nil
	return sent
}

// takeFrames returns the frames published since the last call.
func (o *fakeOutlet) takeFrames() []protocols.Frame {
	o.mu.Lock()
	defer o.mu.Unlock()
	frames := o.frames
	o.frames = nil
	return frames
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	f    func()
	done bool // fired or stopped
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		pending := !t.done
		t.done = true
		return pending
	}
}

// advance moves the clock on by d and runs the timers that are due, in
// order.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.done && !t.at.After(c.now) {
			t.done = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}

// testSession starts a session of p for the charge point CP1 on a fake
// outlet and clock. p gets transaction ids of its own unless it has some.
func testSession(t *testing.T, p Protocol) (*session, *fakeOutlet, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if p.ids == nil {
		p.ids = newTransactionIDs()
	}
	p.clock = clk
	out := &fakeOutlet{}
	s, err := p.NewSession(t.Context(), protocols.SessionInfo{Path: "/ocpp/CP1"}, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.attached) != 1 || out.attached[0].ID != "CP1" {
		t.Fatalf("attached %+v, want CP1", out.attached)
	}
	t.Cleanup(func() { s.Close(nil) })
	return s.(*session), out, clk
}

func textMsg(data string) protocols.Message {
	return protocols.Message{Type: protocols.Text, Data: []byte(data)}
}

// elements splits an OCPP-J message the session sent.
func elements(t *testing.T, msg string) []json.RawMessage {
	t.Helper()
	var elems []json.RawMessage
	if err := json.Unmarshal([]byte(msg), &elems); err != nil {
		t.Fatalf("sent %s: %v", msg, err)
	}
	return elems
}
