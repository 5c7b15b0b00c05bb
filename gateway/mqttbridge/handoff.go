package mqttbridge

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// Handoff: without a share group, each gateway takes the commands of the
// devices it holds from a subscription of its own. A broker that gives the
// messages of different subscriptions no common order (a NATS cluster)
// may bring a command to the old and the new gateway of a device that
// moves on different sides of the claim that moved it: both would deliver
// it, or neither. So the two gateways hand the device over explicitly:
//
//   - The new gateway, from the moment it claims a device another live
//     gateway holds, holds back the commands it gets for it.
//   - The old gateway delivers commands until it sees the new claim; then
//     it closes its session and sends the new gateway a release that lists
//     the command ids it delivered lately.
//   - The new gateway delivers what it held back except those, remembers
//     them (a late copy is not delivered either), and from then on delivers
//     directly.
//   - For a while after the release, the old gateway keeps its subscription
//     and forwards what still reaches it: a command sent before the new
//     gateway's subscription reached every broker node.
//
// If the device moves on before the release comes, the held commands still
// wait for it, then follow the device (runCommand forwards what
// finds its session here gone), less those its previous gateway delivered.
//
// A command without an id cannot be recognised on the other side: across
// a move it may be delivered twice. A release that does not come within
// handoffWait (the old gateway died) ends the wait: the held commands are
// delivered, at least once.

const (
	handoffWait   = 5 * time.Second
	handoffLinger = 10 * time.Second
	// maxHeld bounds the commands held for one device during a handoff;
	// more are answered busy.
	maxHeld = 256
	// maxReleased bounds the ids a release lists.
	maxReleased = 256
)

// release is the message the old gateway of a device sends the new one.
type release struct {
	Stamp     uint64   `json:"stamp"` // the claim that took the device
	Delivered []string `json:"delivered,omitempty"`
}

// handoffs is the bridge's part in the handoffs of devices that move: the
// devices it took and waits for (arriving) and those it gave away and
// still forwards commands for (leaving).
type handoffs struct {
	mu       sync.Mutex
	arriving map[string]*arrival
	leaving  map[string]time.Time // device -> until when its commands are forwarded
}

type arrival struct {
	from     string // the gateway that held the device
	stamp    uint64 // the claim that took it: only a release naming it (or a later one) ends the wait
	deadline time.Time
	held     []heldCommand
	flushing bool // the held commands are being delivered; more are appended
}

// heldCommand is a command held back during a handoff. named: its sender
// gave its id, so another gateway can recognise it.
type heldCommand struct {
	cmd   protocols.Command
	named bool
}

func newHandoffs() handoffs {
	return handoffs{arriving: make(map[string]*arrival), leaving: make(map[string]time.Time)}
}

// expect starts holding back the commands of device until from releases it
// to the claim with stamp.
func (h *handoffs) expect(device, from string, stamp uint64, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.arriving[device]; a != nil && !a.flushing {
		a.from, a.stamp, a.deadline = from, stamp, now.Add(handoffWait)
		return
	}
	h.arriving[device] = &arrival{from: from, stamp: stamp, deadline: now.Add(handoffWait)}
}

// hold keeps cmd back if its device is arriving. It reports whether it
// did, and whether the device's held commands are full.
func (h *handoffs) hold(cmd protocols.Command, named bool) (held, full bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.arriving[cmd.Device]
	switch {
	case a == nil:
		return false, false
	case len(a.held) >= maxHeld:
		return true, true
	}
	a.held = append(a.held, heldCommand{cmd, named})
	return true, false
}

// releases reports whether a release of device by gateway from, to the
// claim with stamp, ends its arrival here. A release to an earlier claim
// of this gateway (the device came, went and came back) does not: the
// sender may deliver the device's commands again since.
func (h *handoffs) releases(device, from string, stamp uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.arriving[device]
	return a != nil && a.from == from && stamp >= a.stamp && !a.flushing
}

// flush ends the arrival of device: it hands deliver the held commands in
// order, including those that come while it does, and then lets commands
// through. It reports whether the device was arriving.
func (h *handoffs) flush(device string, deliver func(protocols.Command, bool)) bool {
	h.mu.Lock()
	a := h.arriving[device]
	if a == nil || a.flushing {
		h.mu.Unlock()
		return false
	}
	a.flushing = true
	for {
		batch := a.held
		a.held = nil
		if len(batch) == 0 {
			delete(h.arriving, device)
			h.mu.Unlock()
			return true
		}
		h.mu.Unlock()
		for _, c := range batch {
			deliver(c.cmd, c.named)
		}
		h.mu.Lock()
	}
}

// leave records that device was given away: its commands are forwarded
// until handoffLinger has passed.
func (h *handoffs) leave(device string, now time.Time) {
	h.mu.Lock()
	h.leaving[device] = now.Add(handoffLinger)
	h.mu.Unlock()
}

