package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
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

// SetRoutes installs routes; receivers finds the local devices that device
// targets name. Call it before the router is in use.
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
	r.routes = compiled
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
// route matches.
func (r *Router) route(f protocols.Frame) (ok bool, err error) {
	if strings.HasPrefix(f.Channel, "cmd/") {
		return false, nil // command results always go to MQTT
	}
	var rt *compiledRoute
	for i := range r.routes {
		if r.routes[i].matches(f) {
			rt = &r.routes[i]
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
	ack := newFanout(f.Ack, len(rt.targets))
	for _, t := range rt.targets {
		g := f
		g.Ack = ack.done
		var err error
		if t.mqtt {
			err = r.sink.Deliver(g)
		} else {
			g.Ack = nil
			err = t.receiver.Accept(g)
			if err == nil {
				ack.done(nil)
			}
		}
		if err != nil {
			r.log.Debug("routed frame not delivered", "device", f.Device, "channel", f.Channel, "target", t.name, "err", err)
			ack.done(err)
		}
	}
	return true, nil
}

// fanout calls ack once, when every target has settled, with the first
// error.
type fanout struct {
	mu        sync.Mutex
	remaining int
	err       error
	ack       func(error)
}

func newFanout(ack func(error), n int) *fanout { return &fanout{remaining: n, ack: ack} }

func (f *fanout) done(err error) {
	f.mu.Lock()
	if err != nil && f.err == nil {
		f.err = err
	}
	f.remaining--
	last := f.remaining == 0
	f.mu.Unlock()
	if last && f.ack != nil {
		f.ack(f.err)
	}
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
