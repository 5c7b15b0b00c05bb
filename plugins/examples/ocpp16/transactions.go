package ocpp16

import (
	"sync"
	"time"
)

// transactionIDs hands out the transaction ids of StartTransaction, per
// charge point identity. It outlives sessions, so a charge point that
// reconnects never gets an id again, and lives in memory only.
//
// An id is the number of seconds since idEpoch, or one more than the
// charge point's previous id when that is larger. A plugin that restarts
// thus does not start over at 1 but at the clock, above every id it gave
// before, unless a charge point averaged more than one transaction a
// second or the clock went back. That is what makes memory enough: MQTT
// consumers keep the history and key sessions by charge point and
// transaction id, and a repeated id would merge two charging sessions.
// A central system that also bills would persist the last id (and the open
// transactions) per charge point instead.
type transactionIDs struct {
	mu   sync.Mutex
	last map[string]int // by charge point identity
}

// idEpoch starts the clock of transaction ids: they stay below 2^31, which
// charge points commonly store them in, until 2093.
var idEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// processIDs serves every Protocol that does not bring its own: one plugin
// process, one sequence per charge point.
var processIDs = newTransactionIDs()

func newTransactionIDs() *transactionIDs {
	return &transactionIDs{last: make(map[string]int)}
}

// next returns a new positive transaction id for the charge point.
func (t *transactionIDs) next(identity string, now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := max(t.last[identity]+1, int(now.Sub(idEpoch)/time.Second))
	t.last[identity] = id
	return id
}
