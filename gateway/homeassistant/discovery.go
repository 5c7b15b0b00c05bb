package homeassistant

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// Mode is how configurations are published.
type Mode string

const (
	// ModeDevice publishes one configuration per device, on
	// <prefix>/device/<node>/<device>/config (Home Assistant 2024.11 and
	// later).
	ModeDevice Mode = "device"
	// ModeComponent publishes one configuration per entity, on
	// <prefix>/<platform>/<node>/<device>_<key>/config (every version).
	ModeComponent Mode = "component"
)

// Topics are the gateway's topics the configurations point at; the MQTT
// bridge's Topics are.
type Topics interface {
	Status(device string) string
	GatewayStatus() string
	Uplink(device, channel string) (string, error)
	Command(device, name string) string
}

// Broker is the connection the configurations go through: the MQTT bridge.
type Broker interface {
	// Publish publishes at QoS 1 and waits for the broker to take it.
	Publish(ctx context.Context, topic string, payload []byte, retain bool) error
	// Subscribe subscribes on every connection; handle must not block.
	Subscribe(filter string, handle func(topic string, payload []byte))
	// OnConnect runs f after every connection; f must not block.
	OnConnect(f func())
	// Connected reports whether the broker is connected now.
	Connected() bool
}

// Options configure discovery.
type Options struct {
	// Prefix is Home Assistant's discovery prefix, "homeassistant".
	Prefix string
	// StatusTopic is where Home Assistant says "online" when it starts
	// (its birth message): every announcement is published again then.
	StatusTopic string
	Mode        Mode
	// Namespace is the gateway's topic prefix: device identifiers are
	// Namespace/id, and the discovery nodes are named after it.
	Namespace string
	GatewayID string
	Version   string // the origin's sw_version
	// Locals are the gateway's local devices with what they describe:
	// announced on every connection whether they run or not, and cleared
	// from the broker once the configuration no longer has them.
	Locals map[string]*protocols.Description
	Log    *slog.Logger
}

// Errors of Remove.
var (
	ErrConnected = errors.New("the device is connected and describes entities: it would be announced again")
	ErrLocal     = errors.New("the device is a local device of the configuration: remove its [[devices]] entry and restart")
	ErrUnknown   = errors.New("no announcement of the device is known")
)

// migrateMarker asks Home Assistant to keep an entity whose configuration
// moves to a topic of the other discovery mode (its documented migration:
// the marker on the old topic, the new configuration, then the old topic
// cleared).
var migrateMarker = []byte(`{"migrate_discovery":true}`)

// retryDelay is the pause before publishing what failed again while the
// broker stays connected (a disconnection retries on the next connection).
const retryDelay = 5 * time.Second

// Discovery announces devices to Home Assistant. It is a router.Watcher;
// one goroutine, from Start to Close, publishes.
type Discovery struct {
	b      builder
	opts   Options
	broker Broker
	log    *slog.Logger

	mu sync.Mutex
	// attached holds the network devices attached here that describe
	// entities, with their descriptions.
	attached   map[string]*protocols.Description
	dirty      map[string]bool               // devices whose announcement may differ from the broker's
	check      map[string]bool               // retained topics to look at
	stale      map[string]bool               // retained topics to clear
	retained   map[string]retained           // what the broker holds under the gateway's nodes, by topic
	byDevice   map[announcer]map[string]bool // the topics of retained, by the device they announce
	everything bool                          // publish every announcement again
	// connected is set by the broker's connect hook and cleared when a
	// publish fails on a lost connection: nothing is published between a
	// connection and its hook (the subscriptions are not renewed yet).
	connected bool
	wake      chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// announcer is a device under one of the gateway's nodes.
type announcer struct {
	device string
	local  bool
}

// retained is a configuration the broker holds under one of the gateway's
// nodes.
type retained struct {
	device string // the device it announces; "" when it names none of ours
	local  bool   // under the node of this gateway's local devices
	mode   Mode   // the discovery mode of its topic
	// entities are the entity keys it holds, with their platforms; a
	// device configuration's removal stubs have "".
	entities map[string]string
	hash     [sha256.Size]byte
	marker   bool // a migration marker
}

// New prepares discovery; Start runs it. It subscribes through broker at
// once, so call it before the broker connects.
func New(opts Options, topics Topics, broker Broker) *Discovery {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	network := objectID(opts.Namespace)
	d := &Discovery{
		b: builder{
			prefix: opts.Prefix, mode: opts.Mode, namespace: opts.Namespace, version: opts.Version, topics: topics,
			network: network, local: network + "_" + objectID(opts.GatewayID),
		},
		opts: opts, broker: broker, log: log.With("component", "homeassistant"),
		attached: map[string]*protocols.Description{}, dirty: map[string]bool{}, check: map[string]bool{},
		stale: map[string]bool{}, retained: map[string]retained{}, byDevice: map[announcer]map[string]bool{},
		wake: make(chan struct{}, 1),
	}
	// Both modes' topics: configurations left in the other mode are
	// migrated, or cleared.
	for _, node := range []string{d.b.network, d.b.local} {
		broker.Subscribe(opts.Prefix+"/+/"+node+"/+/config", d.onRetained)
	}
	broker.Subscribe(opts.StatusTopic, d.onStatus)
	broker.OnConnect(d.onConnect)
	return d
}

// Start runs the publisher until Close.
func (d *Discovery) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go func() { defer close(d.done); d.run(ctx) }()
}

