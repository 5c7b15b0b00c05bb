// Package router connects endpoints that produce frames and accept commands
// (WebSocket device sessions, local drivers) with the sink that carries
// frames onward (the MQTT bridge) and the watchers that follow which devices
// are present.
//
// It knows nothing of WebSocket, MQTT or any protocol's wire format.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// Sink carries frames onward. Deliver waits at most a short, bounded time
// for room in its queue (backpressure on the caller), then returns an
// error wrapping protocols.ErrBusy.
type Sink interface {
	Deliver(protocols.Frame) error
}

// Endpoint is an attached device that accepts commands.
type Endpoint interface {
	// Command hands a downlink command to the device.
	Command(protocols.Command) error
	// Evict tells the endpoint that a newer session took over its device,
	// here or at another gateway; a connection closes with
	// protocols.CloseReplaced.
	Evict(reason string)
}

// Watcher follows device presence. Its methods are called in order for each
// device, under the router's lock: they must return quickly and must not
// call back into the router.
type Watcher interface {
	Attached(Device)
	Detached(Device)
}

// Metered is implemented by endpoints that count the messages they carry
// (WebSocket connections, local devices), for the status page. Traffic is
// called without the router's lock and must not block.
type Metered interface {
	Traffic() Traffic
}

// Traffic is what an endpoint has carried for its device.
type Traffic struct {
	Address string    // where the device connects from; "" for a local device
	In, Out uint64    // messages from and to the device
	Last    time.Time // the device's last message; zero before its first
}

// DeviceTraffic is an attached device with its endpoint's traffic, which
// is zero when the endpoint does not count it.
type DeviceTraffic struct {
	Device
	Traffic
}

// Device is the presence record of one attached device.
type Device struct {
	ID       string
	Protocol string    // e.g. "done", or "driver:serial" for local drivers
	Session  string    // the session or driver instance id
	Since    time.Time // when it attached
	// Description is what the device said about itself when it attached;
	// nil when it said nothing. Shared: never modified.
	Description *protocols.Description
}

// ErrInvalidDevice is returned for device ids that cannot be a topic level.
var ErrInvalidDevice = errors.New("invalid device id")

// Router is safe for concurrent use.
type Router struct {
	log      *slog.Logger
	sink     Sink
	watchers []Watcher
	routes   atomic.Pointer[[]compiledRoute] // replaced whole on reload

	mu sync.Mutex
	// devices holds pointers: an attachment inline would make every slot
	// of the map, empty ones included, 120 bytes.
	devices map[string]*attachment
}

type attachment struct {
	device   Device
	endpoint Endpoint
	missed   *missedTargets // of this session's frames; made by the first fan-out that needs it
}

// New returns a router that delivers every frame to sink.
func New(sink Sink, log *slog.Logger) *Router {
	return &Router{log: log, sink: sink, devices: make(map[string]*attachment)}
}

// Watch adds a presence watcher. Call it before the router is in use.
func (r *Router) Watch(w Watcher) { r.watchers = append(r.watchers, w) }

// Attach makes ep the endpoint of dev.ID. An endpoint already attached
// under that id is evicted: the newest session wins.
func (r *Router) Attach(dev Device, ep Endpoint) error {
	if !protocols.ValidDeviceID(dev.ID) {
		return fmt.Errorf("attach %q: %w", dev.ID, ErrInvalidDevice)
	}
	r.mu.Lock()
	old, replaced := r.devices[dev.ID]
	a := &attachment{device: dev, endpoint: ep}
	if replaced && old.endpoint == ep {
		a.missed = old.missed // seqs are per session
	}
	r.devices[dev.ID] = a
	for _, w := range r.watchers {
		w.Attached(dev)
	}
	r.mu.Unlock()
	if replaced && old.endpoint != ep {
		r.log.Info("device session replaced", "device", dev.ID, "old_session", old.device.Session, "session", dev.Session)
		old.endpoint.Evict("replaced by a newer session of the same device")
	}
	return nil
}

// Settler is implemented by watchers that publish presence on their own
// time (the MQTT bridge): Settle waits until what they publish reflects the
// device's latest attach or detach, or until ctx ends.
type Settler interface {
	Settle(ctx context.Context, device string)
}

