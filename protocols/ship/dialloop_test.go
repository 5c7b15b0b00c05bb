package ship

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

func newTestProtocol(t *testing.T) *Protocol {
	t.Helper()
	dir := t.TempDir()
	id, err := identity.LoadOrCreate(dir, identity.Subject{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := trust.Open(filepath.Join(dir, "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{Identity: id, Trust: store})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReconnectDelays(t *testing.T) {
	ps := (&Protocol{}).NewPeers(nil, nil)
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{0, 0, 3 * time.Second},
		{1, 3 * time.Second, 10 * time.Second},
		{2, 10 * time.Second, 20 * time.Second},
		{9, 10 * time.Second, 20 * time.Second},
	} {
		for range 200 {
			if d := ps.delay(tc.attempt); d < tc.min || d >= tc.max {
				t.Fatalf("attempt %d: delay %s outside [%s, %s)", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}

// dialRecorder is a DialFunc that records every dial and keeps the
// "connection" open until its context ends or the test lets it go.
type dialRecorder struct {
	mu    sync.Mutex
	urls  []string
	dials chan string
}

func (d *dialRecorder) dial(ctx context.Context, url string, cfg *tls.Config, p protocols.Protocol) error {
	if cfg == nil || p.Name() != Name {
		panic("dial without the SHIP TLS config or protocol")
	}
	d.mu.Lock()
	d.urls = append(d.urls, url)
	d.mu.Unlock()
	d.dials <- url
	<-ctx.Done()
	return nil
}

func (d *dialRecorder) next(t *testing.T) string {
	t.Helper()
	select {
	case url := <-d.dials:
		return url
	case <-time.After(10 * time.Second):
		t.Fatal("no dial")
		return ""
	}
}

func (d *dialRecorder) none(t *testing.T) {
	t.Helper()
	select {
	case url := <-d.dials:
		t.Fatalf("dialled %s, want no dial", url)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPeersDialTrustedOnly(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := newTestProtocol(t)
	rec := &dialRecorder{dials: make(chan string, 16)}
	ps := p.NewPeers(rec.dial, []DelayRange{{0, time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	const (
		configured = "FC93 5547 7247 12FE 99BA 3BE3 61F9 0FCB 035F 6A41"
		discovered = "1111111111111111111111111111111111111111"
	)
	go func() {
		done <- ps.Run(ctx, []Target{{SKI: configured, URL: "wss://192.0.2.1:4711/ship/"}})
	}()

	// A configured peer is trusted and dialled.
	if url := rec.next(t); url != "wss://192.0.2.1:4711/ship/" {
		t.Fatalf("dialled %s", url)
	}
	if e, ok := p.Trust().Get("fc935547724712fe99ba3be361f90fcb035f6a41"); !ok || e.State != trust.Trusted {
		t.Fatalf("configured peer in the store: %+v %v, want trusted", e, ok)
	}

	// A discovered peer is dialled only once the user trusts it.
	ps.Found(ctx, Target{SKI: discovered, URL: "wss://192.0.2.2:4711/ship/"})
	rec.none(t)
	if err := p.Trust().Approve(discovered); err != nil {
		t.Fatal(err)
	}
	if url := rec.next(t); url != "wss://192.0.2.2:4711/ship/" {
		t.Fatalf("dialled %s after approval", url)
	}

	// Our own SKI is never dialled.
	ps.Found(ctx, Target{SKI: p.Identity().SKI, URL: "wss://192.0.2.3:4711/ship/"})
	rec.none(t)

	// Rejecting a peer ends its connection and its dialling; approving it
	// again dials it again.
	if err := p.Trust().Reject(discovered); err != nil {
		t.Fatal(err)
	}
	rec.none(t)
	if err := p.Trust().Approve(discovered); err != nil {
		t.Fatal(err)
	}
	if url := rec.next(t); url != "wss://192.0.2.2:4711/ship/" {
		t.Fatalf("dialled %s after approval", url)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestPeersConfiguredAddressWins(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := newTestProtocol(t)
	rec := &dialRecorder{dials: make(chan string, 16)}
	ps := p.NewPeers(rec.dial, []DelayRange{{0, time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ski = "2222222222222222222222222222222222222222"
	done := make(chan error, 1)
	go func() { done <- ps.Run(ctx, []Target{{SKI: ski}}) }() // no address: waits for mDNS
	rec.none(t)
	ps.Found(ctx, Target{SKI: ski, URL: "wss://192.0.2.9:4711/ship/"})
	if url := rec.next(t); url != "wss://192.0.2.9:4711/ship/" {
		t.Fatalf("dialled %s, want the discovered address", url)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