// Close stops the publisher and waits for it. What the broker holds stays:
// devices show unavailable through their status topics.
func (d *Discovery) Close() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
	}
}

var _ router.Watcher = (*Discovery)(nil)

// Attached implements router.Watcher: a network device that describes
// entities is announced (again, when what it describes changed).
func (d *Discovery) Attached(dev router.Device) {
	if _, local := d.opts.Locals[dev.ID]; local {
		return // announced from the configuration
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if dev.Description == nil || len(dev.Description.Entities) == 0 {
		// Its announcement, if any, stays as it is; only devices that
		// describe entities are remembered (a connected device costs
		// nothing here otherwise).
		delete(d.attached, dev.ID)
		return
	}
	d.attached[dev.ID] = dev.Description
	d.dirty[dev.ID] = true
	signal(d.wake)
}

// Detached implements router.Watcher. The announcement stays: Home
// Assistant shows the device unavailable through its status topic.
func (d *Discovery) Detached(dev router.Device) {
	d.mu.Lock()
	delete(d.attached, dev.ID)
	d.mu.Unlock()
}

// republish publishes every announcement again: after each connection to
// the broker (which may have lost its retained messages) and when Home
// Assistant comes online.
func (d *Discovery) republish() {
	d.mu.Lock()
	d.everything = true
	d.mu.Unlock()
	signal(d.wake)
}

// onConnect is the broker's connect hook.
func (d *Discovery) onConnect() {
	d.mu.Lock()
	d.connected = true
	d.mu.Unlock()
	d.republish()
}

func (d *Discovery) onStatus(_ string, payload []byte) {
	if string(payload) == "online" {
		d.log.Debug("Home Assistant is online; announcing every device again")
		d.republish()
	}
}

// onRetained reads back a configuration under one of the gateway's nodes:
// ours from an earlier run or another gateway of the fleet, or our own
// publish coming back.
func (d *Discovery) onRetained(topic string, payload []byte) {
	r, ok := d.parse(topic, payload)
	if !ok {
		return
	}
	d.mu.Lock()
	if prev, ok := d.retained[topic]; ok {
		k := announcer{prev.device, prev.local}
		delete(d.byDevice[k], topic)
		if len(d.byDevice[k]) == 0 {
			delete(d.byDevice, k)
		}
	}
	if len(payload) == 0 {
		delete(d.retained, topic)
		delete(d.stale, topic)
	} else {
		d.retained[topic] = r
		k := announcer{r.device, r.local}
		if d.byDevice[k] == nil {
			d.byDevice[k] = map[string]bool{}
		}
		d.byDevice[k][topic] = true
		d.check[topic] = true
	}
	d.mu.Unlock()
	signal(d.wake)
}

// parse reads a retained configuration; ok is false for topics outside
// the gateway's nodes.
func (d *Discovery) parse(topic string, payload []byte) (r retained, ok bool) {
	rest, ok := strings.CutPrefix(topic, d.b.prefix+"/")
	if !ok {
		return r, false
	}
	levels := strings.Split(rest, "/")
	if len(levels) != 4 || levels[3] != "config" {
		return r, false
	}
	platform, node := levels[0], levels[1]
	switch node {
	case d.b.network:
	case d.b.local:
		r.local = true
	default:
		return r, false
	}
	r.mode, r.hash = ModeComponent, sha256.Sum256(payload)
	if platform == "device" {
		r.mode = ModeDevice
	}
	var p struct {
		Device struct {
			Identifiers []string `json:"identifiers"`
		} `json:"device"`
		UniqueID   string                                `json:"unique_id"`
		Components map[string]map[string]json.RawMessage `json:"components"`
		Migrate    bool                                  `json:"migrate_discovery"`
	}
	if len(payload) == 0 || json.Unmarshal(payload, &p) != nil {
		return r, true
	}
	r.marker = p.Migrate
	if len(p.Device.Identifiers) > 0 {
		r.device, _ = d.b.deviceOf(p.Device.Identifiers[0])
	}
	r.entities = map[string]string{}
	if r.mode == ModeDevice {
		for key, c := range p.Components {
			var platform string
			if len(c) > 1 { // more than the platform: not a removal stub
				_ = json.Unmarshal(c["platform"], &platform)
			}
			r.entities[key] = platform
		}
	} else if i := strings.LastIndexByte(p.UniqueID, '/'); i >= 0 {
		r.entities[p.UniqueID[i+1:]] = platform
	}
	return r, true
}

// run publishes what changed whenever something did.
func (d *Discovery) run(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-retry.C:
		}
		if ctx.Err() != nil {
			return // select picks at random among what is ready
		}
		if err := d.publishChanges(ctx); err != nil && ctx.Err() == nil {
			if !d.broker.Connected() {
				continue // the next connection publishes everything
			}
			d.log.Warn("Home Assistant discovery not published; trying again", "err", err, "in", retryDelay)
			retry.Reset(retryDelay)
		}
	}
}

