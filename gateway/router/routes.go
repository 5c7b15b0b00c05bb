package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/wsgate/wsgate/protocols"
)

// Receiver accepts frames routed to a local device. Accept must not block.
type Receiver interface {
	Accept(protocols.Frame) error
}

// Route sends matching frames to targets other than (or besides) MQTT.
// The first route that matches a frame decides where it goes; a frame no
// route matches goes to MQTT.
type Route struct {
	// Devices are path.Match patterns on the device id ("kitchen-*");
	// empty matches every device.
	Devices []string
	// Channels are MQTT-style filters on the channel ("sensors/+", "#");
	// empty matches every channel.
	Channels []string
	// To lists the targets: "mqtt", or "device:<id>" for a local device.
	// Empty means MQTT.
	To []string
	// Pick replaces a JSON payload by one of its fields ("t", "reading.t").
	Pick string
	// Channel replaces the frame's channel on delivery.
	Channel string
}

// TargetMQTT is the route target of the MQTT bridge.
const TargetMQTT = "mqtt"

// DeviceTarget is the route target of a local device.
func DeviceTarget(id string) string { return "device:" + id }

type target struct {
	mqtt     bool
	receiver Receiver
	name     string
}

type compiledRoute struct {
	Route
	targets []target
}

// SetRoutes installs routes, replacing the previous ones at once (it may be
// called while frames flow, on reload); receivers finds the local devices
// that device targets name.
func (r *Router) SetRoutes(routes []Route, receivers func(id string) (Receiver, bool)) error {
	var compiled []compiledRoute
	for i, rt := range routes {
		c := compiledRoute{Route: rt}
		to := rt.To
		if len(to) == 0 {
			to = []string{TargetMQTT}
		}
		for _, name := range to {
			if name == TargetMQTT {
				c.targets = append(c.targets, target{mqtt: true, name: name})
				continue
			}
			id, ok := strings.CutPrefix(name, "device:")
			if !ok {
				return fmt.Errorf("route %d: target %q is neither mqtt nor device:<id>", i, name)
			}
			recv, ok := receivers(id)
			if !ok {
				return fmt.Errorf("route %d: local device %q does not exist or does not accept frames", i, id)
			}
			c.targets = append(c.targets, target{receiver: recv, name: name})
		}
		for _, p := range rt.Devices {
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("route %d: device pattern %q: %w", i, p, err)
			}
		}
		compiled = append(compiled, c)
	}
	if len(compiled) == 0 {
		r.routes.Store(nil)
	} else {
		r.routes.Store(&compiled)
	}
	return nil
}

func (c *compiledRoute) matches(f protocols.Frame) bool {
	return matchAny(c.Devices, func(p string) bool { ok, _ := path.Match(p, f.Device); return ok }) &&
		matchAny(c.Channels, func(filter string) bool { return MatchFilter(filter, f.Channel) })
}

func matchAny(patterns []string, match func(string) bool) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if match(p) {
			return true
		}
	}
	return false
}

// MatchFilter reports whether a "/"-separated channel matches an MQTT-style
// filter: "+" matches one level, a final "#" any number of levels
// (including none, as in MQTT: "a/#" matches "a").
func MatchFilter(filter, channel string) bool {
	fl := strings.Split(filter, "/")
	cl := strings.Split(channel, "/")
	for i, f := range fl {
		if f == "#" {
			return i == len(fl)-1
		}
		if i >= len(cl) || (f != "+" && f != cl[i]) {
			return false
		}
	}
	return len(fl) == len(cl)
}

