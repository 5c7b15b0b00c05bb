package mqttbridge

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wsgate/wsgate/gateway/ownership"
	"github.com/wsgate/wsgate/gateway/router"
)

// deviceStatus is the retained JSON on {prefix}/{device}/status: the
// device's latest claim (docs/MQTT.md). Statuses without a stamp (from
// gateways before claims had one) count as stamp 0.
type deviceStatus struct {
	State    string `json:"state"` // "online" or "offline"
	Protocol string `json:"protocol,omitempty"`
	Gateway  string `json:"gateway"`
	Session  string `json:"session,omitempty"`
	Stamp    uint64 `json:"stamp,omitempty"`
	Since    string `json:"since"`
}

func (st deviceStatus) claim() ownership.Claim {
	since, _ := time.Parse(time.RFC3339, st.Since)
	return ownership.Claim{Gateway: st.Gateway, Session: st.Session, Stamp: st.Stamp, Online: st.State == "online",
		Protocol: st.Protocol, Since: since}
}

// statusOf is the status announcing c; an ended session's status is dated
// now.
func (b *Bridge) statusOf(c ownership.Claim) deviceStatus {
	st := deviceStatus{State: "online", Protocol: c.Protocol, Gateway: c.Gateway, Session: c.Session, Stamp: c.Stamp,
		Since: c.Since.UTC().Format(sinceFormat)}
	if !c.Online {
		st.State, st.Since = "offline", b.now()
	}
	return st
}

// gatewayStatus is the retained JSON on {prefix}/$gateway/{id}/status.
type gatewayStatus struct {
	State   string `json:"state"`
	Gateway string `json:"gateway"`
	Since   string `json:"since,omitempty"`
	Version string `json:"version,omitempty"`
	// ShareGroup is the shared subscription the gateway takes commands
	// from; empty when it subscribes per device. A fleet must agree on it.
	ShareGroup string `json:"share_group,omitempty"`
}

// presenceTable holds the presence each device should have at the broker.
// Statuses are state, not events: when a device flaps while the broker is
// away, only its latest state is published.
type presenceTable struct {
	mu      sync.Mutex
	devices map[string]*presenceEntry
	resync  bool // a new connection: everything must be published again
	// attaches counts the sessions attached; an entry keeps the count at
	// its session's attach, so that reconcile claims only the sessions
	// that attached before it sent its sync marker.
	attaches uint64
}

type presenceEntry struct {
	device     router.Device
	online     bool
	dirty      bool // the broker has not seen the current state
	subscribed bool // this connection holds the device's command subscription
	// settled is closed when the broker has seen the current state; nil
	// while it has.
	settled chan struct{}
	// claim is the claim of the device's latest session here; Stamp 0
	// until one is issued (after the broker's statuses are known).
	claim ownership.Claim
	// attach is presenceTable.attaches when the session attached.
	attach uint64
}

// needsClaim reports whether the device's session here has no claim yet.
func (e *presenceEntry) needsClaim() bool {
	return e.online && (e.claim.Stamp == 0 || e.claim.Session != e.device.Session)
}

// liveClaim returns the claim of the device's session here; a zero Claim
// when there is none (no session, or not claimed yet). e may be nil.
func (e *presenceEntry) liveClaim() ownership.Claim {
	if e == nil || !e.online || e.needsClaim() {
		return ownership.Claim{}
	}
	return e.claim
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
	b.presence.attaches++
	e.attach = b.presence.attaches
	e.markDirty()
	b.presence.mu.Unlock()
	signal(b.controlWake)
}

