package mqttbridge

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// deviceStatus is the retained JSON on {prefix}/{device}/status.
type deviceStatus struct {
	State    string `json:"state"` // "online" or "offline"
	Protocol string `json:"protocol,omitempty"`
	Gateway  string `json:"gateway"`
	Since    string `json:"since"`
}

// gatewayStatus is the retained JSON on {prefix}/$gateway/{id}/status.
type gatewayStatus struct {
	State   string `json:"state"`
	Gateway string `json:"gateway"`
	Since   string `json:"since,omitempty"`
	Version string `json:"version,omitempty"`
}

// presenceTable holds the presence each device should have at the broker.
// Statuses are state, not events: when a device flaps while the broker is
// away, only its latest state is published.
type presenceTable struct {
	mu      sync.Mutex
	devices map[string]*presenceEntry
	resync  bool // a new connection: everything must be published again
}

type presenceEntry struct {
	device     router.Device
	online     bool
	dirty      bool // the broker has not seen the current state
	subscribed bool // this connection holds the device's command subscription
	// settled is closed when the broker has seen the current state; nil
	// while it has.
	settled chan struct{}
}

func (e *presenceEntry) markDirty() {
	if !e.dirty {
		e.dirty, e.settled = true, make(chan struct{})
	}
}

func (e *presenceEntry) markClean() {
	if e.dirty {
		e.dirty = false
		close(e.settled)
		e.settled = nil
	}
}

// Attached implements router.Watcher.
func (b *Bridge) Attached(dev router.Device) {
	b.presence.mu.Lock()
	e := b.presence.devices[dev.ID]
	if e == nil {
		e = &presenceEntry{}
		b.presence.devices[dev.ID] = e
	}
	e.device, e.online = dev, true
	e.markDirty()
	b.presence.mu.Unlock()
	signal(b.controlWake)
}

// Settle implements router.Settler: it waits until the broker holds the
// device's online status and its command subscription, so that nothing
// the device publishes reaches MQTT before its status and no command sent
// on seeing it online is lost. It waits only while the broker is
// connected: statuses are state, published again on every reconnect.
func (b *Bridge) Settle(ctx context.Context, device string) {
	b.presence.mu.Lock()
	e := b.presence.devices[device]
	if e == nil || !e.dirty || !b.client.IsConnectionOpen() {
		b.presence.mu.Unlock()
		return
	}
	settled := e.settled
	b.presence.mu.Unlock()
	select {
	case <-settled:
	case <-ctx.Done():
	}
}

// Detached implements router.Watcher.
func (b *Bridge) Detached(dev router.Device) {
	b.presence.mu.Lock()
	if e := b.presence.devices[dev.ID]; e != nil {
		e.device, e.online = dev, false
		e.markDirty()
	}
	b.presence.mu.Unlock()
	signal(b.controlWake)
}

// controlLoop publishes presence changes and renews subscriptions after
// every (re)connect.
func (b *Bridge) controlLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.connected:
			b.onConnect(ctx)
		case <-b.controlWake:
		}
		b.reconcile(ctx, true)
	}
}

func (b *Bridge) onConnect(ctx context.Context) {
	payload, _ := json.Marshal(gatewayStatus{State: "online", Gateway: b.cfg.GatewayID, Since: now(), Version: b.cfg.Version})
	if err := b.wait(ctx, b.client.Publish(b.topics.GatewayStatus(), 1, true, payload)); err != nil {
		b.log.Warn("cannot publish the gateway status", "err", err)
	}
	filters := map[string]byte{b.topics.StatusFilter(): 1}
	if b.cfg.OfflineResults {
		filters[b.topics.AllCommands()] = 1
	}
	if b.cfg.GatewayCommands != nil {
		filters[b.topics.GatewayCommands()] = 1
	}
	maps.Copy(filters, b.extra)
	if err := b.wait(ctx, b.client.SubscribeMultiple(filters, nil)); err != nil {
		b.log.Warn("cannot subscribe to statuses", "err", err)
	}
	for _, f := range b.connectHooks {
		f()
	}
	b.presence.mu.Lock()
	b.presence.resync = true
	b.presence.mu.Unlock()
	signal(b.replayWake)
}