// Settle waits for the watchers that are Settlers to catch up with the
// device (a session does this before its device may publish).
func (r *Router) Settle(ctx context.Context, device string) {
	r.mu.Lock()
	watchers := slices.Clone(r.watchers)
	r.mu.Unlock()
	for _, w := range watchers {
		if s, ok := w.(Settler); ok {
			s.Settle(ctx, device)
		}
	}
}

// Detach removes ep as the endpoint of id. It does nothing when another
// endpoint has taken the id over in the meantime, so a replaced session
// never marks its device offline.
func (r *Router) Detach(id string, ep Endpoint) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.devices[id]
	if !ok || a.endpoint != ep {
		return
	}
	delete(r.devices, id)
	for _, w := range r.watchers {
		w.Detached(a.device)
	}
}

// Publish delivers a frame from an attached device: by the first route
// that matches it, else to the sink. With routes, target failures are
// reported through the frame's Ack.
func (r *Router) Publish(f protocols.Frame) error {
	if routes := r.routes.Load(); routes != nil {
		if routed, err := r.route(*routes, f); routed {
			return err
		}
	}
	if err := r.sink.Deliver(f); err != nil {
		return fmt.Errorf("route frame from %s/%s: %w", f.Device, f.Channel, err)
	}
	return nil
}

// Command delivers cmd to the endpoint attached as cmd.Device.
//
// A session that ended or is closing as the command reaches it has been
// replaced, often by a newer session of the device here (it reconnected
// through this gateway): the newer one takes the command, or it would be
// lost between the two.
func (r *Router) Command(cmd protocols.Command) error {
	var tried Endpoint
	var err error
	for range maxCommandAttempts {
		r.mu.Lock()
		a, ok := r.devices[cmd.Device]
		r.mu.Unlock()
		switch {
		case !ok && tried == nil:
			return fmt.Errorf("command %q to %q: %w", cmd.Name, cmd.Device, protocols.ErrDeviceOffline)
		case !ok || a.endpoint == tried:
			return err // nobody newer: the session's own error
		}
		err = a.endpoint.Command(cmd)
		if !errors.Is(err, protocols.ErrClosed) && !errors.Is(err, protocols.ErrDeviceOffline) {
			return err
		}
		tried = a.endpoint
	}
	return err
}

// maxCommandAttempts bounds the sessions one command is offered to, should
// a device keep replacing its session faster than commands reach it.
const maxCommandAttempts = 3

// Attached returns the presence record of an attached device.
func (r *Router) Attached(id string) (Device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.devices[id]; ok {
		return a.device, true
	}
	return Device{}, false
}

// Evict closes the session of an attached device if it is still the
// session named (a newer one may have attached meanwhile): the device
// connected again through another gateway instance. It reports whether it
// closed one.
func (r *Router) Evict(id, session, reason string) bool {
	r.mu.Lock()
	a, ok := r.devices[id]
	r.mu.Unlock()
	if !ok || a.device.Session != session {
		return false
	}
	a.endpoint.Evict(reason)
	return true
}

// Devices lists the attached devices sorted by id.
func (r *Router) Devices() []Device {
	r.mu.Lock()
	list := make([]Device, 0, len(r.devices))
	for _, a := range r.devices {
		list = append(list, a.device)
	}
	r.mu.Unlock()
	slices.SortFunc(list, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// Traffic lists the attached devices sorted by id, each with what its
// endpoint has counted.
func (r *Router) Traffic() []DeviceTraffic {
	r.mu.Lock()
	list := make([]DeviceTraffic, 0, len(r.devices))
	endpoints := make([]Endpoint, 0, len(r.devices))
	for _, a := range r.devices {
		list = append(list, DeviceTraffic{Device: a.device})
		endpoints = append(endpoints, a.endpoint)
	}
	r.mu.Unlock()
	for i, ep := range endpoints {
		if m, ok := ep.(Metered); ok {
			list[i].Traffic = m.Traffic()
		}
	}
	slices.SortFunc(list, func(a, b DeviceTraffic) int { return strings.Compare(a.ID, b.ID) })
	return list
}