// Settle implements router.Settler: it waits until the broker holds the
// device's online status (its claim) and its command subscription, so that
// nothing the device publishes reaches MQTT before its status and no
// command sent on seeing it online is lost. It waits only while the broker
// is connected: statuses are state, published again on every reconnect.
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
//
// A pass that failed while the broker stays connected (it refused a
// subscription) is tried again after a while.
func (b *Bridge) controlLoop(ctx context.Context) {
	retry := time.NewTimer(0)
	<-retry.C
	handoff := time.NewTimer(0) // when a handoff is next due to end
	<-handoff.C
	defer retry.Stop()
	defer handoff.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.connected:
			b.onConnect(ctx)
		case <-b.controlWake:
		case <-retry.C:
		case <-handoff.C:
		}
		if !b.subscribed.Load() && b.client.IsConnectionOpen() && b.subscribe(ctx) {
			b.subscribed.Store(true)
			b.awaitSync(ctx) // the statuses the refused subscription missed
		}
		if (!b.reconcile(ctx, true) || !b.subscribed.Load()) && b.client.IsConnectionOpen() {
			retry.Reset(max(b.cfg.ReconnectMin, time.Second))
		}
		b.sweep(ctx)
		if next := b.endHandoffs(ctx); !next.IsZero() {
			handoff.Reset(max(next.Sub(b.owners.Now()), 10*time.Millisecond))
		}
	}
}

func (b *Bridge) onConnect(ctx context.Context) {
	b.synced.Store(false)
	payload, _ := json.Marshal(gatewayStatus{State: "online", Gateway: b.cfg.GatewayID, Since: b.now(), Version: b.cfg.Version,
		ShareGroup: b.cfg.ShareGroup})
	if err := b.wait(ctx, b.client.Publish(b.topics.GatewayStatus(), 1, true, payload)); err != nil {
		b.log.Warn("cannot publish the gateway status", "err", err)
	}
	filters := map[string]byte{
		b.topics.StatusFilter(): 1, b.topics.GatewayStatusFilter(): 1, // StatusFilter brings the sync markers too
	}
	// The inbox: commands forwarded (share group) or releases (handoff.go).
	filters[b.topics.Forward(b.cfg.GatewayID)] = 1
	switch {
	case b.cfg.ShareGroup != "":
		filters[b.topics.SharedCommands(b.cfg.ShareGroup)] = 1
	case b.cfg.OfflineResults:
		filters[b.topics.AllCommands()] = b.cfg.CommandQoS
	}
	if b.cfg.GatewayCommands != nil {
		filters[b.topics.GatewayCommands()] = 1
	}
	maps.Copy(filters, b.extra)
	b.subscriptions = filters
	b.subscribed.Store(b.subscribe(ctx))
	if b.subscribed.Load() { // else the control loop syncs once it has subscribed
		b.awaitSync(ctx)
	}
	for _, f := range b.connectHooks {
		f()
	}
	b.presence.mu.Lock()
	b.presence.resync = true
	b.presence.mu.Unlock()
	b.sweepWanted.Store(true)
	signal(b.replayWake)
}

// subscribe subscribes to the bridge's filters of this connection and
// reports whether the broker took them all. A clustered broker that lost a
// node may refuse some for a while (NATS while it moves its JetStream
// consumers): the control loop tries again.
func (b *Bridge) subscribe(ctx context.Context) bool {
	if err := b.wait(ctx, b.client.SubscribeMultiple(b.subscriptions, nil)); err != nil {
		b.log.Warn("cannot subscribe to statuses and commands; retrying", "err", err)
		return false
	}
	return true
}

// syncMarker is the payload of a sync marker on Topics.Sync: which gateway
// sent it, and its run and nonce (another process may run under the same
// gateway id after a restart).
type syncMarker struct {
	Gateway string `json:"gateway"`
	Run     string `json:"run"`
	Nonce   uint64 `json:"sync"`
}

