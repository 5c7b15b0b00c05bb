package ship_test

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols/module"
	"github.com/wsgate/wsgate/protocols/ship"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// TestPairingPeers: the status page sees the trust store's entries with
// their states, and the approve and reject routes its buttons call exist.
func TestPairingPeers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store, err := trust.Open(filepath.Join(dir, "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ship.New(ship.Options{Identity: newIdentity(t, "wsgate-gw"), Trust: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ski := func(c string) string { return strings.Repeat(c, 40) }
	before := time.Now()
	for _, step := range []func() error{
		func() error { _, err := store.Check(ski("a"), "heatpump-1", false); return err },
		func() error { _, err := store.Check(ski("b"), "wallbox-2", false); return err },
		func() error { return store.Reject(ski("b")) },
		func() error { return store.Approve(ski("c")) }, // paired in advance
		func() error { _, err := store.Check(ski("d"), "inverter-3", true); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got := p.PairingPeers()
	want := []module.Peer{
		{ID: ski("a"), Name: "heatpump-1", State: module.PeerPending},
		{ID: ski("b"), Name: "wallbox-2", State: module.PeerRejected},
		{ID: ski("c"), State: module.PeerTrusted},
		{ID: ski("d"), Name: "inverter-3", State: module.PeerTrusted, Auto: true},
	}
	for i := range got {
		if i != 2 && (got[i].LastSeen.Before(before) || got[i].LastSeen.After(time.Now())) {
			t.Errorf("%s last seen %v, not since %v", got[i].ID, got[i].LastSeen, before)
		}
		got[i].LastSeen = time.Time{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("PairingPeers() =\n %+v\nwant\n %+v", got, want)
	}

	svc := &ship.Service{Protocol: p}
	var patterns []string
	for _, r := range svc.AdminRoutes() {
		patterns = append(patterns, r.Pattern)
	}
	for _, action := range []string{"approve", "reject"} {
		if want := "POST /" + p.Name() + "/peers/{ski}/" + action; !slices.Contains(patterns, want) {
			t.Errorf("admin routes %q lack %q, which the status page calls", patterns, want)
		}
	}
	var _ module.Pairer = svc
}
