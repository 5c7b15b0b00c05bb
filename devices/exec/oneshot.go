package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	osexec "os/exec"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// Oneshot runs the program once per command, with arguments filled in
// from the command, and answers with its exit status and output.
type Oneshot struct {
	id        string
	cfg       Config
	path      string
	templates []template
	env       []string
	log       *slog.Logger
}

func newOneshot(id string, cfg Config, path string, templates []template, env []string, log *slog.Logger) *Oneshot {
	return &Oneshot{id: id, cfg: cfg, path: path, templates: templates, env: env, log: log}
}

// Output is the data of a oneshot command's result.
type Output struct {
	Exit      int    `json:"exit"` // -1 when killed by a signal
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Truncated bool   `json:"truncated,omitempty"` // either was cut at max_output
}

// waitDelay bounds the wait for the output of a program whose pipes are
// held by a process that left its group.
const waitDelay = time.Second

// Run has nothing to do between commands: it waits for ctx.
func (o *Oneshot) Run(ctx context.Context, _ devices.Outlet) error {
	<-ctx.Done()
	return nil
}

// Command runs the program for cmd. The result is ok when it exits with
// status 0; its data is an Output, its error "exit status N", "timeout"
// (the process group was killed after the timeout option) or what else
// ended it.
func (o *Oneshot) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	fail := func(format string, args ...any) protocols.Result {
		return protocols.Result{ID: cmd.ID, Error: fmt.Sprintf(format, args...)}
	}
	args, err := argv(o.templates, o.id, cmd)
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	stdout, stderr := &capped{max: o.cfg.MaxOutput}, &capped{max: o.cfg.MaxOutput}
	c := &osexec.Cmd{Path: o.path, Args: args, Dir: o.cfg.Dir, Env: o.env, Stdout: stdout, Stderr: stderr, WaitDelay: waitDelay}
	p, err := start(c)
	if err != nil {
		return fail("start: %v", err)
	}
	var ended error // what ended it before it exited
	select {
	case <-p.done:
	case <-ctx.Done():
		p.signal(syscall.SIGKILL)
		<-p.done
		ended = ctx.Err()
	}
	out := Output{Exit: c.ProcessState.ExitCode(), Stdout: string(stdout.buf), Stderr: string(stderr.buf),
		Truncated: stdout.truncated || stderr.truncated}
	data, _ := json.Marshal(out)
	res := protocols.Result{ID: cmd.ID, Data: data}
	var exitErr *osexec.ExitError
	switch {
	case errors.Is(ended, context.DeadlineExceeded):
		res.Error = "timeout"
	case ended != nil:
		res.Error = ended.Error()
	case p.err == nil:
		res.OK = true
	case errors.As(p.err, &exitErr):
		res.Error = exitErr.Error() // "exit status 3", "signal: killed"
	default:
		res.Error = p.err.Error() // output not closed within waitDelay
	}
	if !res.OK {
		o.log.Warn("command failed", "command", cmd.Name, "err", res.Error)
	}
	return res
}

// capped keeps the first max bytes written to it.
type capped struct {
	buf       []byte
	max       int
	truncated bool
}

// Write takes all of p, so that the program never blocks on its output.
func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if room := c.max - len(c.buf); n > room {
		c.truncated = true
		p = p[:max(room, 0)]
	}
	c.buf = append(c.buf, p...)
	return n, nil
}

var _ devices.Device = (*Oneshot)(nil)