// awaitSync sends the gateway a marker behind its subscriptions and waits
// for it to come back: the broker sends a new subscription's retained
// messages, and every status published before the marker, ahead of it, so
// by then the bridge knows every claim made before it asked and its own
// claims supersede them. It runs after each connect and before each batch
// of new claims. A broker that does not bring the marker back within the
// publish timeout is not waited for any longer.
func (b *Bridge) awaitSync(ctx context.Context) {
	nonce := b.syncNonce.Add(1)
	payload, _ := json.Marshal(syncMarker{Gateway: b.cfg.GatewayID, Run: b.runTag, Nonce: nonce})
	t := b.client.Publish(b.topics.Sync(), 1, false, payload)
	timer := time.NewTimer(b.cfg.PublishTimeout)
	defer timer.Stop()
	for {
		select {
		case got := <-b.syncCh:
			if got != nonce {
				continue // the marker of an earlier connection
			}
		case <-timer.C:
			b.log.Warn("the broker did not return the sync marker; claiming devices with what is known", "err", t.Error())
		case <-ctx.Done():
			return
		}
		b.synced.Store(true)
		return
	}
}

// onSync takes a sync marker on paho's goroutine; those of other gateways
// pass by.
func (b *Bridge) onSync(payload []byte) {
	var m syncMarker
	if json.Unmarshal(payload, &m) != nil || m.Gateway != b.cfg.GatewayID || m.Run != b.runTag {
		return
	}
	nonce := m.Nonce
	select {
	case b.syncCh <- nonce:
	default: // a stale marker is waiting: replace it
		select {
		case <-b.syncCh:
		default:
		}
		select {
		case b.syncCh <- nonce:
		default:
		}
	}
}

// reconcile brings the broker's view of presence up to date: a session
// that has no claim yet is given one, announced with its online status
// after its command subscription is in place; a session that ended is
// announced offline unless a later claim has superseded it. keep=false (at
// shutdown) ends every session.
//
// It reports whether every change went through.
func (b *Bridge) reconcile(ctx context.Context, keep bool) bool {
	if !b.client.IsConnectionOpen() || !b.synced.Load() {
		return false
	}
	type change struct {
		id        string
		claim     ownership.Claim // Online: the state to announce
		subscribe bool            // true: subscribe commands; false: unsubscribe if held
		held      bool
	}
	// Claims are made for the sessions that attached before the sync
	// marker went out: by the time it is back, every claim the broker
	// passed on before them is known, so a device that connected here
	// after its session elsewhere was announced gets a stamp above that
	// session's. Later sessions wait for the next pass.
	claimable, wanted := b.claimsWanted()
	if wanted {
		b.awaitSync(ctx)
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
		if e.needsClaim() {
			if !wanted || e.attach > claimable {
				signal(b.controlWake) // the next pass syncs for it
				continue
			}
			e.claim = b.owners.Claim(id, e.device.Session)
			e.claim.Protocol = e.device.Protocol
			b.expectHandoff(id, e.claim.Stamp)
		}
		c := e.claim
		c.Online = e.online
		changes = append(changes, change{id: id, claim: c, subscribe: e.online, held: e.subscribed})
	}
	b.presence.mu.Unlock()

	ok := true
	for _, c := range changes {
		online := c.claim
		online.Online = true
		// A later claim came while this one waited (the device connected
		// elsewhere meanwhile): the session has lost and is closed; it
		// neither subscribes nor announces anything.
		superseded := c.claim.Stamp != 0 && b.owners.Superseded(c.id, online)
		subscribe := c.subscribe && !superseded
		var err error
		switch {
		case subscribe && b.perDeviceCommands():
			err = b.wait(ctx, b.client.Subscribe(b.topics.Commands(c.id), b.cfg.CommandQoS, nil))
		case !subscribe && c.held && !b.handoffs.isLeaving(c.id, b.owners.Now()):
			// (A device given away keeps its subscription a while:
			// endHandoffs drops it.)
			err = b.wait(ctx, b.client.Unsubscribe(b.topics.Commands(c.id)))
		}
		if err == nil && c.claim.Stamp != 0 && !superseded {
			payload, _ := json.Marshal(b.statusOf(c.claim))
			err = b.wait(ctx, b.client.Publish(b.topics.Status(c.id), 1, true, payload))
			if err == nil && c.claim.Online {
				b.owners.Adopt(c.id, c.claim)
			}
		}
		if superseded && c.subscribe {
			b.takeOver(c.id, c.claim.Session)
		}
		if err != nil {
			b.log.Warn("cannot update device presence; retrying", "device", c.id, "err", err)
			ok = false
			continue
		}
		b.presence.mu.Lock()
		if e := b.presence.devices[c.id]; e != nil {
			// What the broker holds now, even when the device has flapped
			// meanwhile: the next pass must know to unsubscribe.
			if subscribe {
				e.subscribed = b.perDeviceCommands()
			} else if c.held {
				e.subscribed = false
			}
			if e.online == c.subscribe && (!e.online || e.device.Session == c.claim.Session) {
				e.markClean()
				if !e.online {
					delete(b.presence.devices, c.id)
				}
			}
		}
		b.presence.mu.Unlock()
	}
	return ok
}