// isLeaving reports whether commands of device are still forwarded.
func (h *handoffs) isLeaving(device string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.leaving[device]
	return ok && now.Before(until)
}

// expired returns the arrivals whose release did not come in time and the
// departures that are over, and when the next one is due (zero if none).
func (h *handoffs) expired(now time.Time) (arrivals, departures []string, next time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	due := func(t time.Time) bool {
		if !now.Before(t) {
			return true
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
		return false
	}
	for device, a := range h.arriving {
		if !a.flushing && due(a.deadline) {
			arrivals = append(arrivals, device)
		}
	}
	for device, until := range h.leaving {
		if due(until) {
			departures = append(departures, device)
			delete(h.leaving, device)
		}
	}
	return arrivals, departures, next
}

// arrivingFrom lists the devices arriving from gateway.
func (h *handoffs) arrivingFrom(gateway string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var devices []string
	for device, a := range h.arriving {
		if a.from == gateway && !a.flushing {
			devices = append(devices, device)
		}
	}
	return devices
}

// ---- the bridge's side ----

// expectHandoff is called as the bridge claims device for a new session
// with stamp: if another live gateway holds it, its commands wait for that
// gateway's release.
func (b *Bridge) expectHandoff(device string, stamp uint64) {
	if b.cfg.ShareGroup != "" {
		return // one gateway takes each command and routes it by the claims
	}
	if owner, held := b.owners.Owner(device); held && owner.Gateway != b.cfg.GatewayID {
		b.handoffs.expect(device, owner.Gateway, stamp, b.owners.Now())
		b.log.Debug("device claimed from another gateway; its commands wait for the release", "device", device,
			"stamp", stamp, "gateway", owner.Gateway, "its_stamp", owner.Stamp)
	}
}

// releaseDevice tells gateway to, whose claim took device from this one,
// which commands this gateway delivered to it lately; if the session was
// still on here (heldHere), it forwards what still comes for a while.
func (b *Bridge) releaseDevice(device, to string, stamp uint64, heldHere bool) {
	if b.cfg.ShareGroup != "" {
		return
	}
	if b.perDeviceCommands() && heldHere {
		b.handoffs.leave(device, b.owners.Now())
		signal(b.controlWake) // arms the timer that ends the forwarding
	}
	payload, err := json.Marshal(forwarded{Device: device, From: b.cfg.GatewayID,
		Release: &release{Stamp: stamp, Delivered: b.recent.of(device, maxReleased)}})
	if err != nil {
		return
	}
	b.client.Publish(b.topics.Forward(to), 1, false, payload) // on paho's goroutine: do not wait
	b.log.Debug("device handed over to another gateway", "device", device, "gateway", to, "stamp", stamp)
}

// onRelease takes the release of a device this gateway took.
func (b *Bridge) onRelease(device, from string, r *release) {
	for _, id := range r.Delivered {
		if len(id) <= maxCommandID {
			b.recent.released(device, id)
		}
	}
	ends := b.handoffs.releases(device, from, r.Stamp)
	b.log.Debug("release of a device", "device", device, "gateway", from, "stamp", r.Stamp, "delivered", len(r.Delivered),
		"ends_wait", ends)
	if ends {
		b.handoffs.flush(device, b.deliverHeld)
	}
}

// endHandoffs runs on the control loop: arrivals whose release did not come
// deliver what they held; departures that are over drop the command
// subscription unless the device is back. It returns when it is next due.
func (b *Bridge) endHandoffs(ctx context.Context) time.Time {
	arrivals, departures, next := b.handoffs.expired(b.owners.Now())
	for _, device := range arrivals {
		b.log.Info("no release from the device's previous gateway; delivering the commands held for it", "device", device)
		b.handoffs.flush(device, b.deliverHeld)
	}
	for _, device := range departures {
		if b.holds(device) || !b.client.IsConnectionOpen() {
			continue
		}
		if err := b.wait(ctx, b.client.Unsubscribe(b.topics.Commands(device))); err != nil {
			b.log.Warn("cannot drop the command subscription of a device that moved", "device", device, "err", err)
		}
	}
	return next
}

// deliverHeld delivers a command held for a handoff.
func (b *Bridge) deliverHeld(cmd protocols.Command, named bool) { b.deliverCommand(cmd, 0, named) }

// heldBack reports whether route kept cmd for a handoff (or answered it
// busy).
func (b *Bridge) heldBack(cmd protocols.Command, named bool) bool {
	held, full := b.handoffs.hold(cmd, named)
	if full {
		b.commandsFailed.Add(1)
		b.publishResult(cmd, "busy: the device is moving between gateways; send the command again")
	}
	return held
}

// gatewayGone ends the wait of the devices arriving from a gateway that
// died: its release will not come.
func (b *Bridge) gatewayGone(gateway string) {
	for _, device := range b.handoffs.arrivingFrom(gateway) {
		b.handoffs.flush(device, b.deliverHeld)
	}
}