// reconcile brings the broker's view of presence up to date. keep=false
// (at shutdown) publishes every device offline.
func (b *Bridge) reconcile(ctx context.Context, keep bool) {
	if !b.client.IsConnectionOpen() {
		return
	}
	type change struct {
		id        string
		status    deviceStatus
		subscribe bool // true: subscribe commands; false: unsubscribe if held
		held      bool
	}
	var changes []change
	b.presence.mu.Lock()
	resync := b.presence.resync
	b.presence.resync = false
	for id, e := range b.presence.devices {
		if resync {
			e.subscribed = false
			if e.online {
				e.markDirty()
			}
		}
		if !keep && e.online {
			e.online = false
			e.markDirty()
		}
		if !e.dirty {
			continue
		}
		st := deviceStatus{State: "offline", Protocol: e.device.Protocol, Gateway: b.cfg.GatewayID, Since: now()}
		if e.online {
			st.State, st.Since = "online", e.device.Since.UTC().Format(sinceFormat)
		}
		changes = append(changes, change{id: id, status: st, subscribe: e.online, held: e.subscribed})
	}
	b.presence.mu.Unlock()

	for _, c := range changes {
		var err error
		switch {
		case c.subscribe && !b.cfg.OfflineResults:
			err = b.wait(ctx, b.client.Subscribe(b.topics.Commands(c.id), 1, nil))
		case !c.subscribe && c.held:
			err = b.wait(ctx, b.client.Unsubscribe(b.topics.Commands(c.id)))
		}
		if err == nil && !(c.status.State == "offline" && b.remote.onlineElsewhere(c.id, b.cfg.GatewayID)) {
			payload, _ := json.Marshal(c.status)
			err = b.wait(ctx, b.client.Publish(b.topics.Status(c.id), 1, true, payload))
		}
		if err != nil {
			b.log.Warn("cannot update device presence; retrying on reconnect", "device", c.id, "err", err)
			continue
		}
		b.presence.mu.Lock()
		if e := b.presence.devices[c.id]; e != nil {
			// What the broker holds now, even when the device has flapped
			// meanwhile: the next pass must know to unsubscribe.
			if c.subscribe {
				e.subscribed = !b.cfg.OfflineResults
			} else if c.held {
				e.subscribed = false
			}
			if e.online == c.subscribe {
				e.markClean()
				if !e.online {
					delete(b.presence.devices, c.id)
				}
			}
		}
		b.presence.mu.Unlock()
	}
}

// remoteStatuses remembers devices that other gateways report online, so
// that this gateway never marks them offline and yields to newer sessions.
type remoteStatuses struct {
	mu      sync.Mutex
	devices map[string]deviceStatus
}

func (r *remoteStatuses) set(id string, st deviceStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.State == "online" {
		r.devices[id] = st
	} else {
		delete(r.devices, id)
	}
}

func (r *remoteStatuses) onlineElsewhere(id, self string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.devices[id]
	return ok && st.Gateway != self
}

// onMessage handles every message of the bridge's subscriptions. It runs on
// paho's goroutine and must not block.
func (b *Bridge) onMessage(_ mqtt.Client, msg mqtt.Message) {
	in, ok := b.topics.parse(msg.Topic())
	if !ok {
		return
	}
	switch {
	case in.status:
		b.onStatus(in.device, msg.Payload())
	case in.gateway:
		b.onGatewayCommand(in.command, msg.Payload())
	default:
		b.onCommand(in, msg.Payload())
	}
}