// claimsWanted reports whether a session here has no claim yet, and the
// count of attaches so far: a sync sent after this call covers those.
func (b *Bridge) claimsWanted() (attaches uint64, wanted bool) {
	b.presence.mu.Lock()
	defer b.presence.mu.Unlock()
	for _, e := range b.presence.devices {
		if e.dirty && e.needsClaim() {
			return b.presence.attaches, true
		}
	}
	return b.presence.attaches, false
}

// takeOver closes a session of ours whose claim a later one superseded.
func (b *Bridge) takeOver(device, session string) {
	latest, _ := b.owners.Latest(device)
	reason := "replaced by a newer session"
	if latest.Gateway != b.cfg.GatewayID {
		reason += " at gateway " + latest.Gateway
	}
	if b.commander.Evict(device, session, reason) {
		b.takeovers.Add(1)
		b.log.Info("device reconnected through another gateway; closing its session here", "device", device,
			"gateway", latest.Gateway, "stamp", latest.Stamp)
	}
}

// sweep marks offline the devices whose latest claim is online but held by
// nobody: this gateway's own, left behind by a crash before a restart, and
// (by the fleet's leader only) those of gateways whose Last Will says they
// are gone.
func (b *Bridge) sweep(ctx context.Context) {
	if !b.client.IsConnectionOpen() || !b.synced.Load() || !b.sweepWanted.Swap(false) {
		return
	}
	leader := b.owners.Leader() == b.cfg.GatewayID
	for _, o := range b.owners.Orphans(b.holds) {
		if o.Claim.Gateway != b.cfg.GatewayID && !leader {
			continue
		}
		if o.Claim.Gateway == b.cfg.GatewayID {
			b.log.Info("clearing a stale online status", "device", o.Device)
		} else {
			b.log.Info("marking offline a device of a gateway that is gone", "device", o.Device, "gateway", o.Claim.Gateway)
		}
		c := o.Claim
		c.Online = false
		payload, _ := json.Marshal(b.statusOf(c))
		if err := b.wait(ctx, b.client.Publish(b.topics.Status(o.Device), 1, true, payload)); err != nil {
			b.log.Warn("cannot clear a stale status; retrying on reconnect", "device", o.Device, "err", err)
			return
		}
	}
}

// holds reports whether the device has a session here, or one on its way.
func (b *Bridge) holds(device string) bool {
	b.presence.mu.Lock()
	_, known := b.presence.devices[device]
	b.presence.mu.Unlock()
	if known {
		return true
	}
	_, attached := b.commander.Attached(device)
	return attached
}

