package brokertest

import "syscall"

// DieWithParent has a child process killed when the test binary dies.
func DieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
