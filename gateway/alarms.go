package gateway

import (
	"container/heap"
	"sync"
	"time"
)

// alarms wakes connections at their next event (conn.armAlarmLocked): the
// keepalive ping, or the read deadline of a parked connection. One timer
// serves all of them, where each connection had a timer of its own: a
// runtime timer and its callback, about 170 bytes, on every connection the
// gateway holds, idle ones included. Here a connection costs a 16-byte
// place in a heap.
//
// A connection whose alarm is due gets conn.onAlarm on a goroutine of its
// own, as time.AfterFunc would run it: a ping's write may wait on a slow
// device, which must not hold up the others' alarms. onAlarm finds what
// is due itself, so a call that comes when nothing is (an alarm moved
// later while it fired) does no harm.
type alarms struct {
	mu    sync.Mutex
	base  time.Time // times are kept as durations since base (monotonic)
	queue alarmQueue
	timer *time.Timer   // fires at the earliest alarm; made with the first
	next  time.Duration // when timer fires; -1: stopped
}

func newAlarms() *alarms { return &alarms{base: time.Now(), next: -1} }

// alarm is a connection's place in the queue.
type alarm struct {
	at time.Duration
	c  *conn
}

// set puts c's alarm at t, in the queue or moved within it.
func (a *alarms) set(c *conn, t time.Time) {
	at := t.Sub(a.base)
	a.mu.Lock()
	defer a.mu.Unlock()
	if i := c.alarm - 1; i >= 0 {
		a.queue[i].at = at
		heap.Fix(&a.queue, int(i))
	} else {
		heap.Push(&a.queue, alarm{at: at, c: c})
	}
	a.rearmLocked()
}

// clear takes c's alarm out of the queue, if it is there.
func (a *alarms) clear(c *conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i := c.alarm - 1; i >= 0 {
		heap.Remove(&a.queue, int(i))
		a.rearmLocked()
	}
}

// rearmLocked sets the timer to the earliest alarm; a.mu is held.
func (a *alarms) rearmLocked() {
	if len(a.queue) == 0 {
		if a.timer != nil && a.next >= 0 {
			a.timer.Stop()
		}
		a.next = -1
		return
	}
	at := a.queue[0].at
	if at == a.next {
		return
	}
	a.next = at
	d := max(at-time.Since(a.base), 0)
	if a.timer == nil {
		a.timer = time.AfterFunc(d, a.fire)
	} else {
		a.timer.Reset(d)
	}
}

// fire takes the alarms that are due out of the queue and wakes their
// connections.
func (a *alarms) fire() {
	var due []*conn
	a.mu.Lock()
	now := time.Since(a.base)
	for len(a.queue) > 0 && a.queue[0].at <= now {
		due = append(due, heap.Pop(&a.queue).(alarm).c)
	}
	a.next = -1 // the timer has fired
	a.rearmLocked()
	a.mu.Unlock()
	for _, c := range due {
		go c.onAlarm()
	}
}

// stop stops the timer; alarms set later start it again.
func (a *alarms) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
	}
	a.next = -1
}

// alarmQueue is a min-heap of alarms by time; each connection keeps its
// place (index+1, 0 when not queued) in conn.alarm, under alarms.mu.
type alarmQueue []alarm

func (q alarmQueue) Len() int           { return len(q) }
func (q alarmQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q alarmQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].c.alarm, q[j].c.alarm = int32(i+1), int32(j+1)
}

func (q *alarmQueue) Push(x any) {
	al := x.(alarm)
	al.c.alarm = int32(len(*q) + 1)
	*q = append(*q, al)
}

func (q *alarmQueue) Pop() any {
	old := *q
	al := old[len(old)-1]
	old[len(old)-1] = alarm{}
	*q = old[:len(old)-1]
	if cap(old) > 1024 && len(*q) < cap(old)/4 {
		// A connection storm has passed: do not keep its size.
		*q = append(make(alarmQueue, 0, cap(old)/2), *q...)
	}
	al.c.alarm = 0
	return al
}
