package mqttbridge

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/wsgate/wsgate/protocols"
)

// Downlink: a command published on {prefix}/{device}/cmd/{name} (or
// .../cmd/{name}/{id}, with the sender's id) is delivered by the gateway
// whose claim on the device is the latest one (package ownership), and by
// no other. Every gateway reads the claims in the broker's order, the same
// order it reads the commands in, so the gateways agree on who delivers
// each command, and the switch from one to the next falls between two
// commands.
//
// With mqtt.share_group the gateways take the commands through one shared
// subscription, so each command reaches one gateway; that one delivers it
// if it holds the device, and otherwise forwards it to the inbox of the
// gateway that does ({prefix}/$gateway/{id}/forward), which does the same,
// at most maxHops times. Without a share group (brokers without shared
// subscriptions) every gateway subscribes to the commands of the devices it
// holds, and, during a move, only the latest claim's gateway delivers.
//
// The gateway that delivers a command remembers its id (recentCommands),
// so a command sent again with the same id is not delivered twice.

// forwarded is a command on its way to the gateway that holds its device.
type forwarded struct {
	Device string          `json:"device"`
	Name   string          `json:"name"`
	ID     string          `json:"id"`
	Args   json.RawMessage `json:"args,omitempty"`
	Hops   int             `json:"hops"`
	From   string          `json:"from"`
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
	b.route(cmd, 0)
}

// onForward takes a command another gateway forwarded to this one.
func (b *Bridge) onForward(payload []byte) {
	var f forwarded
	if json.Unmarshal(payload, &f) != nil || !protocols.ValidDeviceID(f.Device) || validateLevel(f.Name) != nil ||
		f.ID == "" || len(f.ID) > maxCommandID || f.Hops < 1 || f.Hops > maxHops {
		b.log.Warn("malformed forwarded command ignored", "payload_bytes", len(payload))
		return
	}
	b.route(protocols.Command{Device: f.Device, ID: f.ID, Name: f.Name, Args: f.Args}, f.Hops)
}

// route delivers cmd, forwards it, or leaves it to the gateway that holds
// its device. It runs on paho's goroutine and never waits.
func (b *Bridge) route(cmd protocols.Command, hops int) {
	owner, held := b.owners.Owner(cmd.Device)
	switch {
	case held && owner.Gateway == b.cfg.GatewayID:
		b.deliverCommand(cmd)
	case held && b.cfg.ShareGroup != "":
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
	case held:
		// Its gateway takes the command from its own subscription.
	case b.cfg.OfflineResults && (b.cfg.ShareGroup != "" || b.owners.Leader() == b.cfg.GatewayID):
		// Nobody holds the device. With a share group this gateway is the
		// only one that got the command; without, the leader answers.
		b.publishResult(cmd, "offline")
	}
}

// deliverCommand hands cmd to the device's session here.
func (b *Bridge) deliverCommand(cmd protocols.Command) {
	if len(cmd.Args) > 0 && !json.Valid(cmd.Args) {
		b.commandsFailed.Add(1)
		b.publishResult(cmd, "bad-request: the payload must be JSON")
		return
	}
	if b.recent.has(cmd.Device, cmd.ID) {
		b.duplicates.Add(1)
		b.log.Debug("command delivered before; not again", "device", cmd.Device, "command", cmd.Name, "id", cmd.ID)
		return
	}
	err := b.commander.Command(cmd)
	switch {
	case err == nil:
		b.recent.add(cmd.Device, cmd.ID)
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
	payload, err := json.Marshal(forwarded{Device: cmd.Device, Name: cmd.Name, ID: cmd.ID, Args: cmd.Args, Hops: hops, From: b.cfg.GatewayID})
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
// published it twice, or a forward was repeated) is delivered once. It is
// bounded by count rather than time: the last recentSize commands.
type recentCommands struct {
	keys  map[string]struct{}
	order []string // a ring of the keys, oldest at next
	next  int
}

const recentSize = 1 << 14

func newRecentCommands() *recentCommands {
	return &recentCommands{keys: make(map[string]struct{}, recentSize)}
}

func recentKey(device, id string) string { return device + "\x00" + id }

// has and add run on paho's goroutine only.
func (r *recentCommands) has(device, id string) bool {
	_, ok := r.keys[recentKey(device, id)]
	return ok
}

func (r *recentCommands) add(device, id string) {
	k := recentKey(device, id)
	if _, ok := r.keys[k]; ok {
		return
	}
	if len(r.order) < recentSize {
		r.order = append(r.order, k)
	} else {
		delete(r.keys, r.order[r.next])
		r.order[r.next] = k
		r.next = (r.next + 1) % recentSize
	}
	r.keys[k] = struct{}{}
}
