package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestThrottleBlocksAndDoubles(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleOptions{After: 3, Base: time.Second, Max: 5 * time.Second})
	const addr = "192.0.2.1"
	now := t0
	for i, want := range []time.Duration{0, 0, 1, 2, 4, 5, 5} {
		want *= time.Second
		if got := th.Fail(addr, now); got != want {
			t.Fatalf("failure %d: Fail = %v, want %v", i+1, got, want)
		}
		retry, blocked := th.Blocked(addr, now)
		if blocked != (want > 0) || retry != want {
			t.Fatalf("failure %d: Blocked = %v, %v; want %v", i+1, retry, blocked, want)
		}
		if want > 0 {
			if retry, blocked := th.Blocked(addr, now.Add(want-time.Millisecond)); !blocked || retry != time.Millisecond {
				t.Fatalf("failure %d: a moment before the block ends: Blocked = %v, %v", i+1, retry, blocked)
			}
			now = now.Add(want) // the block has ended; the failures are still counted
			if _, blocked := th.Blocked(addr, now); blocked {
				t.Fatalf("failure %d: still blocked after %v", i+1, want)
			}
		}
	}
	if _, blocked := th.Blocked("192.0.2.2", now); blocked {
		t.Error("another address is blocked")
	}
}

func TestThrottleDefaults(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleOptions{})
	var got []time.Duration
	for range 16 {
		got = append(got, th.Fail("192.0.2.1", t0))
	}
	want := []time.Duration{0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("Fail returned %v, want %v seconds", got, want)
		}
	}
}

func TestThrottleSucceedForgets(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleOptions{After: 2})
	const addr = "192.0.2.1"
	th.Fail(addr, t0)
	th.Succeed(addr)
	if d := th.Fail(addr, t0); d != 0 {
		t.Errorf("after Succeed, the next failure blocks for %v: the count was not reset", d)
	}
	if d := th.Fail(addr, t0); d != time.Second {
		t.Errorf("second failure after Succeed blocks for %v, want 1s", d)
	}
	th.Succeed(addr)
	if _, blocked := th.Blocked(addr, t0); blocked {
		t.Error("Succeed did not lift the block")
	}
	th.Succeed("198.51.100.7") // unknown: nothing to forget
	if n := th.Stats().Addrs; n != 0 {
		t.Errorf("%d addresses remembered, want 0", n)
	}
}

func TestThrottleGroupsAddresses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		failing, other string
		same           bool
	}{
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"2001:db8:1:2::1", "2001:0db8:0001:0002:0000:0000:0000:0009", true},
		{"::ffff:192.0.2.1", "192.0.2.1", true},
		{"fe80::1%eth0", "fe80::2%eth1", true},
		{"192.0.2.1:40000", "192.0.2.1:40001", true}, // a port left in is dropped
		{"[2001:db8::1]:443", "2001:db8::2", true},
		{"@", "@", true}, // not an IP: counted as given
		{"@", "192.0.2.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.failing+" "+tt.other, func(t *testing.T) {
			t.Parallel()
			th := NewThrottle(ThrottleOptions{After: 1})
			th.Fail(tt.failing, t0)
			if _, blocked := th.Blocked(tt.other, t0); blocked != tt.same {
				t.Errorf("after %s failed, Blocked(%s) = %v, want %v", tt.failing, tt.other, blocked, tt.same)
			}
		})
	}
}

func TestThrottleMaxAddrs(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleOptions{After: 1, Base: time.Hour, Max: time.Hour, MaxAddrs: 3})
	blocked := func(addr string) bool {
		_, b := th.Blocked(addr, t0)
		return b
	}
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		th.Fail(a, t0)
	}
	th.Fail("192.0.2.1", t0) // .2 is now the least recently failed
	th.Fail("192.0.2.4", t0)
	for addr, want := range map[string]bool{"192.0.2.1": true, "192.0.2.2": false, "192.0.2.3": true, "192.0.2.4": true} {
		if blocked(addr) != want {
			t.Errorf("%s remembered = %v, want %v", addr, !want, want)
		}
	}

	// An attacker with a /48 has 65536 /64s; memory stays at MaxAddrs.
	prefix := netip.MustParsePrefix("2001:db8:7::/48")
	for i := range 1000 {
		a := prefix.Addr().As16()
		a[6], a[7] = byte(i>>8), byte(i)
		th.Fail(netip.AddrFrom16(a).String(), t0)
		if n := th.Stats().Addrs; n > 3 {
			t.Fatalf("%d addresses remembered, want at most 3", n)
		}
	}
}

func TestThrottleForgets(t *testing.T) {
	t.Parallel()
	const forget = 10 * time.Minute
	th := NewThrottle(ThrottleOptions{After: 2, Base: time.Minute, Max: time.Hour, Forget: forget})
	addrs := func(now time.Time) int {
		th.Blocked("198.51.100.1", now) // any call prunes
		return th.Stats().Addrs
	}

	th.Fail("192.0.2.1", t0)
	th.Fail("192.0.2.2", t0.Add(time.Minute))
	for _, step := range []struct {
		at   time.Duration
		want int
	}{
		{forget - 1, 2},
		{forget, 1},
		{forget + time.Minute, 0},
	} {
		if got := addrs(t0.Add(step.at)); got != step.want {
			t.Errorf("at t0+%v: %d addresses remembered, want %d", step.at, got, step.want)
		}
	}
	if d := th.Fail("192.0.2.1", t0.Add(time.Hour)); d != 0 {
		t.Errorf("a forgotten address is blocked for %v on its next failure", d)
	}

	// A block longer than Forget is kept to its end.
	const addr = "192.0.2.9"
	start := t0.Add(2 * time.Hour)
	th.Fail(addr, start)
	th.Fail(addr, start)
	for range 5 {
		th.Fail(addr, start) // blocked for 32 minutes now
	}
	if _, blocked := th.Blocked(addr, start.Add(forget+time.Minute)); !blocked {
		t.Error("the block was forgotten before it ended")
	}
	if _, blocked := th.Blocked(addr, start.Add(32*time.Minute)); blocked {
		t.Error("still blocked after 32 minutes")
	}
	if n := th.Stats().Addrs; n != 0 {
		t.Errorf("%d addresses remembered after the block and Forget passed, want 0", n)
	}
}

func TestThrottleStats(t *testing.T) {
	t.Parallel()
	th := NewThrottle(ThrottleOptions{After: 2, Base: time.Minute})
	for i := range 3 {
		th.Fail(fmt.Sprintf("192.0.2.%d", i), t0) // three addresses, none blocked
	}
	th.Fail("192.0.2.0", t0) // blocked for 1m: the first block
	th.Fail("192.0.2.0", t0) // for 2m: a longer block, not a new one
	th.Blocked("192.0.2.0", t0)
	th.Blocked("192.0.2.0", t0.Add(time.Minute))
	th.Blocked("192.0.2.1", t0)
	later := t0.Add(3 * time.Minute)
	th.Fail("192.0.2.0", later) // the block had ended: the second
	th.Blocked("192.0.2.0", later)

	want := ThrottleStats{Failures: 6, Blocked: 2, Refused: 3, Addrs: 3}
	if got := th.Stats(); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}
