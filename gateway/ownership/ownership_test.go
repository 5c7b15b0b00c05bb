package ownership

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestAfter(t *testing.T) {
	t.Parallel()
	on := func(gw, session string, stamp uint64) Claim {
		return Claim{Gateway: gw, Session: session, Stamp: stamp, Online: true}
	}
	off := func(c Claim) Claim { c.Online = false; return c }
	for _, tc := range []struct {
		name  string
		a, b  Claim
		after bool
	}{
		{"higher stamp", on("gw-a", "s1", 2), on("gw-b", "s9", 1), true},
		{"lower stamp", on("gw-b", "s9", 1), on("gw-a", "s1", 2), false},
		{"a higher stamp wins over a later-looking clock", Claim{Gateway: "gw-a", Session: "s1", Stamp: 2, Online: true, Since: time.Unix(0, 0)},
			Claim{Gateway: "gw-b", Session: "s2", Stamp: 1, Online: true, Since: time.Now()}, true},
		{"same stamp: the greater gateway id", on("gw-b", "s1", 3), on("gw-a", "s2", 3), true},
		{"same stamp and gateway: the greater session id", on("gw-a", "s2", 3), on("gw-a", "s1", 3), true},
		{"the end of a session supersedes its start", off(on("gw-a", "s1", 3)), on("gw-a", "s1", 3), true},
		{"the start of a session does not supersede its end", on("gw-a", "s1", 3), off(on("gw-a", "s1", 3)), false},
		{"the end of an older session does not supersede a newer one", off(on("gw-a", "s1", 3)), on("gw-b", "s2", 4), false},
		{"a claim does not supersede itself", on("gw-a", "s1", 3), on("gw-a", "s1", 3), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.After(tc.b); got != tc.after {
				t.Errorf("%+v.After(%+v) = %v, want %v", tc.a, tc.b, got, tc.after)
			}
		})
	}
}

// broker stands in for the MQTT broker: it keeps the claims published on
// one device's retained status topic in the order it took them, and hands
// them to each gateway in that order.
type broker struct {
	log []Claim
}

func (b *broker) publish(c Claim) { b.log = append(b.log, c) }

// instance is one gateway: its table, the device session it holds, and
// how far into the broker's log it has read.
type instance struct {
	id      string
	table   *Table
	held    Claim // zero when the gateway holds no session
	read    int
	evicted int // sessions closed because a later claim came
}

// catchUp delivers the claims the instance has not read yet; a later claim
// than the one it holds closes its session.
func (in *instance) catchUp(b *broker) {
	for ; in.read < len(b.log); in.read++ {
		c := b.log[in.read]
		in.table.Observe("dev", c)
		if in.held.Stamp != 0 && in.table.Superseded("dev", in.held) {
			in.held = Claim{}
			in.evicted++
		}
	}
}

// connect is a new session of the device at the instance: it claims and
// announces the claim.
func (in *instance) connect(b *broker, session string) Claim {
	in.held = in.table.Claim("dev", session)
	b.publish(in.held)
	return in.held
}

// A gateway whose clock is ten minutes behind still wins with the newest
// session of a device, however often the device moves: the order of claims
// comes from stamps, never from clocks. The statuses it publishes do say an
// earlier time than the session it took over from, which is what an order
// by timestamps would have got wrong.
func TestClockSkewDoesNotDecide(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var ticks int
	clock := func(skew time.Duration) func() time.Time {
		return func() time.Time { ticks++; return base.Add(time.Duration(ticks)*time.Millisecond + skew) }
	}
	b := &broker{}
	slow := &instance{id: "gw-slow", table: New("gw-slow", clock(-10*time.Minute))}
	fast := &instance{id: "gw-fast", table: New("gw-fast", clock(0))}
	pair := map[string]*instance{"gw-slow": slow, "gw-fast": fast}

	var previous Claim
	for i := range 200 {
		// The device moves to the other instance; the instance it leaves
		// has not yet heard of the move (it reads the broker afterwards).
		to := slow
		if i%2 == 1 {
			to = fast
		}
		to.catchUp(b)
		c := to.connect(b, fmt.Sprintf("s%d", i))
		if i > 0 && to == slow && !c.Since.Before(previous.Since) {
			t.Fatalf("the slow clock says %v after %v: the test does not skew", c.Since, previous.Since)
		}
		for _, in := range pair {
			in.catchUp(b)
		}
		for _, in := range pair {
			owner, ok := in.table.Owner("dev")
			if !ok || owner.Gateway != to.id || owner.Session != c.Session {
				t.Fatalf("move %d to %s: %s sees the owner %+v, want session %s there", i, to.id, in.id, owner, c.Session)
			}
		}
		if other := pair[map[string]string{"gw-slow": "gw-fast", "gw-fast": "gw-slow"}[to.id]]; i > 0 && other.held.Stamp != 0 {
			t.Fatalf("move %d: %s still holds %+v", i, other.id, other.held)
		}
		previous = c
	}
	if slow.evicted+fast.evicted != 199 {
		t.Errorf("%d sessions closed by takeovers, want 199", slow.evicted+fast.evicted)
	}
}

