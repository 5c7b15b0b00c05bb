//go:build race

package gateway

// raceEnabled: the tests run with the race detector, whose instrumentation
// makes stack frames larger.
const raceEnabled = true
