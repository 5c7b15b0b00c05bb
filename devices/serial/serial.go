// Package serial is the "serial" local driver: a device on a serial port (a
// USB adapter, the Pi's UART) that sends frames as lines or length-prefixed
// records and takes commands and routed frames written back to the port.
//
// Run opens the port and reopens it with backoff when it fails or
// disappears (a USB adapter unplugged), until its context ends. Reading
// and writing each happen on one goroutine per open port: Command and
// Accept only queue what the writer writes.
//
// The package depends on the devices contract and go.bug.st/serial only.
package serial

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bugst "go.bug.st/serial"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// queueSize bounds the writes (commands and routed frames) waiting for the
// port; more fail with protocols.ErrBusy.
const queueSize = 64

// warnEvery limits how often one kind of repeated warning is logged.
const warnEvery = 10 * time.Second

// Device is a serial device. Its methods are safe for concurrent use.
type Device struct {
	cfg  Config
	mode *bugst.Mode
	log  *slog.Logger

	mu    sync.Mutex
	queue chan write // of the open port; nil while it is not open

	// writeGrace bounds the wait for a blocked write when the port
	// closes; stuck counts the goroutines left waiting for one.
	writeGrace time.Duration
	stuck      sync.WaitGroup

	frames, invalid, oversize, dropped, written, opens atomic.Uint64
	warner                                             devices.Warner
}

// write is one queued write: the bytes with their framing.
type write struct {
	data []byte
	ctx  context.Context // the command's; nil for routed frames
	done chan error      // buffered; nil for routed frames
}

// Stats counts what a device did since Open.
type Stats struct {
	Frames   uint64 // published
	Invalid  uint64 // skipped: not JSON with encoding "json"
	Oversize uint64 // skipped: longer than max_line
	Dropped  uint64 // not published (router busy), or routed frames not written (port lost)
	Written  uint64 // commands and routed frames written to the port
	Opens    uint64 // times the port was opened
}

func newDevice(cfg Config, log *slog.Logger) *Device {
	log = log.With("port", cfg.Port)
	return &Device{
		cfg:        cfg,
		mode:       cfg.mode(),
		log:        log,
		writeGrace: 5 * time.Second,
		warner:     devices.Warner{Log: log, Every: warnEvery},
	}
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	return Stats{
		Frames: d.frames.Load(), Invalid: d.invalid.Load(), Oversize: d.oversize.Load(),
		Dropped: d.dropped.Load(), Written: d.written.Load(), Opens: d.opens.Load(),
	}
}

// ReportsOnline implements devices.OnlineReporter: the device is online
// while its port is open.
func (d *Device) ReportsOnline() bool { return true }