// Two gateways claim the device at once, each knowing the same latest
// claim: their stamps tie, and every observer picks the same winner in
// whatever order the claims reach it.
func TestConcurrentClaimsAgree(t *testing.T) {
	t.Parallel()
	retained := Claim{Gateway: "gw-c", Session: "old", Stamp: 7, Online: true}
	a, b := New("gw-a", nil), New("gw-b", nil)
	a.Observe("dev", retained)
	b.Observe("dev", retained)
	ca, cb := a.Claim("dev", "sa"), b.Claim("dev", "sb")
	if ca.Stamp != 8 || cb.Stamp != 8 {
		t.Fatalf("stamps %d and %d, want 8 and 8", ca.Stamp, cb.Stamp)
	}
	for _, order := range [][]Claim{{retained, ca, cb}, {retained, cb, ca}, {cb, retained, ca}, {ca, cb, retained}} {
		observer := New("gw-z", nil)
		for _, c := range order {
			observer.Observe("dev", c)
		}
		if owner, _ := observer.Owner("dev"); owner.Gateway != "gw-b" || owner.Session != "sb" {
			t.Errorf("claims in order %v: owner %+v, want gw-b's", order, owner)
		}
	}
	a.Observe("dev", cb)
	if !a.Superseded("dev", ca) {
		t.Error("gw-a does not see its claim superseded by gw-b's")
	}
}

// A gateway that restarts knows no stamps: it learns the retained claim
// before it claims, and its claim supersedes it. Claims it issues before
// they come back keep increasing.
func TestRestartLearnsTheStamp(t *testing.T) {
	t.Parallel()
	tb := New("gw-a", nil)
	if c := tb.Claim("dev", "s1"); c.Stamp != 1 {
		t.Fatalf("first stamp %d, want 1", c.Stamp)
	}
	tb = New("gw-a", nil) // restarted
	tb.Observe("dev", Claim{Gateway: "gw-b", Session: "sb", Stamp: 41, Online: false})
	c := tb.Claim("dev", "s2")
	if c.Stamp != 42 {
		t.Fatalf("stamp after the retained 41: %d", c.Stamp)
	}
	if again := tb.Claim("dev", "s3"); again.Stamp != 43 {
		t.Errorf("a second claim before the first came back: stamp %d, want 43", again.Stamp)
	}
	if !tb.Observe("dev", c) {
		t.Error("gw-a's own claim is not the latest once it comes back")
	}
	if tb.Observe("dev", Claim{Gateway: "gw-b", Session: "sb", Stamp: 41, Online: false}) {
		t.Error("an older claim counts as the latest")
	}
	if owner, ok := tb.Owner("dev"); !ok || owner.Session != "s2" {
		t.Errorf("owner %+v %v", owner, ok)
	}
}