// publishChanges publishes the announcements that may have changed and
// clears what is stale. What fails is kept for the next round.
func (d *Discovery) publishChanges(ctx context.Context) error {
	d.mu.Lock()
	if !d.connected {
		d.mu.Unlock()
		return nil // everything is published on the next connection
	}
	force := d.everything
	devices := d.dirty
	d.everything, d.dirty = false, map[string]bool{}
	if force {
		for id := range d.opts.Locals {
			devices[id] = true
		}
		for id := range d.attached {
			devices[id] = true
		}
	}
	for topic := range d.check {
		r, ok := d.retained[topic]
		switch {
		case !ok:
		case d.wanted(r.device, r.local):
			devices[r.device] = true // publishDevice looks at what differs
		case r.local:
			// Under this gateway's own node: a local device no longer
			// configured, or what a migration left.
			d.stale[topic] = true
		}
		// A network device not announced here may be another gateway's,
		// or merely offline: its configuration stays.
	}
	d.check = map[string]bool{}
	stale := slices.Sorted(maps.Keys(d.stale))
	d.mu.Unlock()

	var failed error
	for _, id := range slices.Sorted(maps.Keys(devices)) {
		if err := d.publishDevice(ctx, id, force); err != nil {
			// The broker is likely gone: everything goes again once it is
			// back (or after retryDelay).
			d.mu.Lock()
			d.everything = true
			d.connected = d.connected && d.broker.Connected()
			d.mu.Unlock()
			failed = err
			break
		}
	}
	for _, topic := range stale {
		if failed != nil {
			break
		}
		if err := d.broker.Publish(ctx, topic, nil, true); err != nil {
			d.mu.Lock()
			d.connected = d.connected && d.broker.Connected()
			d.mu.Unlock()
			failed = err
			break
		}
		d.log.Info("cleared a Home Assistant configuration no longer wanted", "topic", topic)
		d.mu.Lock()
		delete(d.stale, topic)
		d.mu.Unlock()
	}
	return failed
}

// wanted reports whether device id is announced by this gateway under the
// node local says; d.mu is held.
func (d *Discovery) wanted(id string, local bool) bool {
	if id == "" {
		return false
	}
	desc, isLocal := d.description(id)
	return local == isLocal && desc != nil && len(desc.Entities) > 0
}

// description is what device id is announced with, nil when nothing;
// d.mu is held.
func (d *Discovery) description(id string) (desc *protocols.Description, local bool) {
	if desc, ok := d.opts.Locals[id]; ok {
		return desc, true
	}
	return d.attached[id], false
}

