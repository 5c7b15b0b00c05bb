package mqttbridge

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/wsgate/wsgate/protocols"
)

// Downlink: a command published on {prefix}/{device}/cmd/{name} (or
// .../cmd/{name}/{id}, with the sender's id) is delivered by the gateway
// that holds the device's session with the latest claim (package
// ownership), and by no other.
//
// With mqtt.share_group the gateways take the commands through one shared
// subscription, so each command reaches one gateway; that one delivers it
// if it holds the device, and otherwise forwards it to the inbox of the
// gateway that does ({prefix}/$gateway/{id}/forward), which does the same,
// at most maxHops times. Without a share group (brokers without shared
// subscriptions) every gateway subscribes to the commands of the devices it
// holds, and a device that moves is handed over between the two gateways
// (handoff.go), so that each command is delivered by one of them.
//
// The gateway that delivers a command remembers its id (recentCommands),
// so a command sent again with the same id is not delivered twice.

// forwarded is what a gateway's inbox receives from another gateway: a
// command on its way to the gateway that holds its device, or the release
// of a device the receiver took from the sender.
type forwarded struct {
	Device  string          `json:"device"`
	Name    string          `json:"name,omitempty"`
	ID      string          `json:"id,omitempty"`
	Args    json.RawMessage `json:"args,omitempty"`
	Hops    int             `json:"hops,omitempty"`
	From    string          `json:"from"`
	Release *release        `json:"release,omitempty"`
	// Undelivered: a command the sender took for the device (and may have
	// listed in a release) but could not deliver after all.
	Undelivered bool `json:"undelivered,omitempty"`
}

// maxHops bounds how often a command follows a device that keeps moving.
const maxHops = 4

// resultMoved answers a command that reached its hop limit.
const resultMoved = "the device moved between gateways while the command followed it; send it again"

// perDeviceCommands reports whether the bridge subscribes to the commands
// of each device it holds (no share group, no offline results).
func (b *Bridge) perDeviceCommands() bool {
	return b.cfg.ShareGroup == "" && !b.cfg.OfflineResults
}

// onCommand turns {prefix}/{device}/cmd/{name}[/{id}] into a Command.
func (b *Bridge) onCommand(in incoming, payload []byte) {
	id := in.id
	switch {
	case id == "":
		id = b.nextCommandID()
	case len(id) > maxCommandID:
		b.log.Warn("command id too long; command ignored", "device", in.device, "command", in.command, "length", len(id))
		return
	}
	cmd := protocols.Command{Device: in.device, ID: id, Name: in.command}
	if len(payload) > 0 {
		cmd.Args = append(json.RawMessage(nil), payload...)
	}
	b.route(cmd, 0, in.id != "")
}

// onForward takes a command another gateway forwarded to this one.
func (b *Bridge) onForward(payload []byte) {
	var f forwarded
	switch {
	case json.Unmarshal(payload, &f) != nil || !protocols.ValidDeviceID(f.Device):
	case f.Release != nil && f.From != "":
		b.onRelease(f.Device, f.From, f.Release)
		return
	case validateLevel(f.Name) == nil && f.ID != "" && len(f.ID) <= maxCommandID && f.Hops >= 1 && f.Hops <= maxHops:
		// Its id came from its sender, or (with a share group, id-less)
		// was made unique by the gateway that took it.
		if f.Undelivered {
			b.recent.forgetReleased(f.Device, f.ID)
		}
		b.route(protocols.Command{Device: f.Device, ID: f.ID, Name: f.Name, Args: f.Args}, f.Hops, true)
		return
	}
	b.log.Warn("malformed message from another gateway ignored", "payload_bytes", len(payload))
}

