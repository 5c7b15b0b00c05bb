//go:build !linux

package exec

import (
	"os"
	"syscall"
)

// Only the program is signalled here, through os.Process, which knows
// when it has been reaped.
const exitObservable = false

// procAttr: outside Linux the program stays in the gateway's process
// group, and only the program itself is signalled.
func procAttr() *syscall.SysProcAttr { return nil }

// awaitExit cannot wait without reaping here: it does not wait.
func awaitExit(int) bool { return false }

// signalGroup signals the program only; os.Process knows when it is gone.
func signalGroup(p *os.Process, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		_ = p.Kill()
		return
	}
	_ = p.Signal(sig)
}
