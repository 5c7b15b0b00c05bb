package devices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// Spec is one configured local device.
type Spec struct {
	ID     string
	Driver string
	Config Config
}

// ManagerOptions configure the Manager.
type ManagerOptions struct {
	// CommandTimeout bounds one command.
	CommandTimeout time.Duration
	// MaxCommands bounds the commands running at once on one device; more
	// are refused with protocols.ErrBusy.
	MaxCommands int
	// RestartMin and RestartMax bound the delay before a device whose Run
	// failed runs again.
	RestartMin, RestartMax time.Duration
}

// Manager runs the local devices and attaches each to the router under its
// id, as if it were a WebSocket session.
type Manager struct {
	router *router.Router
	log    *slog.Logger
	opts   ManagerOptions

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	devices map[string]*local
	missing map[string]bool // devices that take frames but could not be opened
	order   []string        // ids in config order
}

// NewManager prepares a manager; Start opens and runs the devices.
func NewManager(rt *router.Router, log *slog.Logger, opts ManagerOptions) *Manager {
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = 30 * time.Second
	}
	if opts.MaxCommands <= 0 {
		opts.MaxCommands = 4
	}
	if opts.RestartMin <= 0 {
		opts.RestartMin = time.Second
	}
	if opts.RestartMax < opts.RestartMin {
		opts.RestartMax = max(opts.RestartMin, time.Minute)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{router: rt, log: log.With("component", "devices"), opts: opts, ctx: ctx, cancel: cancel,
		devices: map[string]*local{}, missing: map[string]bool{}}
}

// Open opens every device. A device that cannot be opened is reported and
// left out; the others are ready to Run. Routes to the devices can be set
// up between Open and Run.
func (m *Manager) Open(specs []Spec) error {
	var errs []error
	for _, s := range specs {
		log := m.log.With("device", s.ID, "driver", s.Driver)
		dev, err := s.Config.Open(s.ID, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("device %s (%s): %w", s.ID, s.Driver, err))
			if ft, ok := s.Config.(FrameTaker); ok && ft.AcceptsFrames() {
				m.missing[s.ID] = true
			}
			continue
		}
		m.devices[s.ID] = &local{m: m, id: s.ID, driver: s.Driver, dev: dev, log: log, slots: make(chan struct{}, m.opts.MaxCommands)}
		m.order = append(m.order, s.ID)
	}
	return errors.Join(errs...)
}

// Run attaches every opened device to the router and runs it until Close.
func (m *Manager) Run() error {
	var errs []error
	for _, id := range m.order {
		l := m.devices[id]
		if !l.reportsOnline() {
			if err := l.attach(); err != nil {
				errs = append(errs, fmt.Errorf("device %s: %w", id, err))
				continue
			}
		}
		m.wg.Add(1)
		go func() { defer m.wg.Done(); l.run(m.ctx) }()
	}
	return errors.Join(errs...)
}

// Receiver returns the device with that id when it accepts routed frames.
// A device that takes frames but could not be opened has a receiver that
// refuses them as offline: the routes to it stay, the rest runs.
func (m *Manager) Receiver(id string) (router.Receiver, bool) {
	if m.missing[id] {
		return offline(id), true
	}
	l, ok := m.devices[id]
	if !ok {
		return nil, false
	}
	r, ok := l.dev.(Receiver)
	if !ok {
		return nil, false
	}
	return meteredReceiver{l, r}, true
}

// meteredReceiver counts the frames a device accepts among the messages
// to it.
type meteredReceiver struct {
	l *local
	r Receiver
}

func (m meteredReceiver) Accept(f protocols.Frame) error {
	err := m.r.Accept(f)
	if err == nil {
		m.l.out.Add(1)
	}
	return err
}

// Close stops every device and waits for them, commands included.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
	for _, l := range m.devices {
		l.detach()
	}
}

// local is a running device: the router's Endpoint for it, and its Outlet.
type local struct {
	m      *Manager
	id     string
	driver string
	dev    Device
	log    *slog.Logger
	slots  chan struct{} // one per running command

	mu       sync.Mutex // serialises attach and detach
	attached bool

	// Counters for the status page (Traffic): frames the device published
	// (command results included, as a session's device sends them),
	// commands and routed frames it took, and when it last published
	// (Unix ns).
	in, out     atomic.Uint64
	lastMessage atomic.Int64
}