// route delivers cmd, forwards it, or leaves it to the gateway that holds
// its device. named: the id came with the command. It runs on paho's
// goroutine and never waits.
func (b *Bridge) route(cmd protocols.Command, hops int, named bool) {
	if b.cfg.ShareGroup == "" {
		b.routeUnshared(cmd, hops, named)
		return
	}
	owner, held := b.owners.Owner(cmd.Device)
	switch {
	case held && owner.Gateway == b.cfg.GatewayID:
		b.deliverCommand(cmd, hops, true) // ids are unique in the fleet: named, or made with the run's tag
	case held:
		if len(cmd.Args) > 0 && !json.Valid(cmd.Args) {
			b.commandsFailed.Add(1)
			b.publishResult(cmd, "bad-request: the payload must be JSON")
			return
		}
		if hops >= maxHops {
			b.commandsFailed.Add(1)
			b.publishResult(cmd, resultMoved)
			return
		}
		b.forward(owner.Gateway, cmd, hops+1)
	case b.cfg.OfflineResults:
		// Nobody holds the device, and this gateway is the only one that
		// got the command.
		b.publishResult(cmd, "offline")
	}
}

// routeUnshared routes a command without a share group: every gateway that
// holds the device, or took it or gave it away a moment ago, has it.
func (b *Bridge) routeUnshared(cmd protocols.Command, hops int, named bool) {
	if b.claims(cmd.Device) {
		if !b.heldBack(cmd, named) {
			b.deliverCommand(cmd, hops, named)
		}
		return
	}
	owner, held := b.owners.Owner(cmd.Device)
	switch {
	case held && named && b.perDeviceCommands() && b.handoffs.isLeaving(cmd.Device, b.owners.Now()):
		// Given away a moment ago: the new gateway may not have it.
		if hops >= maxHops {
			b.commandsFailed.Add(1)
			b.publishResult(cmd, resultMoved)
			return
		}
		b.forward(owner.Gateway, cmd, hops+1)
	case held:
		// Its gateway takes the command from its own subscription.
	case b.cfg.OfflineResults && b.owners.Leader() == b.cfg.GatewayID:
		// Nobody holds the device: the fleet's leader answers.
		b.publishResult(cmd, "offline")
	}
}

// claims reports whether this gateway delivers the commands of device: the
// latest claim it knows is its own, or it holds a session whose claim
// nobody has superseded (the claim may not have come back yet).
func (b *Bridge) claims(device string) bool {
	if owner, held := b.owners.Owner(device); held && owner.Gateway == b.cfg.GatewayID {
		return true
	}
	b.presence.mu.Lock()
	mine := b.presence.devices[device].liveClaim()
	b.presence.mu.Unlock()
	return mine.Stamp != 0 && !b.owners.Superseded(device, mine)
}

// deliverCommand hands cmd to the device's session here, through the
// device's command queue. remember: its id means the same command to every
// gateway (not one this gateway made up), so it is kept to recognise the
// command if it comes again. It never waits: a session busy with its
// device (a hello waiting for its claim to settle, a device slow to take
// frames) must not hold up the MQTT client, which brings the very
// acknowledgements the session waits for.
func (b *Bridge) deliverCommand(cmd protocols.Command, hops int, remember bool) {
	if len(cmd.Args) > 0 && !json.Valid(cmd.Args) {
		b.commandsFailed.Add(1)
		b.publishResult(cmd, "bad-request: the payload must be JSON")
		return
	}
	if remember && !b.recent.reserve(cmd.Device, cmd.ID) {
		b.duplicates.Add(1)
		b.log.Debug("command delivered before; not again", "device", cmd.Device, "command", cmd.Name, "id", cmd.ID)
		return
	}
	if reason := b.commandQueue.add(pendingCommand{cmd, hops, remember}); reason != "" {
		if remember {
			b.recent.forget(cmd.Device, cmd.ID)
		}
		b.commandsFailed.Add(1)
		b.publishResult(cmd, reason)
	}
}

// pendingCommand is a command on its way to its device's session.
type pendingCommand struct {
	cmd      protocols.Command
	hops     int // how often it was forwarded to get here
	remember bool
}

// The bounds of the commands waiting for their devices' sessions; more
// are answered busy.
const (
	maxQueuedCommands       = 1024 // over all devices
	maxQueuedDeviceCommands = 32   // for one device
)

