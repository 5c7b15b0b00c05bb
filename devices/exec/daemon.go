package exec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// queueSize bounds the lines (commands and routed frames) waiting for a
// daemon's stdin; more fail with protocols.ErrBusy.
const queueSize = 64

// readGrace bounds the wait for a daemon's last output once it has
// exited: a process that left its group may hold the pipes open.
const readGrace = 2 * time.Second

// warnEvery limits how often one kind of repeated warning is logged.
const warnEvery = 10 * time.Second

// Daemon is a long-running program: its stdout lines are frames, its
// stdin takes commands and routed frames, its stderr lines are logged. It
// is restarted when it exits. Its methods are safe for concurrent use.
type Daemon struct {
	cfg  Config
	path string
	argv []string
	env  []string
	log  *slog.Logger

	mu    sync.Mutex
	queue chan line // of the running process; nil while none runs

	frames, invalid, oversize, dropped, starts atomic.Uint64
	warner                                     devices.Warner
}

// line is one queued line for stdin, newline included.
type line struct {
	data []byte
	ctx  context.Context // the command's; nil for routed frames
	done chan error      // buffered; nil for routed frames
}

// Stats counts what a daemon did since Open.
type Stats struct {
	Frames   uint64 // published
	Invalid  uint64 // stdout lines skipped: not JSON with encoding "json"
	Oversize uint64 // stdout lines skipped: longer than max_line
	Dropped  uint64 // frames not published (router busy) or routed frames not written
	Starts   uint64 // times the program was started
}

func newDaemon(cfg Config, path string, templates []template, env []string, log *slog.Logger) *Daemon {
	argv := make([]string, len(templates))
	for i, t := range templates {
		argv[i] = t.text()
	}
	return &Daemon{cfg: cfg, path: path, argv: argv, env: env, log: log, warner: devices.Warner{Log: log, Every: warnEvery}}
}

// Stats returns the daemon's counters.
func (d *Daemon) Stats() Stats {
	return Stats{Frames: d.frames.Load(), Invalid: d.invalid.Load(), Oversize: d.oversize.Load(),
		Dropped: d.dropped.Load(), Starts: d.starts.Load()}
}

// Run starts the program and publishes its stdout lines until ctx ends,
// starting it again after a delay (restart_min doubling up to
// restart_max) whenever it exits. When ctx ends the program gets SIGTERM,
// and SIGKILL after stop_grace; Run returns nil once it is reaped.
func (d *Daemon) Run(ctx context.Context, out devices.Outlet) error {
	delay := d.cfg.RestartMin
	for {
		started := time.Now()
		err := d.runOnce(ctx, out)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) >= d.cfg.RestartMax {
			delay = d.cfg.RestartMin // it ran for a while: start over
		}
		d.log.Warn("program ended; starting it again", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, d.cfg.RestartMax)
	}
}

// runOnce runs the program once, until it exits or ctx ends.
func (d *Daemon) runOnce(ctx context.Context, out devices.Outlet) error {
	var files []*os.File // closed on the way out
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	stdinR, stdinW, err := pipe()
	if err != nil {
		return err
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		return err
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		return err
	}
	cmd := &osexec.Cmd{Path: d.path, Args: d.argv, Dir: d.cfg.Dir, Env: d.env,
		Stdin: stdinR, Stdout: stdoutW, Stderr: stderrW}
	p, err := start(cmd)
	// The program has its ends; without closing ours, its stdout would
	// never reach EOF.
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	d.starts.Add(1)
	d.log.Info("program started", "pid", p.pid())

	queue := make(chan line, queueSize)
	writerCtx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	d.setQueue(queue)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); d.readStdout(stdoutR, out) }()
	go func() { defer wg.Done(); d.readStderr(stderrR) }()
	go func() { defer wg.Done(); d.writeStdin(writerCtx, stdinW, queue) }()

	select {
	case <-p.done:
	case <-ctx.Done():
		p.signal(syscall.SIGTERM)
		t := time.NewTimer(d.cfg.StopGrace)
		select {
		case <-p.done:
		case <-t.C:
			d.log.Warn("program did not stop after SIGTERM; killing it", "grace", d.cfg.StopGrace)
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		t.Stop()
	}
	d.setQueue(nil) // nothing more is queued
	stopWriter()
	_ = stdinW.SetWriteDeadline(time.Now()) // a write the program never read
	_ = stdoutR.SetReadDeadline(time.Now().Add(readGrace))
	_ = stderrR.SetReadDeadline(time.Now().Add(readGrace))
	wg.Wait()
	d.drain(queue)
	if p.err != nil {
		return p.err
	}
	return errors.New("exit status 0")
}

func (d *Daemon) setQueue(queue chan line) {
	d.mu.Lock()
	d.queue = queue
	d.mu.Unlock()
}

// enqueue queues a line for the running program's stdin.
func (d *Daemon) enqueue(l line) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.queue == nil {
		return fmt.Errorf("%w: %s is not running", protocols.ErrDeviceOffline, d.path)
	}
	select {
	case d.queue <- l:
		return nil
	default:
		return fmt.Errorf("%w: %d lines already wait for the stdin of %s", protocols.ErrBusy, cap(d.queue), d.path)
	}
}