// Only an explicit offline makes a gateway dead; the claims of a dead
// gateway are orphans, and so are this gateway's claims on devices it
// does not hold. The leader is the lowest live id.
func TestGatewaysOrphansAndLeader(t *testing.T) {
	t.Parallel()
	tb := New("gw-b", nil)
	tb.Observe("d-dead", Claim{Gateway: "gw-dead", Session: "s", Stamp: 1, Online: true})
	tb.Observe("d-unknown", Claim{Gateway: "gw-unknown", Session: "s", Stamp: 1, Online: true})
	tb.Observe("d-mine", Claim{Gateway: "gw-b", Session: "s", Stamp: 1, Online: true})
	tb.Observe("d-stale", Claim{Gateway: "gw-b", Session: "s", Stamp: 2, Online: true})
	tb.Observe("d-ended", Claim{Gateway: "gw-dead", Session: "s", Stamp: 1, Online: false})
	if !tb.SetGateway("gw-dead", true) || tb.SetGateway("gw-dead", true) {
		t.Error("SetGateway reports changes wrongly")
	}
	tb.SetGateway("gw-b", true)
	tb.SetGateway("gw-c", true)
	if l := tb.Leader(); l != "gw-b" {
		t.Errorf("leader %q, want gw-b", l)
	}
	if _, ok := tb.Owner("d-dead"); !ok {
		t.Error("a live gateway's claim has no owner")
	}
	tb.SetGateway("gw-dead", false)
	tb.SetGateway("gw-b", false)
	if l := tb.Leader(); l != "gw-c" {
		t.Errorf("leader %q after gw-b went offline, want gw-c", l)
	}
	if _, ok := tb.Owner("d-dead"); ok {
		t.Error("a dead gateway still owns its device")
	}
	if _, ok := tb.Owner("d-unknown"); !ok {
		t.Error("a gateway never heard of is taken for dead")
	}
	var got []string
	for _, o := range tb.Orphans(func(device string) bool { return device == "d-mine" }) {
		got = append(got, o.Device)
	}
	slices.Sort(got)
	if want := []string{"d-dead", "d-stale"}; !slices.Equal(got, want) {
		t.Errorf("orphans %v, want %v", got, want)
	}
}

// A gateway takes its own accepted claim for the latest at once only while
// nobody else holds the device.
func TestAdopt(t *testing.T) {
	t.Parallel()
	mine := func(stamp uint64) Claim { return Claim{Gateway: "gw-a", Session: "s-a", Stamp: stamp, Online: true} }
	for _, tc := range []struct {
		name   string
		before []Claim // observed first
		dead   string  // a gateway whose Last Will came
		claim  Claim
		adopt  bool
	}{
		{"a device nobody held", nil, "", mine(1), true},
		{"after an ended session", []Claim{{Gateway: "gw-b", Session: "s-b", Stamp: 4}}, "", mine(5), true},
		{"a device online at another gateway", []Claim{{Gateway: "gw-b", Session: "s-b", Stamp: 4, Online: true}}, "", mine(5), false},
		{"a device online at a dead gateway", []Claim{{Gateway: "gw-b", Session: "s-b", Stamp: 4, Online: true}}, "gw-b", mine(5), true},
		{"a later claim is known", []Claim{{Gateway: "gw-b", Session: "s-b", Stamp: 9}}, "", mine(5), false},
		{"another gateway's claim", nil, "", Claim{Gateway: "gw-b", Session: "s-b", Stamp: 1, Online: true}, false},
		{"an ended session", nil, "", Claim{Gateway: "gw-a", Session: "s-a", Stamp: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := New("gw-a", nil)
			for _, c := range tc.before {
				tb.Observe("d1", c)
			}
			if tc.dead != "" {
				tb.SetGateway(tc.dead, false)
			}
			if got := tb.Adopt("d1", tc.claim); got != tc.adopt {
				t.Fatalf("Adopt = %v, want %v", got, tc.adopt)
			}
			owner, held := tb.Owner("d1")
			if tc.adopt && (!held || !owner.Same(tc.claim)) {
				t.Errorf("owner %+v %v after adopting %+v", owner, held, tc.claim)
			}
			// The claim's echo changes nothing.
			if tc.adopt && !tb.Observe("d1", tc.claim) {
				t.Errorf("the echo of the adopted claim is not the latest")
			}
		})
	}
}