// publishDevice brings the broker's configurations of one device to its
// announcement: the configurations that differ (all of them when force),
// entities it no longer has removed, configurations in the other mode
// migrated.
func (d *Discovery) publishDevice(ctx context.Context, id string, force bool) error {
	d.mu.Lock()
	desc, local := d.description(id)
	if desc == nil || len(desc.Entities) == 0 {
		d.mu.Unlock()
		return nil
	}
	var prev map[string]string
	var old []string  // configurations of the other mode, migrated
	var gone []string // configurations of entities it no longer has
	held := map[string][sha256.Size]byte{}
	markers := map[string]bool{}
	for topic := range d.b.topicsOf(id, local, desc) {
		if d.retained[topic].marker {
			// Left by a migration that did not finish: cleared below.
			old, markers[topic] = append(old, topic), true
		}
	}
	for topic := range d.byDevice[announcer{id, local}] {
		r := d.retained[topic]
		if r.marker {
			continue
		}
		held[topic] = r.hash
		switch {
		case r.mode != d.b.mode:
			old = append(old, topic)
		case r.mode == ModeDevice:
			prev = r.entities
		default:
			gone = append(gone, topic) // unless announced below
		}
	}
	a, skipped := d.b.announce(id, local, desc, prev)
	d.mu.Unlock()

	for _, err := range skipped {
		d.log.Warn("entity not announced to Home Assistant", "device", id, "err", err)
	}
	for _, m := range a.messages { // a marker there is simply overwritten
		old = slices.DeleteFunc(old, func(t string) bool { return t == m.topic })
	}
	slices.Sort(old)
	for _, topic := range old {
		if markers[topic] {
			continue
		}
		if err := d.broker.Publish(ctx, topic, migrateMarker, true); err != nil {
			return err
		}
	}
	// After a migration marker the configurations go again, even those
	// published before the broker's copy of the old ones came back: Home
	// Assistant takes over the entities only from configurations that
	// follow the marker.
	force = force || len(old) > 0
	changed := false
	for _, m := range a.messages {
		gone = slices.DeleteFunc(gone, func(t string) bool { return t == m.topic })
		if h, ok := held[m.topic]; ok && h == sha256.Sum256(m.payload) && !force {
			continue
		}
		if err := d.broker.Publish(ctx, m.topic, m.payload, true); err != nil {
			return err
		}
		changed = changed || held[m.topic] != sha256.Sum256(m.payload)
	}
	slices.Sort(gone)
	for _, topic := range append(old, gone...) {
		if err := d.broker.Publish(ctx, topic, nil, true); err != nil {
			return err
		}
	}
	switch {
	case changed || len(old) > 0 || len(gone) > 0:
		d.log.Info("device announced to Home Assistant", "device", id, "entities", len(a.entities), "topics", len(a.messages))
	case force:
		d.log.Debug("device announced to Home Assistant again", "device", id)
	}
	return nil
}

// Remove clears every configuration that announces device id, which
// removes the device from Home Assistant. A device connected with
// entities, or a local device of the configuration, is refused: it would
// be announced again. It returns the topics cleared.
func (d *Discovery) Remove(ctx context.Context, id string) ([]string, error) {
	d.mu.Lock()
	var topics []string
	_, local := d.opts.Locals[id]
	_, connected := d.attached[id]
	for topic := range d.byDevice[announcer{id, false}] {
		topics = append(topics, topic)
	}
	d.mu.Unlock()
	switch {
	case local:
		return nil, fmt.Errorf("%s: %w", id, ErrLocal)
	case connected:
		return nil, fmt.Errorf("%s: %w", id, ErrConnected)
	case len(topics) == 0:
		return nil, fmt.Errorf("%s: %w", id, ErrUnknown)
	}
	slices.Sort(topics)
	for _, topic := range topics {
		if err := d.broker.Publish(ctx, topic, nil, true); err != nil {
			return nil, err
		}
	}
	d.log.Info("device removed from Home Assistant", "device", id, "topics", len(topics))
	return topics, nil
}

// Announced is a device whose configuration the broker holds under the
// gateway's nodes.
type Announced struct {
	Device   string            `json:"device"`
	Local    bool              `json:"local"`
	Entities map[string]string `json:"entities"` // key -> platform
	Topics   []string          `json:"topics"`
}

// Announcements lists the devices the broker holds configurations of,
// under the gateway's nodes, sorted by device.
func (d *Discovery) Announcements() []Announced {
	d.mu.Lock()
	defer d.mu.Unlock()
	byDevice := map[[2]string]*Announced{}
	for topic, r := range d.retained {
		if r.device == "" || r.marker {
			continue
		}
		key := [2]string{r.device, fmt.Sprint(r.local)}
		a := byDevice[key]
		if a == nil {
			a = &Announced{Device: r.device, Local: r.local, Entities: map[string]string{}}
			byDevice[key] = a
		}
		a.Topics = append(a.Topics, topic)
		for k, p := range r.entities {
			if p != "" {
				a.Entities[k] = p
			}
		}
	}
	list := make([]Announced, 0, len(byDevice))
	for _, a := range byDevice {
		slices.Sort(a.Topics)
		list = append(list, *a)
	}
	slices.SortFunc(list, func(a, b Announced) int {
		return strings.Compare(a.Device+fmt.Sprint(a.Local), b.Device+fmt.Sprint(b.Local))
	})
	return list
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