// drain fails the lines left when the program ended: a new run should
// not get what was meant for the last one.
func (d *Daemon) drain(queue chan line) {
	for {
		select {
		case l := <-queue:
			if l.done != nil {
				l.done <- errors.New("the program ended before reading it")
			} else {
				d.dropped.Add(1)
			}
		default:
			return
		}
	}
}

// writeStdin is the only writer of the program's stdin.
func (d *Daemon) writeStdin(ctx context.Context, w io.Writer, queue <-chan line) {
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-queue:
			if l.ctx != nil && l.ctx.Err() != nil {
				l.done <- l.ctx.Err() // the command gave up waiting
				continue
			}
			_, err := w.Write(l.data)
			if l.done != nil {
				l.done <- err
			} else if err != nil {
				d.dropped.Add(1)
				d.warn("routed frame not written to stdin", "err", err)
			}
		}
	}
}

// readStdout publishes the program's stdout lines until EOF.
func (d *Daemon) readStdout(r io.Reader, out devices.Outlet) {
	d.readLines(r, func(b []byte) {
		var payload []byte
		if d.cfg.Encoding == EncodingJSON {
			v := bytes.TrimSpace(b)
			if !json.Valid(v) {
				d.invalid.Add(1)
				d.warn("stdout line is not JSON; skipped", "line", devices.Clip(b, 64))
				return
			}
			payload = bytes.Clone(v)
		} else {
			payload = devices.TextPayload(string(b))
		}
		if err := out.Publish(protocols.Frame{Channel: d.cfg.Channel, Payload: payload, QoS: byte(d.cfg.QoS)}); err != nil {
			d.dropped.Add(1)
			d.warn("frame not published", "err", err)
			return
		}
		d.frames.Add(1)
	}, &d.oversize)
}

// readStderr logs the program's stderr lines until EOF.
func (d *Daemon) readStderr(r io.Reader) {
	var skipped atomic.Uint64
	d.readLines(r, func(b []byte) { d.log.Warn("program stderr", "line", string(b)) }, &skipped)
}

// readLines calls fn for each non-empty line of r without its "\n" or
// "\r\n", until r fails; lines over max_line are counted in oversize.
func (d *Daemon) readLines(r io.Reader, fn func([]byte), oversize *atomic.Uint64) {
	br := bufio.NewReaderSize(r, 4096)
	var buf []byte
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			buf = append(buf, chunk...)
			if len(buf) > d.cfg.MaxLine+2 {
				long, buf = true, buf[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		complete := err == nil
		body := bytes.TrimSuffix(bytes.TrimSuffix(buf, []byte("\n")), []byte("\r"))
		switch {
		case long || len(body) > d.cfg.MaxLine:
			if complete || long {
				oversize.Add(1)
				d.warn("output line longer than max_line skipped", "max_line", d.cfg.MaxLine)
			}
			long = false
		case len(body) > 0 && (complete || errors.Is(err, io.EOF)):
			fn(body) // a last line without "\n" counts too
		}
		buf = buf[:0]
		if err != nil {
			return
		}
	}
}

// Command writes the command to the program's stdin as one JSON line,
// {"id":..,"name":..,"args":..}; the result is ok once it is written.
// What the program makes of it, it may publish on stdout.
func (d *Daemon) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	fail := func(format string, args ...any) protocols.Result {
		return protocols.Result{ID: cmd.ID, Error: fmt.Sprintf(format, args...)}
	}
	args := bytes.TrimSpace(cmd.Args)
	if len(args) > 0 && !json.Valid(args) {
		return fail("args are not JSON")
	}
	data, err := json.Marshal(struct {
		ID   string          `json:"id"`
		Name string          `json:"name"`
		Args json.RawMessage `json:"args,omitempty"`
	}{cmd.ID, cmd.Name, args})
	if err != nil {
		return fail("encode: %v", err)
	}
	l := line{data: append(data, '\n'), ctx: ctx, done: make(chan error, 1)}
	if err := d.enqueue(l); err != nil {
		return fail("%v", err)
	}
	select {
	case err := <-l.done:
		if err != nil {
			return fail("write to stdin: %v", err)
		}
		return protocols.Result{ID: cmd.ID, OK: true}
	case <-ctx.Done():
		return fail("not written: %v", ctx.Err())
	}
}

// Accept queues a routed frame's payload for the program's stdin, as one
// line: JSON compacted, other payloads as they are. It fails with
// protocols.ErrBusy when the queue is full, protocols.ErrDeviceOffline
// while the program is not running, and protocols.ErrInvalidFrame for a
// payload that is not JSON and holds a newline.
func (d *Daemon) Accept(f protocols.Frame) error {
	var data []byte
	v := bytes.TrimSpace(f.Payload)
	if json.Valid(v) {
		var buf bytes.Buffer
		_ = json.Compact(&buf, v)
		data = buf.Bytes()
	} else {
		if bytes.IndexByte(f.Payload, '\n') >= 0 {
			return fmt.Errorf("%w: a payload that is not JSON holds a newline", protocols.ErrInvalidFrame)
		}
		data = bytes.Clone(f.Payload)
	}
	return d.enqueue(line{data: append(data, '\n')})
}

// warn logs a repeated condition at most once per warnEvery.
func (d *Daemon) warn(msg string, args ...any) { d.warner.Warn(msg, args...) }

var (
	_ devices.Device   = (*Daemon)(nil)
	_ devices.Receiver = (*Daemon)(nil)
)