// onGatewayCommand runs a command to the gateway and publishes its result
// on {prefix}/$gateway/{id}/cmd/{name}/result.
func (b *Bridge) onGatewayCommand(name string, payload []byte) {
	if b.cfg.GatewayCommands == nil {
		return
	}
	res := protocols.Result{ID: b.nextCommandID()}
	switch {
	case len(payload) > 0 && !json.Valid(payload):
		res.Error = "bad-request: the payload must be JSON"
	default:
		data, err := b.cfg.GatewayCommands.GatewayCommand(name, payload)
		if err != nil {
			res.Error = err.Error()
			break
		}
		res.OK = true
		if data != nil {
			if res.Data, err = json.Marshal(data); err != nil {
				res.OK, res.Error = false, "cannot encode the result: "+err.Error()
			}
		}
	}
	if !res.OK {
		b.commandsFailed.Add(1)
	} else {
		b.commands.Add(1)
	}
	out, _ := json.Marshal(res)
	b.client.Publish(b.topics.GatewayResult(name), 1, false, out) // on paho's goroutine: do not wait
	b.log.Info("gateway command", "command", name, "ok", res.OK, "error", res.Error)
}

// onStatus follows other gateways' statuses and cleans up our stale ones.
func (b *Bridge) onStatus(device string, payload []byte) {
	var st deviceStatus
	if len(payload) == 0 || json.Unmarshal(payload, &st) != nil {
		return
	}
	if st.Gateway != b.cfg.GatewayID {
		b.remote.set(device, st)
		if st.State != "online" {
			return
		}
		// The same device online at another gateway: the newest session wins.
		local, ok := b.commander.Attached(device)
		theirs, err := time.Parse(time.RFC3339, st.Since) // fractional seconds or not
		if ok && err == nil && theirs.After(local.Since.Truncate(time.Millisecond)) {
			b.log.Info("device reconnected through another gateway; closing here", "device", device, "gateway", st.Gateway)
			b.commander.Evict(device, "the device connected through gateway "+st.Gateway)
		}
		return
	}
	b.remote.set(device, deviceStatus{})
	if st.State != "online" {
		return
	}
	// A retained "online" of ours for a device we do not have: left behind
	// by a crash. Mark it offline.
	b.presence.mu.Lock()
	_, known := b.presence.devices[device]
	b.presence.mu.Unlock()
	if _, attached := b.commander.Attached(device); attached || known {
		return
	}
	b.log.Info("clearing a stale online status", "device", device)
	out, _ := json.Marshal(deviceStatus{State: "offline", Protocol: st.Protocol, Gateway: b.cfg.GatewayID, Since: now()})
	b.client.Publish(b.topics.Status(device), 1, true, out)
}

// onCommand turns {prefix}/{device}/cmd/{name} into a Command.
func (b *Bridge) onCommand(in incoming, payload []byte) {
	cmd := protocols.Command{Device: in.device, ID: b.nextCommandID(), Name: in.command}
	if len(payload) > 0 {
		if !json.Valid(payload) {
			b.commandsFailed.Add(1)
			b.publishResult(cmd, "bad-request: the payload must be JSON")
			return
		}
		cmd.Args = append(json.RawMessage(nil), payload...)
	}
	err := b.commander.Command(cmd)
	switch {
	case err == nil:
		b.commands.Add(1)
	case errors.Is(err, protocols.ErrDeviceOffline):
		if b.cfg.OfflineResults && !b.remote.onlineElsewhere(in.device, b.cfg.GatewayID) {
			b.publishResult(cmd, "offline")
		}
	default:
		b.commandsFailed.Add(1)
		b.publishResult(cmd, err.Error())
	}
}

func (b *Bridge) publishResult(cmd protocols.Command, reason string) {
	f, err := protocols.ResultFrame(cmd.Name, protocols.Result{ID: cmd.ID, OK: false, Error: reason})
	if err != nil {
		return
	}
	f.Device = cmd.Device
	if err := b.deliver(f, 0); err != nil { // on paho's goroutine: never wait
		b.log.Warn("cannot publish a command result", "device", cmd.Device, "command", cmd.Name, "err", err)
	}
}
