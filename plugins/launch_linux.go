package plugins

import (
	"os/exec"
	"syscall"
)

// dieWithParent asks the kernel to kill the plugin when the gateway dies,
// even by SIGKILL. The SDK also exits when its parent changes, for the
// case where the launching thread, not the process, ends.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