// route delivers a frame by the first matching route. ok is false when no
// route matches. A QoS 1 frame that some targets took and others refused
// is remembered by its Seq, so that the device's retry goes only to the
// others: MQTT gets a frame once whatever its local targets did.
func (r *Router) route(routes []compiledRoute, f protocols.Frame) (ok bool, err error) {
	if strings.HasPrefix(f.Channel, "cmd/") {
		return false, nil // command results always go to MQTT
	}
	var rt *compiledRoute
	for i := range routes {
		if routes[i].matches(f) {
			rt = &routes[i]
			break
		}
	}
	if rt == nil {
		return false, nil
	}
	if rt.Pick != "" {
		picked, err := pick(f.Payload, rt.Pick)
		if err != nil {
			return true, fmt.Errorf("%w: route pick %q: %v", protocols.ErrInvalidFrame, rt.Pick, err)
		}
		f.Payload = picked
	}
	if rt.Channel != "" {
		f.Channel = rt.Channel
	}
	targets := rt.targets
	var missed *missedTargets
	retry := false
	if len(targets) > 1 && f.HasSeq && f.Ack != nil {
		r.mu.Lock()
		if a, ok := r.devices[f.Device]; ok {
			if a.missed == nil {
				a.missed = newMissedTargets()
			}
			missed = a.missed
		}
		r.mu.Unlock()
		var left []string
		if left, retry = missed.take(f.Seq); retry {
			targets = slices.DeleteFunc(slices.Clone(targets), func(t target) bool { return !slices.Contains(left, t.name) })
		}
	}
	if len(targets) == 0 { // the routes changed since: nothing is left to do
		if f.Ack != nil {
			f.Ack(nil)
		}
		return true, nil
	}
	ack := newFanout(f, targets, missed, retry)
	for i, t := range targets {
		g := f
		g.Ack = func(err error) { ack.done(i, err) }
		var err error
		if t.mqtt {
			err = r.sink.Deliver(g)
		} else {
			g.Ack = nil
			err = t.receiver.Accept(g)
			if err == nil {
				ack.done(i, nil)
			}
		}
		if err != nil {
			r.log.Debug("routed frame not delivered", "device", f.Device, "channel", f.Channel, "target", t.name, "err", err)
			ack.done(i, err)
		}
	}
	return true, nil
}

// fanout calls the frame's ack once, when every target has settled, with
// the first error. When some targets took the frame and others did not, it
// first records the others in missed.
type fanout struct {
	mu        sync.Mutex
	remaining int
	err       error
	failed    []string // names of the targets that refused
	targets   []target
	seq       uint64
	missed    *missedTargets // nil: nothing to remember
	retry     bool           // the route's other targets took the frame before
	ack       func(error)
}

func newFanout(f protocols.Frame, targets []target, missed *missedTargets, retry bool) *fanout {
	return &fanout{remaining: len(targets), targets: targets, seq: f.Seq, missed: missed, retry: retry, ack: f.Ack}
}

func (f *fanout) done(i int, err error) {
	f.mu.Lock()
	if err != nil {
		if f.err == nil {
			f.err = fmt.Errorf("%s: %w", f.targets[i].name, err)
		}
		f.failed = append(f.failed, f.targets[i].name)
	}
	f.remaining--
	last := f.remaining == 0
	f.mu.Unlock()
	if !last || f.ack == nil {
		return
	}
	err = f.err
	if err != nil && (f.retry || len(f.failed) < len(f.targets)) && f.missed != nil {
		f.missed.put(f.seq, f.failed)
		err = fmt.Errorf("%w (the other targets have the frame: a retry goes to %s only)", err, strings.Join(f.failed, ", "))
	}
	f.ack(err)
}

// missedTargets remembers, for the frames of one device session that some
// route targets refused, which ones: at most maxMissed frames, the oldest
// forgotten first (a retry of a forgotten one goes to every target again).
type missedTargets struct {
	mu    sync.Mutex
	bySeq map[uint64][]string
	order []uint64
}

const maxMissed = 256

func newMissedTargets() *missedTargets { return &missedTargets{bySeq: map[uint64][]string{}} }

func (m *missedTargets) put(seq uint64, names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.bySeq[seq]; !ok {
		if len(m.order) == maxMissed {
			delete(m.bySeq, m.order[0])
			m.order = m.order[1:]
		}
		m.order = append(m.order, seq)
	}
	m.bySeq[seq] = names
}

// take returns and forgets the targets that missed seq; retry is false
// when none are remembered. A nil m remembers nothing.
func (m *missedTargets) take(seq uint64) (names []string, retry bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	names, retry = m.bySeq[seq]
	if retry {
		delete(m.bySeq, seq)
		m.order = slices.DeleteFunc(m.order, func(s uint64) bool { return s == seq })
	}
	return names, retry
}

// pick returns the JSON value at a dot path of a JSON object payload.
func pick(payload []byte, fieldPath string) ([]byte, error) {
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return nil, errors.New("the payload is not JSON")
	}
	for _, key := range strings.Split(fieldPath, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no field %q: not an object", key)
		}
		if v, ok = obj[key]; !ok {
			return nil, fmt.Errorf("no field %q", key)
		}
	}
	return json.Marshal(v)
}
