package exec

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// awaitExit waits for the exit without reaping, so the group can be
// signalled safely until Wait.
const exitObservable = true

// procAttr puts the program in a process group of its own, so that what
// it starts is signalled with it, and kills it should the gateway die
// without stopping it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// awaitExit waits until the process has exited without reaping it.
func awaitExit(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return err == nil
		}
	}
}

// signalGroup signals the process group that p leads.
func signalGroup(p *os.Process, sig syscall.Signal) {
	_ = syscall.Kill(-p.Pid, sig)
}