// commandQueue holds the commands waiting for their devices' sessions. A
// device with commands waiting has a goroutine of its own that hands them
// over one at a time, in order, and ends when none is left: a session slow
// to take a command (busy with a message of its own, or its plugin
// stalled) holds up that device's commands only.
type commandQueue struct {
	mu       sync.Mutex
	ctx      context.Context // the bridge's, from Start
	deliver  func(pendingCommand)
	byDevice map[string][]pendingCommand // a device is here while its goroutine runs
	queued   int
	closed   bool
	running  sync.WaitGroup
}

// start lets commands in, for deliver; they are dropped once ctx ends.
func (q *commandQueue) start(ctx context.Context, deliver func(pendingCommand)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ctx, q.deliver = ctx, deliver
	q.byDevice = make(map[string][]pendingCommand)
}

// add queues p behind its device's other commands. It returns
// why it did not: the result to publish instead. Once the bridge is
// stopping, commands are dropped, as its sessions are ending.
func (q *commandQueue) add(p pendingCommand) (refused string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	device := p.cmd.Device
	waiting, running := q.byDevice[device]
	switch {
	case q.ctx == nil || q.closed:
		return ""
	case len(waiting) >= maxQueuedDeviceCommands:
		return "busy: too many commands waiting for this device"
	case q.queued >= maxQueuedCommands:
		return "busy: too many commands waiting for their devices"
	}
	q.byDevice[device] = append(waiting, p)
	q.queued++
	if !running {
		q.running.Add(1)
		go func() {
			defer q.running.Done()
			q.drain(device)
		}()
	}
	return ""
}

// drain delivers the device's commands in order until none is left, or
// the bridge stops.
func (q *commandQueue) drain(device string) {
	for {
		q.mu.Lock()
		waiting := q.byDevice[device]
		if len(waiting) == 0 || q.ctx.Err() != nil {
			q.queued -= len(waiting)
			delete(q.byDevice, device)
			q.mu.Unlock()
			return
		}
		p := waiting[0]
		waiting[0] = pendingCommand{}
		q.byDevice[device] = waiting[1:]
		q.queued--
		q.mu.Unlock()
		q.deliver(p)
	}
}

// close refuses new commands and waits for the devices' goroutines, which
// stop after the command in hand once the bridge's context has ended.
func (q *commandQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.running.Wait()
}

func (b *Bridge) runCommand(p pendingCommand) {
	cmd := p.cmd
	err := b.commander.Command(cmd)
	if err != nil && p.remember {
		b.recent.forget(cmd.Device, cmd.ID) // not delivered: the same id may come again
	}
	gone := errors.Is(err, protocols.ErrDeviceOffline) || errors.Is(err, protocols.ErrClosed)
	if owner, held := b.owners.Owner(cmd.Device); gone && held && owner.Gateway != b.cfg.GatewayID && p.remember &&
		p.hops < maxHops {
		// The session here ended (or is closing) because the device moved
		// while the command waited for it: the command follows the device
		// (if its id is known to the other gateway: without a share group
		// the other gateway may have it too, and it may be in the release
		// that went ahead of it).
		b.send(owner.Gateway, cmd, p.hops+1, true)
		return
	}
	switch {
	case err == nil:
		b.commands.Add(1)
	case errors.Is(err, protocols.ErrDeviceOffline):
		// Its session here has ended; the offline status is on its way.
		if b.cfg.OfflineResults {
			b.publishResult(cmd, "offline")
		}
	default:
		b.commandsFailed.Add(1)
		b.publishResult(cmd, err.Error())
	}
}

// forward sends cmd to the inbox of the gateway that holds its device.
func (b *Bridge) forward(to string, cmd protocols.Command, hops int) {
	b.send(to, cmd, hops, false)
}

