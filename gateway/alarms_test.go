package gateway

import (
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// TestAlarmQueue: the queue keeps the earliest alarm first and every
// connection's place right through sets, moves and clears.
func TestAlarmQueue(t *testing.T) {
	a := newAlarms()
	defer a.stop()
	conns := make([]*conn, 8)
	for i := range conns {
		conns[i] = &conn{}
	}
	// Far ahead, so that nothing fires during the test.
	at := func(s int) time.Time { return a.base.Add(time.Hour + time.Duration(s)*time.Second) }
	type op struct {
		c     int
		s     int  // seconds after the hour
		clear bool // take the alarm out instead
	}
	for _, tt := range []struct {
		name  string
		ops   []op
		first int // the connection whose alarm is first; -1: none queued
	}{
		{"one", []op{{c: 0, s: 5}}, 0},
		{"earlier joins first", []op{{c: 1, s: 9}, {c: 2, s: 3}, {c: 3, s: 7}}, 2},
		{"first moved last", []op{{c: 2, s: 20}}, 0},
		{"moved first", []op{{c: 3, s: 1}}, 3},
		{"first cleared", []op{{c: 3, clear: true}}, 0},
		{"cleared twice", []op{{c: 3, clear: true}}, 0},
		{"many", []op{{c: 4, s: 4}, {c: 5, s: 2}, {c: 6, s: 6}, {c: 7, s: 8}, {c: 0, clear: true}}, 5},
		{"all cleared", []op{{c: 1, clear: true}, {c: 2, clear: true}, {c: 4, clear: true}, {c: 5, clear: true},
			{c: 6, clear: true}, {c: 7, clear: true}}, -1},
	} {
		for _, o := range tt.ops {
			if o.clear {
				a.clear(conns[o.c])
			} else {
				a.set(conns[o.c], at(o.s))
			}
		}
		a.mu.Lock()
		for i, al := range a.queue {
			if int(al.c.alarm) != i+1 {
				t.Errorf("%s: the alarm at %d says it is at %d", tt.name, i, al.c.alarm-1)
			}
			if i > 0 && al.at < a.queue[(i-1)/2].at {
				t.Errorf("%s: the alarm at %d is earlier than its parent", tt.name, i)
			}
		}
		queued := 0
		for _, c := range conns {
			if c.alarm != 0 {
				queued++
			}
		}
		if queued != len(a.queue) {
			t.Errorf("%s: %d connections hold a place, %d alarms queued", tt.name, queued, len(a.queue))
		}
		switch {
		case tt.first < 0 && len(a.queue) != 0:
			t.Errorf("%s: %d alarms left, want none", tt.name, len(a.queue))
		case tt.first >= 0 && (len(a.queue) == 0 || a.queue[0].c != conns[tt.first]):
			t.Errorf("%s: the first alarm is not connection %d's", tt.name, tt.first)
		case tt.first >= 0 && a.next != a.queue[0].at:
			t.Errorf("%s: the timer is set for %v, the first alarm is at %v", tt.name, a.next, a.queue[0].at)
		case tt.first < 0 && a.next != -1:
			t.Errorf("%s: the timer runs with no alarm queued", tt.name)
		}
		a.mu.Unlock()
	}
}

// TestParkedKeepaliveShared: the one timer of the server's alarms pings
// every parked connection, and cuts each at its own read deadline.
func TestParkedKeepaliveShared(t *testing.T) {
	skipUnlessParking(t)
	t.Parallel()
	opts := baseOptions()
	// Long enough for every connection to be up and parked before the
	// first is cut, on a loaded machine too.
	opts.PingInterval = time.Second
	opts.PongTimeout = time.Second
	gw := startGateway(t, opts)
	const n = 20
	rcs := make([]*rawConn, n)
	for i := range rcs {
		rcs[i] = rawUpgrade(t, gw.addr, "/", "echo")
		gw.protos["echo"].next(t)
	}
	eventually(t, "the connections parked", func() bool { return gw.parked() == n })
	for i, rc := range rcs {
		if code, reason, pings := rc.readClose(); code != protocols.CloseGoingAway || pings == 0 {
			t.Errorf("connection %d: close %d %q after %d pings, want 1001 after a ping", i, code, reason, pings)
		}
	}
	eventually(t, "no alarm left", func() bool {
		gw.srv.alarms.mu.Lock()
		defer gw.srv.alarms.mu.Unlock()
		return len(gw.srv.alarms.queue) == 0
	})
}
