package gpio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// errNotRunning: a command or frame reached a device whose line is not
// requested (Run has not started or has returned).
var errNotRunning = errors.New("line not requested: the device is not running")

// base is what inputs and outputs share.
type base struct {
	cfg    Config
	log    *slog.Logger
	path   string // of the chip
	open   func(path string) (chip, error)
	offset int
	opts   lineOptions
}

// state is the payload of a published value.
type state struct {
	Value int    `json:"value"`
	Edge  string `json:"edge,omitempty"`
	Time  string `json:"time"`
}

func (b *base) publish(out devices.Outlet, value bool, edgeName string, at time.Time) {
	if out == nil {
		return
	}
	payload, _ := json.Marshal(state{Value: int(b2u(value)), Edge: edgeName, Time: at.UTC().Format(time.RFC3339Nano)})
	if err := out.Publish(protocols.Frame{Channel: b.cfg.Channel, Payload: payload, QoS: byte(b.cfg.QoS)}); err != nil {
		b.log.Warn("gpio: value not published", "value", b2u(value), "err", err)
	}
}

// requestChip opens the chip for Run.
func (b *base) requestChip() (chip, error) {
	ch, err := b.open(b.path)
	if err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	return ch, nil
}

// valueData is the data of a get or set result.
func valueData(v bool) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"value":%d}`, b2u(v)))
}

func failed(cmd protocols.Command, format string, args ...any) protocols.Result {
	return protocols.Result{ID: cmd.ID, Error: fmt.Sprintf(format, args...)}
}

// Input is a running input line.
type Input struct {
	*base
	mu   sync.Mutex
	line inputLine // while Run runs
}

// Run requests the line, publishes its value and then each debounced
// change until ctx ends (it returns nil then). A line that cannot be
// requested, or whose edges cannot be read, is an error: the device
// manager runs the device again after a delay.
func (d *Input) Run(ctx context.Context, out devices.Outlet) error {
	ch, err := d.requestChip()
	if err != nil {
		return err
	}
	defer ch.Close()
	line, err := ch.RequestInput(d.offset, d.opts)
	if err != nil {
		return fmt.Errorf("gpio: %w", err)
	}
	stable, err := line.Value()
	if err != nil {
		line.Close()
		return fmt.Errorf("gpio: %w", err)
	}
	d.mu.Lock()
	d.line = line
	d.mu.Unlock()
	d.publish(out, stable, "", time.Now())

	// The reader hands the kernel's edges over in batches; closing the
	// line ends it.
	batches := make(chan []edge)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]edge, 16)
		for {
			n, err := line.ReadEdges(buf)
			if err != nil {
				readErr <- err
				return
			}
			if n == 0 {
				continue
			}
			select {
			case batches <- append([]edge(nil), buf[:n]...):
			case <-stop:
				return
			}
		}
	})
	defer func() {
		d.mu.Lock()
		d.line = nil
		d.mu.Unlock()
		close(stop)
		line.Close()
		wg.Wait()
	}()

	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	var (
		settle  <-chan time.Time // the quiet timer's channel while a change is pending
		first   time.Time        // the first edge of the pending change
		pending bool
		last    bool // the level the last edge left
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return fmt.Errorf("gpio: reading edges of line %d: %w", d.offset, err)
		case b := <-batches:
			if !pending {
				first, pending = b[0].Time, true
			}
			last = b[len(b)-1].Rising
			if d.cfg.Debounce > 0 {
				quiet.Reset(d.cfg.Debounce)
				settle = quiet.C
				continue
			}
		case <-settle:
		}
		// The line has been quiet for the debounce period: its level now
		// is the new state.
		settle, pending = nil, false
		v, err := line.Value()
		if err != nil {
			d.log.Warn("gpio: cannot read the line after an edge; trusting the edge", "err", err)
			v = last
		}
		if v == stable {
			continue // a bounce that ended where it began
		}
		stable = v
		name := EdgeFalling
		if v {
			name = EdgeRising
		}
		if d.cfg.Edge == EdgeBoth || d.cfg.Edge == name {
			d.publish(out, v, name, first)
		}
	}
}

// get answers the "get" command with the line's logical level.
func get(cmd protocols.Command, line interface{ Value() (bool, error) }) protocols.Result {
	v, err := line.Value()
	if err != nil {
		return failed(cmd, "%v", err)
	}
	return protocols.Result{ID: cmd.ID, OK: true, Data: valueData(v)}
}

// Command runs "get"; "set" and "pulse" need an output.
func (d *Input) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	switch cmd.Name {
	case "get":
		d.mu.Lock()
		line := d.line
		d.mu.Unlock()
		if line == nil {
			return failed(cmd, "%v", errNotRunning)
		}
		return get(cmd, line)
	case "set", "pulse":
		return failed(cmd, "%q needs direction = %q; this line is an input", cmd.Name, DirectionOutput)
	}
	return failed(cmd, "unknown command")
}

// Output is a running output line.
type Output struct {
	*base
	mu       sync.Mutex
	line     outputLine     // while Run runs
	out      devices.Outlet // while Run runs
	value    bool           // the level driven
	gen      uint64         // counts changes: a pulse ends only if none came after it
	pulseEnd chan struct{}  // while a pulse is under way; closed to end it early
}

// Run requests the line driving the initial value, publishes it, and
// holds the line until ctx ends (it returns nil then). A pulse under way
// then ends at once: the line is released inactive.
func (d *Output) Run(ctx context.Context, out devices.Outlet) error {
	ch, err := d.requestChip()
	if err != nil {
		return err
	}
	defer ch.Close()
	initial := d.cfg.Initial == 1
	line, err := ch.RequestOutput(d.offset, d.opts, initial)
	if err != nil {
		return fmt.Errorf("gpio: %w", err)
	}
	d.mu.Lock()
	d.line, d.out, d.value, d.pulseEnd = line, out, initial, nil
	d.gen++
	d.mu.Unlock()
	d.publish(out, initial, "", time.Now())

	<-ctx.Done()

	d.mu.Lock()
	if d.pulseEnd != nil {
		if err := line.SetValue(false); err != nil {
			d.log.Warn("gpio: cannot end the pulse under way", "err", err)
		} else {
			d.value = false
		}
		d.endPulse()
	}
	d.line, d.out = nil, nil
	d.gen++
	d.mu.Unlock()
	line.Close()
	return nil
}

// set drives v; it ends a pulse under way.
func (d *Output) set(v bool) error {
	d.mu.Lock()
	changed, err := d.setLocked(v)
	gen, out := d.gen, d.out
	d.mu.Unlock()
	if changed {
		d.publishChange(out, v, gen)
	}
	return err
}

// setLocked drives v and reports whether the value changed.
func (d *Output) setLocked(v bool) (bool, error) {
	if d.line == nil {
		return false, errNotRunning
	}
	if err := d.line.SetValue(v); err != nil {
		return false, err
	}
	changed := d.value != v
	d.value = v
	d.endPulse()
	d.gen++
	return changed, nil
}

// endPulse wakes a pulse under way: a later change has ended it.
func (d *Output) endPulse() {
	if d.pulseEnd != nil {
		close(d.pulseEnd)
		d.pulseEnd = nil
	}
}

// publishChange publishes the value change number gen unless a later one
// came first. It runs without d.mu: the router may hand a frame to Accept
// from within Publish.
func (d *Output) publishChange(out devices.Outlet, v bool, gen uint64) {
	d.mu.Lock()
	stale := d.gen != gen
	d.mu.Unlock()
	if !stale {
		d.publish(out, v, "", time.Now())
	}
}

// Accept sets the line from a routed frame's payload: 0, 1, true, false,
// "on" or "off", as JSON or bare text, or an object {"value": ...}.
func (d *Output) Accept(f protocols.Frame) error {
	v, err := parseValue(f.Payload)
	if err != nil {
		return fmt.Errorf("%w: %v", protocols.ErrInvalidFrame, err)
	}
	return d.set(v)
}

// Command runs "get", "set" and "pulse".
func (d *Output) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	switch cmd.Name {
	case "get":
		d.mu.Lock()
		line := d.line
		d.mu.Unlock()
		if line == nil {
			return failed(cmd, "%v", errNotRunning)
		}
		return get(cmd, line)
	case "set":
		if len(cmd.Args) == 0 {
			return failed(cmd, `args: want {"value":0|1}`)
		}
		v, err := parseValue(cmd.Args)
		if err != nil {
			return failed(cmd, "args: %v", err)
		}
		if err := d.set(v); err != nil {
			return failed(cmd, "%v", err)
		}
		return protocols.Result{ID: cmd.ID, OK: true, Data: valueData(v)}
	case "pulse":
		return d.pulse(ctx, cmd)
	}
	return failed(cmd, "unknown command")
}

// pulse makes the line active for args.ms, then inactive. A set or
// Accept during the pulse ends it (the later value stays); so does the
// command's context, which sets the line inactive at once.
func (d *Output) pulse(ctx context.Context, cmd protocols.Command) protocols.Result {
	var args struct {
		MS *int64 `json:"ms"`
	}
	dec := json.NewDecoder(strings.NewReader(string(cmd.Args)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&args); err != nil || args.MS == nil {
		return failed(cmd, `args: want {"ms":N}, N from 1 to %d`, d.cfg.MaxPulse.Milliseconds())
	}
	ms := *args.MS
	if ms < 1 || ms > d.cfg.MaxPulse.Milliseconds() {
		return failed(cmd, "args: ms %d is not from 1 to %d (max_pulse)", ms, d.cfg.MaxPulse.Milliseconds())
	}
	length := time.Duration(ms) * time.Millisecond
	if end, ok := ctx.Deadline(); ok && time.Until(end) < length {
		return failed(cmd, "a pulse of %s would outlast the command timeout", length)
	}

	d.mu.Lock()
	changed, err := d.setLocked(true)
	if err != nil {
		d.mu.Unlock()
		return failed(cmd, "%v", err)
	}
	ended := make(chan struct{})
	d.pulseEnd = ended
	gen, out := d.gen, d.out
	d.mu.Unlock()
	if changed {
		d.publishChange(out, true, gen)
	}

	timer := time.NewTimer(length)
	defer timer.Stop()
	var cut error
	select {
	case <-timer.C:
	case <-ended:
	case <-ctx.Done():
		cut = ctx.Err()
	}

	d.mu.Lock()
	if d.gen != gen { // set, Accept, another pulse or the end of Run came first
		v := d.value
		d.mu.Unlock()
		if cut != nil {
			return failed(cmd, "pulse cut short: %v", cut)
		}
		return protocols.Result{ID: cmd.ID, OK: true, Data: json.RawMessage(fmt.Sprintf(`{"value":%d,"ms":%d}`, b2u(v), ms))}
	}
	changed, err = d.setLocked(false)
	gen, out = d.gen, d.out
	d.mu.Unlock()
	if err != nil {
		return failed(cmd, "pulse: cannot set the line inactive: %v", err)
	}
	if changed {
		d.publishChange(out, false, gen)
	}
	if cut != nil {
		return failed(cmd, "pulse cut short, line set inactive: %v", cut)
	}
	return protocols.Result{ID: cmd.ID, OK: true, Data: json.RawMessage(fmt.Sprintf(`{"value":0,"ms":%d}`, ms))}
}

var (
	_ devices.Device   = (*Input)(nil)
	_ devices.Device   = (*Output)(nil)
	_ devices.Receiver = (*Output)(nil)
)
