package exec

import (
	osexec "os/exec"
	"sync"
	"syscall"
)

// process is a started command and its process group (on Linux: the
// program and whatever it starts, unless that leaves the group). The
// group is signalled only while the program is not reaped yet, so its id
// can never name someone else's group; once the program exits, what it
// left running in its group is killed.
type process struct {
	cmd    *osexec.Cmd
	mu     sync.Mutex
	reaped bool          // no group signal from now on
	done   chan struct{} // closed when the program is reaped
	err    error         // from Wait; set before done is closed
}

// start starts cmd in a process group of its own.
func start(cmd *osexec.Cmd) (*process, error) {
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) wait() {
	exited := awaitExit(p.pid()) // the program is a zombie: its pid stays taken
	p.mu.Lock()
	if exited {
		signalGroup(p.cmd.Process, syscall.SIGKILL) // what it left behind
	}
	p.reaped = true
	p.mu.Unlock()
	p.err = p.cmd.Wait()
	close(p.done)
}

// signal sends sig to the process group while the program is not reaped.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped || !exitObservable {
		signalGroup(p.cmd.Process, sig)
	}
}