func (l *local) reportsOnline() bool {
	r, ok := l.dev.(OnlineReporter)
	return ok && r.ReportsOnline()
}

// attach makes the device present: its online status and command
// subscription reach the broker (within a bound) before it publishes.
func (l *local) attach() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attached {
		return nil
	}
	info := router.Device{ID: l.id, Protocol: ProtocolName(l.driver), Session: "local", Since: time.Now().UTC()}
	if err := l.m.router.Attach(info, l); err != nil {
		return err
	}
	l.attached = true
	ctx, cancel := context.WithTimeout(l.m.ctx, settleWait)
	l.m.router.Settle(ctx, l.id)
	cancel()
	return nil
}

func (l *local) detach() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attached {
		l.m.router.Detach(l.id, l)
		l.attached = false
	}
}

// settleWait bounds how long attaching waits for the device's status to be
// published, as for a WebSocket session.
const settleWait = 5 * time.Second

// SetOnline implements Outlet.
func (l *local) SetOnline(online bool) {
	if !l.reportsOnline() {
		return
	}
	if !online {
		l.detach()
		return
	}
	if err := l.attach(); err != nil {
		l.log.Error("device cannot be attached", "err", err)
	}
}

var (
	_ router.Endpoint = (*local)(nil)
	_ router.Metered  = (*local)(nil)
	_ Outlet          = (*local)(nil)
)

// run runs the device, again after a failure, until ctx ends.
func (l *local) run(ctx context.Context) {
	delay := l.m.opts.RestartMin
	for {
		started := time.Now()
		err := l.dev.Run(ctx, l)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > l.m.opts.RestartMax {
			delay = l.m.opts.RestartMin
		}
		l.log.Error("device stopped; running it again", "err", err, "in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		delay = min(delay*2, l.m.opts.RestartMax)
	}
}

// Publish implements Outlet.
func (l *local) Publish(f protocols.Frame) error {
	f.Device = l.id
	l.in.Add(1)
	l.lastMessage.Store(time.Now().UnixNano())
	return l.m.router.Publish(f)
}

// Traffic implements router.Metered.
func (l *local) Traffic() router.Traffic {
	t := router.Traffic{In: l.in.Load(), Out: l.out.Load()}
	if ns := l.lastMessage.Load(); ns != 0 {
		t.Last = time.Unix(0, ns)
	}
	return t
}

// Command implements router.Endpoint: the command runs on a goroutine of
// its own, bounded in number and time, and its result is published.
func (l *local) Command(cmd protocols.Command) error {
	select {
	case l.slots <- struct{}{}:
	default:
		return fmt.Errorf("%w: %d commands already running on %s", protocols.ErrBusy, cap(l.slots), l.id)
	}
	l.out.Add(1)
	l.m.wg.Add(1)
	go func() {
		defer l.m.wg.Done()
		ctx, cancel := context.WithTimeout(l.m.ctx, l.m.opts.CommandTimeout)
		defer cancel()
		result := l.dev.Command(ctx, cmd)
		// The slot is free before the result is out: whoever reads the
		// result may send the next command at once.
		<-l.slots
		result.ID = cmd.ID
		f, err := protocols.ResultFrame(cmd.Name, result)
		if err == nil {
			err = l.Publish(f)
		}
		if err != nil {
			l.log.Warn("command result not published", "command", cmd.Name, "err", err)
		}
	}()
	return nil
}

// Evict implements router.Endpoint. A local device keeps running; while a
// WebSocket session holds its id, commands go to that session.
func (l *local) Evict(reason string) {
	l.log.Warn("a session took over this local device's id; fix the duplicate id", "reason", reason)
}

// offline is the receiver of a device that could not be opened.
type offline string

func (o offline) Accept(protocols.Frame) error {
	return fmt.Errorf("local device %s: %w", string(o), protocols.ErrDeviceOffline)
}
