package mqttbridge

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

func cmdN(device string, n int) protocols.Command {
	return protocols.Command{Device: device, Name: "set", ID: fmt.Sprintf("c%d", n)}
}

// The arrival of a device holds its commands until flushed; they come out
// in order, with those that arrive while the flush delivers; then commands
// pass.
func TestHandoffHoldsThenFlushesInOrder(t *testing.T) {
	h := newHandoffs()
	now := time.Now()
	if held, _ := h.hold(cmdN("d", 0), true); held {
		t.Fatal("a command held for a device that is not arriving")
	}
	h.expect("d", "gw-a", 5, now)
	for i := 1; i <= 3; i++ {
		if held, full := h.hold(cmdN("d", i), true); !held || full {
			t.Fatalf("command %d: held %v full %v", i, held, full)
		}
	}
	if held, _ := h.hold(cmdN("e", 1), true); held {
		t.Error("another device's command held")
	}
	for _, r := range []struct {
		from  string
		stamp uint64
		want  bool
	}{{"gw-a", 5, true}, {"gw-a", 6, true}, {"gw-a", 4, false}, {"gw-b", 5, false}} {
		if got := h.releases("d", r.from, r.stamp); got != r.want {
			t.Errorf("releases(d, %s, %d) = %v, want %v", r.from, r.stamp, got, r.want)
		}
	}
	var got []string
	flushed := h.flush("d", func(c protocols.Command, named bool) {
		got = append(got, c.ID)
		if c.ID == "c1" { // one more comes while the flush delivers
			if held, _ := h.hold(cmdN("d", 4), true); !held {
				t.Error("a command that came during the flush passed the held ones")
			}
		}
	})
	if !flushed || !slices.Equal(got, []string{"c1", "c2", "c3", "c4"}) {
		t.Errorf("flushed %v: %v", flushed, got)
	}
	if held, _ := h.hold(cmdN("d", 5), true); held {
		t.Error("a command held after the flush")
	}
	if h.flush("d", func(protocols.Command, bool) { t.Error("delivered twice") }) {
		t.Error("flushed twice")
	}
}

func TestHandoffBoundsAndExpiry(t *testing.T) {
	h := newHandoffs()
	now := time.Now()
	h.expect("d", "gw-a", 5, now)
	for i := range maxHeld {
		h.hold(cmdN("d", i), i%2 == 0)
	}
	if held, full := h.hold(cmdN("d", maxHeld), true); !held || !full {
		t.Errorf("command past the bound: held %v full %v", held, full)
	}
	named := 0
	h.flush("d", func(_ protocols.Command, n bool) {
		if n {
			named++
		}
	})
	if named != maxHeld/2 {
		t.Errorf("flush delivered %d named commands, want %d", named, maxHeld/2)
	}

	h.expect("d", "gw-a", 5, now)
	h.leave("x", now)
	if !h.isLeaving("x", now.Add(handoffLinger-time.Millisecond)) || h.isLeaving("x", now.Add(handoffLinger)) {
		t.Error("isLeaving does not follow handoffLinger")
	}
	arrivals, departures, next := h.expired(now.Add(time.Second))
	if len(arrivals)+len(departures) != 0 || !next.Equal(now.Add(handoffWait)) {
		t.Errorf("too early: %v %v, next %v", arrivals, departures, next.Sub(now))
	}
	arrivals, departures, next = h.expired(now.Add(handoffLinger))
	if !slices.Equal(arrivals, []string{"d"}) || !slices.Equal(departures, []string{"x"}) || !next.IsZero() {
		t.Errorf("expired %v %v, next %v", arrivals, departures, next)
	}
	if got := h.arrivingFrom("gw-a"); !slices.Equal(got, []string{"d"}) {
		t.Errorf("arrivingFrom: %v", got)
	}
}

// A release lists the device's newest ids first, and only its own.
func TestRecentCommandsOf(t *testing.T) {
	r := newRecentCommands()
	for i := range recentSize + 10 { // wraps around the ring
		r.reserve([]string{"a", "b"}[i%2], fmt.Sprint(i))
	}
	n := recentSize + 10
	want := []string{fmt.Sprint(n - 2), fmt.Sprint(n - 4), fmt.Sprint(n - 6)}
	if got := r.of("a", 3); !slices.Equal(got, want) {
		t.Errorf("of(a, 3) = %v, want %v", got, want)
	}
	if got := r.of("c", 3); len(got) != 0 {
		t.Errorf("of(c) = %v", got)
	}
	if got := r.of("b", recentSize); len(got) != recentSize/2 {
		t.Errorf("of(b) has %d ids, want %d", len(got), recentSize/2)
	}
}

// An id a release listed is forgotten when its sender could not deliver the
// command after all; one delivered here is not. Forgotten ids are not
// listed in releases.
func TestRecentCommandsReleased(t *testing.T) {
	r := newRecentCommands()
	r.released("d", "there")
	if !r.reserve("d", "here") || r.reserve("d", "here") {
		t.Fatal("reserve does not refuse a second time")
	}
	r.forgetReleased("d", "here")
	r.forgetReleased("d", "there")
	if r.reserve("d", "here") {
		t.Error("an id delivered here was forgotten on an undelivered forward")
	}
	if !r.reserve("d", "there") {
		t.Error("an id a release listed was kept although its sender could not deliver it")
	}
	r.reserve("d", "gone")
	r.forget("d", "gone")
	if got := r.of("d", 10); slices.Contains(got, "gone") {
		t.Errorf("a forgotten id is listed: %v", got)
	}
}
