package mdns

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine (readers, Run, Browse) survives
// its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