// onStatus follows the claims on devices (their retained statuses): a
// later claim than the one of a session here closes that session; an
// earlier claim than the one here, arriving after it (a stale offline from
// a session that just ended elsewhere), is answered by announcing the claim
// here again; online claims nobody holds are swept.
func (b *Bridge) onStatus(device string, payload []byte) {
	var st deviceStatus
	if len(payload) == 0 || json.Unmarshal(payload, &st) != nil || st.Gateway == "" {
		return
	}
	c := st.claim()
	before, _ := b.owners.Latest(device)
	latest := b.owners.Observe(device, c)
	if latest && c.Online && c.Gateway != b.cfg.GatewayID && before.Gateway == b.cfg.GatewayID && !c.Same(before) {
		// The device moved from here: hand it over before the session
		// closes, so that no command is left between the two.
		b.releaseDevice(device, c.Gateway, c.Stamp, before.Online)
	}

	b.presence.mu.Lock()
	e := b.presence.devices[device]
	mine := e.liveClaim()
	switch {
	case mine.Stamp != 0 && c.Same(mine) && !c.Online && !e.dirty:
		// Our live session announced offline by someone else (the fleet's
		// leader took this gateway for dead): claim the device anew, above
		// that, so that every gateway sees it online again.
		e.claim = ownership.Claim{}
		e.markDirty()
		b.presence.mu.Unlock()
		signal(b.controlWake)
		return
	case mine.Stamp == 0 || c.Same(mine):
	case latest && c.After(mine):
		b.presence.mu.Unlock()
		b.takeOver(device, mine.Session)
		return
	case !latest && !e.dirty && !b.owners.Superseded(device, mine):
		e.markDirty() // announce our claim again over the stale one
		b.presence.mu.Unlock()
		signal(b.controlWake)
		return
	}
	b.presence.mu.Unlock()
	if latest && c.Online && (c.Gateway == b.cfg.GatewayID || !b.owners.Alive(c.Gateway)) {
		b.sweepWanted.Store(true)
		signal(b.controlWake)
	}
}

// onGatewayStatus follows which gateways are alive; a gateway's Last Will
// orphans the devices it held.
func (b *Bridge) onGatewayStatus(id string, payload []byte) {
	var st gatewayStatus
	if len(payload) == 0 || json.Unmarshal(payload, &st) != nil {
		return
	}
	alive := st.State == "online"
	if id == b.cfg.GatewayID && !alive && b.client.IsConnectionOpen() && !b.stopping.Load() {
		// A Last Will of an earlier connection of ours, or a stale
		// retained status: this gateway is alive, and says so again.
		payload, _ := json.Marshal(gatewayStatus{State: "online", Gateway: b.cfg.GatewayID, Since: b.now(),
			Version: b.cfg.Version, ShareGroup: b.cfg.ShareGroup})
		b.client.Publish(b.topics.GatewayStatus(), 1, true, payload) // on paho's goroutine: do not wait
		return
	}
	if !b.owners.SetGateway(id, alive) {
		return
	}
	if alive && id != b.cfg.GatewayID && st.ShareGroup != b.cfg.ShareGroup {
		b.log.Warn("another gateway takes commands differently: the fleet may deliver commands twice or not at all; give every instance the same mqtt.share_group",
			"gateway", id, "its_share_group", st.ShareGroup, "share_group", b.cfg.ShareGroup)
	}
	if !alive {
		b.log.Info("a gateway went offline", "gateway", id)
		b.gatewayGone(id)
		b.sweepWanted.Store(true)
		signal(b.controlWake)
	}
}

// onMessage handles every message of the bridge's subscriptions. It runs on
// paho's goroutine and must not block.
func (b *Bridge) onMessage(_ mqtt.Client, msg mqtt.Message) {
	in, ok := b.topics.parse(msg.Topic())
	if !ok {
		return
	}
	switch in.kind {
	case kindStatus:
		b.onStatus(in.device, msg.Payload())
	case kindGatewayStatus:
		b.onGatewayStatus(in.device, msg.Payload())
	case kindSync:
		b.onSync(msg.Payload())
	case kindGatewayCommand:
		b.onGatewayCommand(in.command, msg.Payload())
	case kindCommand:
		b.onCommand(in, msg.Payload())
	case kindForward:
		b.onForward(msg.Payload())
	}
}