// Run opens the port and publishes its frames until ctx ends; a port that
// cannot be opened, fails or disappears is reopened after a delay that
// grows from reopen_min to reopen_max. It returns nil when ctx ends.
func (d *Device) Run(ctx context.Context, out devices.Outlet) error {
	delay := d.cfg.ReopenMin
	failing := false
	for {
		port, err := bugst.Open(d.cfg.Port, d.mode)
		if err == nil {
			d.opens.Add(1)
			d.log.Info("serial port open", "baud", d.cfg.Baud)
			failing = false
			started := time.Now()
			out.SetOnline(true)
			err = d.serve(ctx, port, out)
			if ctx.Err() != nil {
				return nil
			}
			out.SetOnline(false)
			if time.Since(started) >= d.cfg.ReopenMax {
				delay = d.cfg.ReopenMin // it worked for a while: start over
			}
			d.log.Warn("serial port lost; reopening", "err", err, "in", delay)
		} else if !failing {
			d.log.Warn("serial port cannot be opened; retrying", "err", err, "in", delay)
			failing = true
		} else {
			d.log.Debug("serial port still cannot be opened", "err", err, "in", delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, d.cfg.ReopenMax)
	}
}

// serve reads and writes an open port until ctx ends or either direction
// fails, then closes the port and returns the failure.
func (d *Device) serve(ctx context.Context, port bugst.Port, out devices.Outlet) error {
	queue := make(chan write, queueSize)
	wctx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	d.setQueue(queue)
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	go func() { readErr <- d.readLoop(port, out) }()
	go func() { writeErr <- d.writeLoop(wctx, port, queue) }()

	var err error
	reading, writing := true, true
	select {
	case <-ctx.Done():
	case err = <-readErr:
		reading = false
	case err = <-writeErr:
		writing = false
	}
	d.setQueue(nil) // nothing more is queued
	stopWriter()
	closePort := func() {
		// Only once the writer is done with the handle: Close also ends
		// a Read in progress.
		if cerr := port.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if reading {
			<-readErr // a "port closed" error, caused by Close
		}
		d.drain(queue)
	}
	if writing {
		t := time.NewTimer(d.writeGrace)
		defer t.Stop()
		select {
		case werr := <-writeErr:
			if err == nil {
				err = werr
			}
		case <-t.C:
			// A write blocks while the device takes no data (a USB
			// device that stopped reading, a pty nobody reads). Closing
			// the port would not end it, and its handle must not be
			// closed under it: leave both to a goroutine of their own.
			d.log.Error("a write to the serial port is blocked: the device takes no data; the port is closed once the write ends")
			d.stuck.Add(1)
			go func() {
				defer d.stuck.Done()
				<-writeErr
				closePort()
			}()
			return errors.New("write blocked")
		}
	}
	closePort()
	return err
}

// setQueue makes queue the one enqueue uses; nil while the port is not
// open.
func (d *Device) setQueue(queue chan write) {
	d.mu.Lock()
	d.queue = queue
	d.mu.Unlock()
}

// enqueue queues a write for the writer of the open port.
func (d *Device) enqueue(w write) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.queue == nil {
		return fmt.Errorf("%w: serial port %s is not open", protocols.ErrDeviceOffline, d.cfg.Port)
	}
	select {
	case d.queue <- w:
		return nil
	default:
		return fmt.Errorf("%w: %d writes already wait for serial port %s", protocols.ErrBusy, cap(d.queue), d.cfg.Port)
	}
}

// drain fails the writes left when the port closed: they were meant for a
// port that is gone, and a device plugged in later should not get them.
func (d *Device) drain(queue chan write) {
	for {
		select {
		case w := <-queue:
			if w.done != nil {
				w.done <- errors.New("serial port closed before the write")
			} else {
				d.dropped.Add(1)
			}
		default:
			return
		}
	}
}

// writeLoop is the only writer of the port.
func (d *Device) writeLoop(ctx context.Context, port io.Writer, queue <-chan write) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-queue:
			if w.ctx != nil && w.ctx.Err() != nil {
				w.done <- w.ctx.Err() // the command gave up waiting
				continue
			}
			err := writeAll(port, w.data)
			if w.done != nil {
				w.done <- err
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			d.written.Add(1)
		}
	}
}

func writeAll(w io.Writer, p []byte) error {
	for len(p) > 0 {
		n, err := w.Write(p)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p = p[n:]
	}
	return nil
}

// readLoop publishes the frames of the port until reading fails.
func (d *Device) readLoop(port io.Reader, out devices.Outlet) error {
	r := bufio.NewReaderSize(port, 4096)
	if d.cfg.Framing == FramingLength {
		return d.readLengthPrefixed(r, out)
	}
	return d.readLines(r, out)
}