// send forwards cmd; undelivered: this gateway took the command for the
// device and may have listed it in the device's release, but its session
// here ended before it could be delivered, so the receiver must deliver it
// unless it delivered it itself.
func (b *Bridge) send(to string, cmd protocols.Command, hops int, undelivered bool) {
	payload, err := json.Marshal(forwarded{Device: cmd.Device, Name: cmd.Name, ID: cmd.ID, Args: cmd.Args, Hops: hops,
		From: b.cfg.GatewayID, Undelivered: undelivered})
	if err != nil { // route checked the arguments
		b.log.Error("cannot encode a command to forward", "device", cmd.Device, "err", err)
		return
	}
	b.forwarded.Add(1)
	b.client.Publish(b.topics.Forward(to), 1, false, payload) // on paho's goroutine: do not wait
	b.log.Debug("command forwarded to the device's gateway", "device", cmd.Device, "command", cmd.Name, "id", cmd.ID, "gateway", to)
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

// nextCommandID names a command that came without an id: "m" and a
// counter. With a share group, commands are forwarded between gateways
// and remembered by id where they are delivered, so the id carries this
// run's tag too and stays unique across the fleet; without one, a gateway
// delivers only ids it made itself, and a hub's ids stay short.
func (b *Bridge) nextCommandID() string {
	id := "m" + strconv.FormatUint(b.cmdSeq.Add(1), 10)
	if b.cfg.ShareGroup != "" {
		id += "-" + b.runTag
	}
	return id
}

// newRunTag returns 32 random bits in base 36.
func newRunTag() string {
	var buf [4]byte
	_, _ = rand.Read(buf[:]) // never fails (it would crash the program instead)
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(buf[:])), 36)
}

// recentCommands remembers the ids of the last commands this gateway
// delivered, per device, so that a command that comes again (its sender
// published it twice, a forward was repeated, or the device's previous
// gateway delivered it) is delivered once. It is bounded by count rather
// than time: the last recentSize commands. It is safe for concurrent use.
type recentCommands struct {
	mu sync.Mutex
	// keys: true for an id another gateway's release listed (delivered
	// there), false for one delivered here.
	keys  map[string]bool
	order []string // a ring of the keys, oldest at next
	next  int
}

const recentSize = 1 << 14

// newRecentCommands returns an empty memory that grows as commands come: a
// hub that gets a few commands an hour should not hold the room for
// recentSize of them (about 850 KiB) from the start.
func newRecentCommands() *recentCommands {
	return &recentCommands{keys: make(map[string]bool)}
}

func recentKey(device, id string) string { return device + "\x00" + id }

// reserve adds the id unless it is there already, and reports whether it
// did: the command may go ahead.
func (r *recentCommands) reserve(device, id string) bool {
	return r.put(recentKey(device, id), false)
}

// released adds an id another gateway's release listed.
func (r *recentCommands) released(device, id string) { r.put(recentKey(device, id), true) }

func (r *recentCommands) put(k string, released bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.keys[k]; ok {
		return false
	}
	if len(r.order) < recentSize {
		r.order = append(r.order, k)
	} else {
		delete(r.keys, r.order[r.next])
		r.order[r.next] = k
		r.next = (r.next + 1) % recentSize
	}
	r.keys[k] = released
	return true
}

// forget drops an id whose command was not delivered here after all. Its
// slot in the ring stays until overwritten.
func (r *recentCommands) forget(device, id string) {
	r.mu.Lock()
	delete(r.keys, recentKey(device, id))
	r.mu.Unlock()
}

// forgetReleased drops an id only if a release put it there: its sender
// could not deliver the command after all. An id delivered here stays.
func (r *recentCommands) forgetReleased(device, id string) {
	k := recentKey(device, id)
	r.mu.Lock()
	if r.keys[k] {
		delete(r.keys, k)
	}
	r.mu.Unlock()
}

// of returns the ids of device's last commands, at most limit, newest
// first. It walks the whole ring: it runs once per device handed over.
func (r *recentCommands) of(device string, limit int) []string {
	prefix := device + "\x00"
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for i := range len(r.order) {
		// From the newest back: next-1, next-2, ... around the ring.
		k := r.order[(r.next-1-i+2*len(r.order))%len(r.order)]
		if _, live := r.keys[k]; !live {
			continue // forgotten
		}
		if id, ok := strings.CutPrefix(k, prefix); ok {
			ids = append(ids, id)
			if len(ids) == limit {
				break
			}
		}
	}
	return ids
}
