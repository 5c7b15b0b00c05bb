package ocpp16

import (
	"testing"
	"time"
)

func TestTransactionIDs(t *testing.T) {
	t.Parallel()
	at := func(seconds int) time.Time { return idEpoch.Add(time.Duration(seconds) * time.Second) }
	type start struct {
		identity string
		now      time.Time
		want     int
	}
	tests := []struct {
		name   string
		starts []start
	}{
		{"the clock's seconds", []start{{"CP1", at(1000), 1000}, {"CP1", at(5000), 5000}}},
		{"one more within a second", []start{{"CP1", at(1000), 1000}, {"CP1", at(1000), 1001}, {"CP1", at(1001), 1002}}},
		{"per charge point", []start{{"CP1", at(1000), 1000}, {"CP2", at(1000), 1000}, {"CP1", at(1000), 1001}}},
		{"the clock went back", []start{{"CP1", at(1000), 1000}, {"CP1", at(10), 1001}}},
		{"a clock before the epoch", []start{{"CP1", at(-100), 1}, {"CP1", at(-100), 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ids := newTransactionIDs()
			for i, s := range tt.starts {
				if got := ids.next(s.identity, s.now); got != s.want {
					t.Errorf("start %d of %s: id %d, want %d", i, s.identity, got, s.want)
				}
			}
		})
	}
}

// TestTransactionIDsAfterRestart: a plugin that starts over gives ids
// above those it gave before, when its charge points started fewer than
// one transaction a second.
func TestTransactionIDsAfterRestart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	before := newTransactionIDs()
	var last int
	for i := range 100 { // one a minute for 100 minutes
		last = before.next("CP1", now.Add(time.Duration(i)*time.Minute))
	}
	restarted := newTransactionIDs()
	if first := restarted.next("CP1", now.Add(100*time.Minute)); first <= last {
		t.Errorf("after a restart: id %d, not above the last one before, %d", first, last)
	}
}
