package trust

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ski returns a distinct valid SKI for n.
func ski(n int) string { return fmt.Sprintf("%040x", n+1) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTest opens a store in a fresh directory with a controlled clock.
func openTest(t *testing.T) (*Store, *clock) {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state", "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	s.now = c.now
	return s, c
}

func mustCheck(t *testing.T, s *Store, ski, shipID string, auto bool) Decision {
	t.Helper()
	d, err := s.Check(ski, shipID, auto)
	if err != nil {
		t.Fatalf("Check(%s): %v", ski, err)
	}
	return d
}

func sameEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.SKI != y.SKI || x.SHIPID != y.SHIPID || x.State != y.State || x.AutoAccepted != y.AutoAccepted ||
			!x.FirstSeen.Equal(y.FirstSeen) || !x.LastSeen.Equal(y.LastSeen) {
			return false
		}
	}
	return true
}

func TestPersistence(t *testing.T) {
	t.Parallel()
	s, c := openTest(t)
	mustCheck(t, s, ski(1), "", false)
	mustCheck(t, s, strings.ToUpper(ski(2)), "Brand-Model-2", false)
	c.advance(time.Hour)
	mustCheck(t, s, ski(3), "", true)
	if err := s.Approve(ski(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.LearnSHIPID(ski(1), "Brand-Model-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reject(ski(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Approve(ski(4)); err != nil { // paired in advance
		t.Fatal(err)
	}
	before := s.List()

	r, err := Open(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	after := r.List()
	if !sameEntries(before, after) {
		t.Fatalf("after reopen:\n%+v\nwant\n%+v", after, before)
	}
	want := map[string]Entry{
		ski(1): {State: Trusted, SHIPID: "Brand-Model-1"},
		ski(2): {State: Rejected, SHIPID: "Brand-Model-2"},
		ski(3): {State: Trusted, AutoAccepted: true},
		ski(4): {State: Trusted},
	}
	for _, e := range after {
		w := want[e.SKI]
		if e.State != w.State || e.SHIPID != w.SHIPID || e.AutoAccepted != w.AutoAccepted {
			t.Errorf("%s: %+v, want %+v", e.SKI, e, w)
		}
	}
	if e, _ := r.Get(ski(4)); !e.FirstSeen.IsZero() {
		t.Errorf("entry added before it was seen has FirstSeen %v", e.FirstSeen)
	}
	if e, _ := r.Get(ski(3)); !e.FirstSeen.Equal(time.Date(2025, 1, 2, 4, 4, 5, 0, time.UTC)) {
		t.Errorf("FirstSeen %v", e.FirstSeen)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", fi.Mode().Perm())
	}
	if ents, _ := os.ReadDir(filepath.Dir(s.Path())); len(ents) != 1 {
		t.Errorf("%d files beside the store, want only the store", len(ents))
	}
}

func TestAtomicWrite(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	mustCheck(t, s, ski(1), "", true)
	good, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}

	// A crash in the middle of a write: half the data reaches a temporary
	// file, and the process dies before the rename.
	crash := errors.New("simulated crash")
	s.writeFile = func(path string, data []byte) error {
		f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
		if err != nil {
			return err
		}
		_, _ = f.Write(data[:len(data)/2])
		_ = f.Close()
		return crash
	}
	if _, err := s.Check(ski(2), "", false); !errors.Is(err, crash) {
		t.Fatalf("Check err = %v, want the write error", err)
	}
	if err := s.Approve(ski(3)); !errors.Is(err, crash) {
		t.Fatalf("Approve err = %v", err)
	}
	if err := s.Remove(ski(1)); !errors.Is(err, crash) {
		t.Fatalf("Remove err = %v", err)
	}
	// The store did not take in what it could not write.
	if _, ok := s.Get(ski(2)); ok {
		t.Error("entry kept in memory although not written")
	}
	if _, ok := s.Get(ski(1)); !ok {
		t.Error("entry removed in memory although not written")
	}
	now, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if string(now) != string(good) {
		t.Errorf("store file changed by a failed write:\n%s", now)
	}

	r, err := Open(s.Path()) // the "restart"
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	if l := r.List(); len(l) != 1 || l[0].SKI != ski(1) {
		t.Errorf("after crash: %+v", l)
	}
	if stale, _ := filepath.Glob(tempPattern(s.Path())); len(stale) != 0 {
		t.Errorf("temporary files left after Open: %v", stale)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"truncated":     `{"version":1,"peers":[{"ski":"`,
		"bad version":   `{"version":2,"peers":[]}`,
		"bad SKI":       `{"version":1,"peers":[{"ski":"xyz","state":"trusted"}]}`,
		"bad state":     `{"version":1,"peers":[{"ski":"` + ski(1) + `","state":"maybe"}]}`,
		"unknown field": `{"version":1,"peers":[],"extra":1}`,
		"duplicate": `{"version":1,"peers":[{"ski":"` + ski(1) + `","state":"trusted"},` +
			`{"ski":"` + strings.ToUpper(ski(1)) + `","state":"rejected"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "trust.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path); err == nil {
				t.Error("Open accepted it")
			}
		})
	}
}

func TestDecisionTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		initial   State // "" = unknown
		auto      bool
		want      Decision
		wantAutoF bool
	}{
		{"unknown", "", false, Pending, false},
		{"unknown, auto-accept", "", true, Trusted, true},
		{"pending", Pending, false, Pending, false},
		{"pending, auto-accept", Pending, true, Trusted, true},
		{"trusted", Trusted, false, Trusted, false},
		{"trusted, auto-accept", Trusted, true, Trusted, false},
		{"rejected", Rejected, false, Rejected, false},
		{"rejected, auto-accept", Rejected, true, Rejected, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := openTest(t)
			switch tt.initial {
			case Pending:
				mustCheck(t, s, ski(1), "", false)
			case Trusted:
				_ = s.Approve(ski(1))
			case Rejected:
				_ = s.Reject(ski(1))
			}
			if got := mustCheck(t, s, ski(1), "", tt.auto); got != tt.want {
				t.Errorf("Check = %s, want %s", got, tt.want)
			}
			e, ok := s.Get(ski(1))
			if !ok || e.State != tt.want || e.AutoAccepted != tt.wantAutoF {
				t.Errorf("entry %+v", e)
			}
		})
	}
}

func TestCheckSHIPIDAndInput(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	if _, err := s.Check("not-an-ski", "", true); err == nil {
		t.Error("invalid SKI accepted")
	}
	grouped := strings.ToUpper(ski(1)[:20] + " " + ski(1)[20:])
	mustCheck(t, s, grouped, "", true)
	if _, ok := s.Get(ski(1)); !ok {
		t.Fatal("grouped upper-case SKI not normalised")
	}
	if err := s.LearnSHIPID(ski(1), "Id-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.LearnSHIPID(ski(1), "Id-1"); err != nil {
		t.Errorf("same SHIP ID again: %v", err)
	}
	if err := s.LearnSHIPID(ski(1), "Id-2"); !errors.Is(err, ErrSHIPIDMismatch) {
		t.Errorf("LearnSHIPID other: %v", err)
	}
	if d, err := s.Check(ski(1), "Id-2", true); !errors.Is(err, ErrSHIPIDMismatch) || d != Trusted {
		t.Errorf("Check other SHIP ID = %s, %v", d, err)
	}
	if err := s.LearnSHIPID(ski(9), "Id-9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LearnSHIPID unknown: %v", err)
	}
	if err := s.Remove(ski(9)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove unknown: %v", err)
	}
	if err := s.ApproveWithSHIPID(ski(5), "Id;5"); err == nil {
		t.Error("invalid SHIP ID accepted")
	}
	if err := s.ApproveWithSHIPID(ski(5), "Id-5"); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get(ski(5)); e.SHIPID != "Id-5" || e.State != Trusted {
		t.Errorf("%+v", e)
	}
}

func TestLastSeenWrites(t *testing.T) {
	t.Parallel()
	s, c := openTest(t)
	writes := 0
	s.writeFile = func(path string, data []byte) error { writes++; return writeFile(path, data) }
	mustCheck(t, s, ski(1), "", true)
	c.advance(10 * time.Second)
	mustCheck(t, s, ski(1), "", true)
	if writes != 1 {
		t.Errorf("%d writes, want 1: a reconnect within a minute is not written", writes)
	}
	if e, _ := s.Get(ski(1)); !e.LastSeen.Equal(c.now()) {
		t.Errorf("LastSeen %v not updated in memory", e.LastSeen)
	}
	c.advance(2 * time.Minute)
	mustCheck(t, s, ski(1), "", true)
	if writes != 2 {
		t.Errorf("%d writes, want 2", writes)
	}
}

// waitingOn blocks until n waiters exist for ski (so a test knows Wait is
// parked before it acts).
func waitingOn(t *testing.T, s *Store, ski string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		_, ok := s.waiters[ski]
		s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no waiter")
}

func TestWait(t *testing.T) {
	t.Parallel()
	type result struct {
		d   Decision
		err error
	}
	tests := []struct {
		name    string
		act     func(s *Store) error
		want    Decision
		wantErr error
	}{
		{"approve", func(s *Store) error { return s.Approve(ski(1)) }, Trusted, nil},
		{"reject", func(s *Store) error { return s.Reject(ski(1)) }, Rejected, nil},
		{"remove", func(s *Store) error { return s.Remove(ski(1)) }, Rejected, ErrNotFound},
		{"auto-accept switched on", func(s *Store) error { _, err := s.Check(ski(1), "", true); return err }, Trusted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := openTest(t)
			mustCheck(t, s, ski(1), "", false)
			const n = 3
			results := make(chan result, n)
			for range n {
				go func() {
					d, err := s.Wait(context.Background(), ski(1))
					results <- result{d, err}
				}()
			}
			waitingOn(t, s, ski(1))
			if err := tt.act(s); err != nil {
				t.Fatal(err)
			}
			for range n {
				select {
				case r := <-results:
					if r.d != tt.want || !errors.Is(r.err, tt.wantErr) {
						t.Errorf("Wait = %s, %v; want %s, %v", r.d, r.err, tt.want, tt.wantErr)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("waiter not woken")
				}
			}
		})
	}

	t.Run("context ends", func(t *testing.T) {
		t.Parallel()
		s, _ := openTest(t)
		mustCheck(t, s, ski(1), "", false)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan result, 1)
		go func() {
			d, err := s.Wait(ctx, ski(1))
			done <- result{d, err}
		}()
		waitingOn(t, s, ski(1))
		cancel()
		if r := <-done; r.d != Pending || !errors.Is(r.err, context.Canceled) {
			t.Errorf("Wait = %s, %v", r.d, r.err)
		}
	})

	t.Run("not pending", func(t *testing.T) {
		t.Parallel()
		s, _ := openTest(t)
		_ = s.Approve(ski(1))
		_ = s.Reject(ski(2))
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // must not be needed
		if d, err := s.Wait(ctx, ski(1)); d != Trusted || err != nil {
			t.Errorf("trusted: %s, %v", d, err)
		}
		if d, err := s.Wait(ctx, ski(2)); d != Rejected || err != nil {
			t.Errorf("rejected: %s, %v", d, err)
		}
		if _, err := s.Wait(ctx, ski(3)); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown: %v", err)
		}
	})
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t)
	events, cancel := s.Subscribe(16)
	mustCheck(t, s, ski(1), "", false)
	mustCheck(t, s, ski(1), "", false) // LastSeen only: no event
	_ = s.Approve(ski(1))
	_ = s.Remove(ski(1))
	want := []struct {
		state   State
		removed bool
	}{{Pending, false}, {Trusted, false}, {Trusted, true}}
	for i, w := range want {
		select {
		case ev := <-events:
			if ev.Entry.SKI != ski(1) || ev.Entry.State != w.state || ev.Removed != w.removed {
				t.Errorf("event %d: %+v, want %+v", i, ev, w)
			}
		default:
			t.Fatalf("event %d missing", i)
		}
	}
	select {
	case ev := <-events:
		t.Errorf("unexpected event %+v", ev)
	default:
	}
	cancel()
	cancel()
	if _, open := <-events; open {
		t.Error("channel open after cancel")
	}
	_ = s.Approve(ski(2)) // no send on a closed channel
}

func TestBounds(t *testing.T) {
	t.Parallel()

	t.Run("pending", func(t *testing.T) {
		t.Parallel()
		s, c := openTest(t)
		s.maxPending = 5
		_ = s.Approve(ski(100))
		_ = s.Reject(ski(101))
		events, cancel := s.Subscribe(64)
		defer cancel()
		mustCheck(t, s, ski(0), "", false)
		waitErr := make(chan error, 1)
		go func() { _, err := s.Wait(context.Background(), ski(0)); waitErr <- err }()
		waitingOn(t, s, ski(0))
		for i := 1; i < 8; i++ {
			c.advance(time.Minute)
			mustCheck(t, s, ski(i), "", false)
		}
		var pending []string
		for _, e := range s.List() {
			if e.State == Pending {
				pending = append(pending, e.SKI)
			}
		}
		if want := []string{ski(3), ski(4), ski(5), ski(6), ski(7)}; strings.Join(pending, ",") != strings.Join(want, ",") {
			t.Errorf("pending %v, want the 5 most recent %v", pending, want)
		}
		if _, ok := s.Get(ski(100)); !ok {
			t.Error("trusted entry dropped")
		}
		if _, ok := s.Get(ski(101)); !ok {
			t.Error("rejected entry dropped")
		}
		if err := <-waitErr; !errors.Is(err, ErrNotFound) {
			t.Errorf("waiter of a dropped entry: %v", err)
		}
		removed := 0
		for len(events) > 0 {
			if ev := <-events; ev.Removed {
				removed++
			}
		}
		if removed != 3 {
			t.Errorf("%d removal events, want 3", removed)
		}
		// A pending entry seen again is kept over older ones.
		c.advance(time.Minute)
		mustCheck(t, s, ski(3), "", false)
		c.advance(time.Minute)
		mustCheck(t, s, ski(8), "", false)
		if _, ok := s.Get(ski(3)); !ok {
			t.Error("recently seen pending entry dropped")
		}
		if _, ok := s.Get(ski(4)); ok {
			t.Error("least recently seen pending entry kept")
		}
		r, err := Open(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.List()) != 7 {
			t.Errorf("%d entries on disk, want 5 pending + 2", len(r.List()))
		}
	})

	t.Run("auto-accepted", func(t *testing.T) {
		t.Parallel()
		s, c := openTest(t)
		s.maxAuto = 3
		_ = s.Approve(ski(100))
		for i := range 6 {
			c.advance(time.Minute)
			mustCheck(t, s, ski(i), "", true)
		}
		got := s.List()
		if len(got) != 4 || got[0].SKI != ski(3) || got[3].SKI != ski(100) {
			t.Errorf("entries %+v, want 3 newest auto-accepted and the approved one", got)
		}
	})

	t.Run("same clock", func(t *testing.T) {
		t.Parallel()
		s, _ := openTest(t) // time does not move: the newcomer still stays
		s.maxPending = 2
		for i := 9; i >= 0; i-- {
			mustCheck(t, s, ski(i), "", false)
			if _, ok := s.Get(ski(i)); !ok {
				t.Fatalf("newcomer %d dropped", i)
			}
		}
		if len(s.List()) != 2 {
			t.Errorf("%d entries", len(s.List()))
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s, err := Open(filepath.Join(t.TempDir(), "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := s.Subscribe(8)
	defer cancel()
	go func() {
		for range events { //nolint:revive // drain
		}
	}()
	const workers, per = 4, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				k := ski(w*per + i)
				if _, err := s.Check(k, "", false); err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				waited := make(chan Decision, 1)
				go func() { d, _ := s.Wait(ctx, k); waited <- d }()
				var err error
				if i%2 == 0 {
					err = s.Approve(k)
				} else {
					err = s.Reject(k)
				}
				if err != nil {
					t.Error(err)
				}
				if d := <-waited; d == Pending {
					t.Errorf("%s: waiter not woken", k)
				}
				cancel()
				_ = s.List()
				_, _ = s.Get(ski(i))
			}
		}()
	}
	wg.Wait()
	list := s.List()
	if len(list) != workers*per {
		t.Fatalf("%d entries, want %d", len(list), workers*per)
	}
	r, err := Open(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !sameEntries(list, r.List()) {
		t.Error("file differs from memory after concurrent use")
	}
	for _, e := range list {
		var n int
		_, _ = fmt.Sscanf(e.SKI, "%x", &n)
		if want := map[bool]State{true: Trusted, false: Rejected}[(n-1)%per%2 == 0]; e.State != want {
			t.Errorf("%s: %s, want %s", e.SKI, e.State, want)
		}
	}
}