func (d *Device) readLines(r *bufio.Reader, out devices.Outlet) error {
	var line []byte
	long := false // the current line is over max_line: skip to its end
	for {
		chunk, err := r.ReadSlice('\n')
		if !long {
			line = append(line, chunk...)
			// max_line plus "\r\n".
			if len(line) > d.cfg.MaxLine+2 {
				long, line = true, line[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		body := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		line = line[:0]
		switch {
		case long || len(body) > d.cfg.MaxLine:
			long = false
			d.oversize.Add(1)
			d.warn("line longer than max_line skipped", "max_line", d.cfg.MaxLine)
		case len(body) == 0:
			// Blank lines carry nothing.
		default:
			d.publish(out, body)
		}
	}
}

func (d *Device) readLengthPrefixed(r *bufio.Reader, out devices.Outlet) error {
	var head [2]byte
	buf := make([]byte, d.cfg.MaxLine)
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		n := int(binary.BigEndian.Uint16(head[:]))
		if n > d.cfg.MaxLine {
			d.oversize.Add(1)
			d.warn("frame longer than max_line skipped", "length", n, "max_line", d.cfg.MaxLine)
			if _, err := r.Discard(n); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			continue
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n > 0 { // an empty frame is a keep-alive
			d.publish(out, buf[:n])
		}
	}
}

// publish encodes one frame read from the port and hands it to the router.
func (d *Device) publish(out devices.Outlet, raw []byte) {
	var payload []byte
	switch d.cfg.Encoding {
	case EncodingJSON:
		v := bytes.TrimSpace(raw)
		if !json.Valid(v) {
			d.invalid.Add(1)
			d.warn("frame is not JSON; skipped", "frame", devices.Clip(raw, 64))
			return
		}
		payload = bytes.Clone(v)
	case EncodingHex:
		payload = devices.TextPayload(hex.EncodeToString(raw))
	default:
		payload = devices.TextPayload(string(raw))
	}
	err := out.Publish(protocols.Frame{Channel: d.cfg.Channel, Payload: payload, QoS: byte(d.cfg.QoS)})
	if err != nil {
		d.dropped.Add(1)
		d.warn("frame not published", "err", err)
		return
	}
	d.frames.Add(1)
}

// Command writes the command's args to the port, encoded like the frames
// the port sends and followed by the framing. The result is ok once the
// bytes are written.
func (d *Device) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	fail := func(format string, args ...any) protocols.Result {
		return protocols.Result{ID: cmd.ID, Error: fmt.Sprintf(format, args...)}
	}
	if len(bytes.TrimSpace(cmd.Args)) == 0 {
		return fail("no args: nothing to write")
	}
	data, err := d.encodeOut(cmd.Args)
	if err != nil {
		return fail("args: %v", err)
	}
	w := write{data: data, ctx: ctx, done: make(chan error, 1)}
	if err := d.enqueue(w); err != nil {
		return fail("%v", err)
	}
	select {
	case err := <-w.done:
		if err != nil {
			return fail("write: %v", err)
		}
		return protocols.Result{ID: cmd.ID, OK: true}
	case <-ctx.Done():
		return fail("not written: %v", ctx.Err())
	}
}

// Accept queues a routed frame's payload for the port, encoded like a
// command's args. It fails with protocols.ErrBusy when the queue is full,
// protocols.ErrDeviceOffline while the port is not open, and
// protocols.ErrInvalidFrame for a payload the encoding or framing cannot
// carry.
func (d *Device) Accept(f protocols.Frame) error {
	data, err := d.encodeOut(f.Payload)
	if err != nil {
		return fmt.Errorf("%w: %v", protocols.ErrInvalidFrame, err)
	}
	return d.enqueue(write{data: data})
}

// encodeOut turns a JSON value (command args, a routed payload) into the
// bytes for the port, framing included:
//   - text: a JSON string is written as its text, other JSON as compact
//     JSON text, and a payload that is not JSON as it is;
//   - json: the JSON value, compacted onto one line;
//   - hex: a JSON string of hex digits, as the bytes it spells.
func (d *Device) encodeOut(payload []byte) ([]byte, error) {
	v := bytes.TrimSpace(payload)
	var body []byte
	switch d.cfg.Encoding {
	case EncodingHex:
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errors.New("encoding hex takes a JSON string of hex digits")
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not hex digits", devices.Clip([]byte(s), 64))
		}
		body = b
	case EncodingJSON:
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, errors.New("encoding json takes a JSON value")
		}
		body = buf.Bytes()
	default:
		switch {
		case !json.Valid(v):
			body = payload
		case v[0] == '"':
			var s string
			_ = json.Unmarshal(v, &s)
			body = []byte(s)
		default:
			var buf bytes.Buffer
			_ = json.Compact(&buf, v)
			body = buf.Bytes()
		}
	}
	if len(body) > d.cfg.MaxLine {
		return nil, fmt.Errorf("%d bytes are more than max_line (%d)", len(body), d.cfg.MaxLine)
	}
	if d.cfg.Framing == FramingLength {
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(body)), uint16(len(body)))
		return append(out, body...), nil
	}
	if bytes.IndexByte(body, '\n') >= 0 {
		return nil, errors.New("contains a newline, which framing lines cannot carry")
	}
	return append(bytes.Clone(body), '\n'), nil
}

// warn logs a repeated condition at most once per warnEvery.
func (d *Device) warn(msg string, args ...any) { d.warner.Warn(msg, args...) }

var (
	_ devices.Device   = (*Device)(nil)
	_ devices.Receiver = (*Device)(nil)
)
