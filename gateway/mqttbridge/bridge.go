package mqttbridge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/wsgate/wsgate/gateway/ownership"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/spool"
	"github.com/wsgate/wsgate/protocols"
)

// Config configures the bridge.
type Config struct {
	URL string // tcp://, ssl://, ws://, wss://
	// FallbackURLs are other nodes of the same broker cluster, tried in
	// order when URL cannot be reached.
	FallbackURLs   []string
	ClientID       string
	Username       string
	Password       string
	TLS            *tls.Config
	KeepAlive      time.Duration
	ConnectTimeout time.Duration
	ReconnectMin   time.Duration // first delay after a failed connect
	ReconnectMax   time.Duration // the delay doubles up to this, with jitter
	PublishTimeout time.Duration // a PUBACK not seen by then spools the frame
	GatewayID      string
	Topics         Topics
	Queue          int // QoS 1+ frames waiting for the publisher
	// QueueWait is how long Deliver waits for room in a full queue before
	// it refuses with protocols.ErrBusy; 0 refuses at once.
	QueueWait      time.Duration
	MaxInflight    int  // QoS 1+ publishes awaiting their PUBACK
	OfflineResults bool // answer commands to absent devices with "offline"
	// CommandQoS is the QoS of the per-device command subscriptions (and
	// of the one to all commands, for OfflineResults): 1, or 0 for brokers
	// where a QoS 1 subscription is costly (NATS: a JetStream consumer).
	CommandQoS byte
	// ShareGroup, when set, takes the commands of all devices through the
	// shared subscription $share/{ShareGroup}/{prefix}/+/cmd/#, each to one
	// gateway of the fleet, which forwards it to the gateway holding the
	// device. Empty: each gateway subscribes to its own devices' commands.
	ShareGroup string
	Version    string
	// Clock dates statuses; nil means time.Now. Which session of a device
	// wins never depends on it.
	Clock func() time.Time
	// QoS0Connections is how many broker connections carry QoS 0 uplink
	// frames, the main one included (lanes.go); 0 or 1: the main one.
	QoS0Connections int
	// GatewayCommands, when set, takes the commands published to
	// {prefix}/$gateway/{id}/cmd/{name} (a protocol's pairing commands,
	// for one).
	GatewayCommands GatewayCommander
}

// GatewayCommander runs commands addressed to the gateway itself. It is
// called on the MQTT client's goroutine and must return promptly; the
// result's data is published as JSON.
type GatewayCommander interface {
	GatewayCommand(name string, args json.RawMessage) (data any, err error)
}

// Commander delivers commands to attached devices; the router is one.
type Commander interface {
	Command(protocols.Command) error
	// Evict closes the device's session if it is still the one named,
	// and reports whether it was.
	Evict(device, session, reason string) bool
	Attached(device string) (router.Device, bool)
}

// Stats are the bridge's counters, read with Stats.
type Stats struct {
	Published      uint64 // frames confirmed by the broker (direct)
	Spooled        uint64 // frames written to the spool
	Replayed       uint64 // spooled frames confirmed by the broker
	SpoolRejected  uint64 // frames refused because the spool was full
	SpoolDropped   uint64 // spooled frames discarded by drop-oldest
	SpoolRecords   int
	SpoolBytes     int64
	QoS0Dropped    uint64 // QoS 0 frames dropped while disconnected
	QoS0Lanes      int    // extra connections for QoS 0 frames that are open
	Busy           uint64 // frames refused because the queue was full
	Commands       uint64 // commands handed to devices
	CommandsFailed uint64
	Forwarded      uint64 // commands forwarded to the gateway holding the device
	Duplicates     uint64 // commands not delivered again (an id seen before)
	Takeovers      uint64 // sessions closed because the device connected through another gateway
	Connected      bool
	// Synced: connected, subscribed, and the statuses other gateways
	// published before are known; only then are devices claimed.
	Synced bool
	// PresencePending counts the devices whose status or command
	// subscription the broker does not have yet.
	PresencePending int
	// Spooling: frames go to the spool, not to the broker (it is out of
	// reach, or the spool has not drained since it came back).
	Spooling bool
}

type queued struct {
	frame protocols.Frame
	topic string
}

// item is a QoS 1+ frame in the ordered pipeline between publisher and
// acker: published with a token, or bound for the spool (token nil).
type item struct {
	queued
	token    mqtt.Token
	deadline time.Time // PUBACK expected by then; PublishTimeout after the publish
}

// Bridge is the MQTT side of the gateway.
type Bridge struct {
	cfg    Config
	topics Topics
	log    *slog.Logger
	client mqtt.Client
	spool  *spool.Spool
	// conn is the broker connection paho opened last, for QoS 0 frames;
	// nil for the schemes paho opens itself.
	conn atomic.Pointer[coalescingConn]
	// lanes carry QoS 0 frames beside conn (QoS0Connections).
	lanes    []*lane
	laneSeed maphash.Seed
	// dialed is the broker URL openConn dialled last (of URL and
	// FallbackURLs); nil for the schemes paho opens itself.
	dialed atomic.Value

	inMu   sync.RWMutex
	in     chan queued
	closed bool

	pipeline chan item

	// modeMu orders the switch between direct publishing and spooling:
	// while spooling (or while frames decided for the spool are not yet in
	// it) every QoS 1+ frame goes to the spool, behind those before it.
	modeMu     sync.Mutex
	spooling   bool
	spoolBound int

	replayWake  chan struct{}
	controlWake chan struct{}
	lost        chan struct{}
	connected   chan struct{} // signalled by the OnConnect handler

	commander Commander
	// extra are the subscriptions, and connectHooks the hooks, of other
	// parts of the gateway (Home Assistant discovery); both are set
	// before Start.
	extra        map[string]byte
	connectHooks []func()
	creds        atomic.Pointer[[2]string] // username, password
	presence     presenceTable
	owners       *ownership.Table
	// synced is set once the retained statuses of this connection are in
	// (awaitSync): only then are devices claimed.
	synced atomic.Bool
	// subscriptions are this connection's filters (statuses, commands,
	// inbox, others' extras); subscribed is set once the broker took them.
	subscriptions map[string]byte // control loop only
	subscribed    atomic.Bool
	syncNonce     atomic.Uint64
	syncCh        chan uint64
	sweepWanted   atomic.Bool
	stopping      atomic.Bool // Close has begun: the offline status is ours
	recent        *recentCommands
	handoffs      handoffs
	commandQueue  commandQueue
	cmdSeq        atomic.Uint64
	runTag        string

	published, spooled, replayed, rejected, qos0Dropped, busy, commands, commandsFailed atomic.Uint64
	forwarded, duplicates, takeovers                                                    atomic.Uint64

	cancel  context.CancelFunc
	workers sync.WaitGroup // connect, replay, control loops
	// connecting is the connection attempt connectLoop left in flight when
	// it stopped; Close reads it after workers.Wait.
	connecting mqtt.Token
	drain      sync.WaitGroup // publisher and acker
}

// New prepares a bridge that spools to sp. Start connects it.
func New(cfg Config, sp *spool.Spool, log *slog.Logger) *Bridge {
	if cfg.Queue <= 0 {
		cfg.Queue = 4096
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 1024
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second // paho waits forever for a CONNACK without one
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 30 * time.Second
	}
	if cfg.ReconnectMin <= 0 {
		cfg.ReconnectMin = time.Second
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = cfg.ReconnectMin
	}
	b := &Bridge{
		cfg:         cfg,
		topics:      cfg.Topics,
		log:         log.With("component", "mqtt"),
		spool:       sp,
		in:          make(chan queued, cfg.Queue),
		pipeline:    make(chan item, cfg.MaxInflight),
		replayWake:  make(chan struct{}, 1),
		controlWake: make(chan struct{}, 1),
		lost:        make(chan struct{}, 1),
		connected:   make(chan struct{}, 1),
		presence:    presenceTable{devices: make(map[string]*presenceEntry)},
		owners:      ownership.New(cfg.GatewayID, cfg.Clock),
		syncCh:      make(chan uint64, 1),
		recent:      newRecentCommands(),
		handoffs:    newHandoffs(),
		runTag:      newRunTag(),
	}
	b.spooling = sp.Len() > 0
	b.SetCredentials(cfg.Username, cfg.Password)
	b.client = mqtt.NewClient(b.clientOptions())
	b.laneSeed = maphash.MakeSeed()
	for k := 1; k < cfg.QoS0Connections; k++ {
		b.lanes = append(b.lanes, b.newLane(k))
	}
	return b
}

// SetCredentials changes the username and password the bridge connects
// with; they are used from the next connection to the broker on.
func (b *Bridge) SetCredentials(username, password string) {
	b.creds.Store(&[2]string{username, password})
}

func (b *Bridge) credentials() (username, password string) {
	c := b.creds.Load()
	return c[0], c[1]
}

// clientOptions sets every paho option deliberately; docs/MQTT.md explains
// the choices.
func (b *Bridge) clientOptions() *mqtt.ClientOptions {
	c := b.cfg
	will, _ := json.Marshal(gatewayStatus{State: "offline", Gateway: c.GatewayID})
	opts := mqtt.NewClientOptions()
	if u, err := url.Parse(c.URL); err == nil && coalesces(u.Scheme) {
		opts.SetCustomOpenConnectionFn(b.openConn)
	}
	// paho tries the brokers in this order at every connection attempt.
	for _, u := range append([]string{c.URL}, c.FallbackURLs...) {
		opts.AddBroker(u)
	}
	return opts.
		SetClientID(c.ClientID).
		// Read at every connect, so that SetCredentials (a reload) takes
		// effect at the next connection without dropping this one.
		SetCredentialsProvider(b.credentials).
		SetTLSConfig(c.TLS).
		// A clean session: uplink durability comes from the spool, and
		// in-flight publishes must fail on connection loss (paho completes
		// their tokens) so they can be spooled in order. Subscriptions are
		// renewed on every connect.
		SetCleanSession(true).
		// Our handler never blocks (commands are queued to devices), so
		// commands keep their order without stalling the client.
		SetOrderMatters(true).
		SetKeepAlive(c.KeepAlive).
		SetPingTimeout(10*time.Second).
		SetConnectTimeout(c.ConnectTimeout).
		SetWriteTimeout(10*time.Second).
		// paho's own reconnect has no jitter; connectLoop reconnects with
		// full jitter so a fleet does not stampede a recovering broker.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetBinaryWill(b.topics.GatewayStatus(), will, 1, true).
		SetDefaultPublishHandler(b.onMessage).
		SetOnConnectHandler(func(mqtt.Client) { signal(b.connected) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			b.synced.Store(false)
			b.log.Warn("broker connection lost", "err", err)
			signal(b.lost)
		})
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Start connects to the broker in the background and starts the workers.
// Frames are accepted (and spooled) even before the first connection.
func (b *Bridge) Start(commander Commander) {
	b.commander = commander
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.commandQueue.start(ctx, b.runCommand)
	b.workers.Add(3 + len(b.lanes))
	for _, l := range b.lanes {
		go func() { defer b.workers.Done(); b.runLane(ctx, l) }()
	}
	go func() { defer b.workers.Done(); b.connectLoop(ctx) }()
	go func() { defer b.workers.Done(); b.replayLoop(ctx) }()
	go func() { defer b.workers.Done(); b.controlLoop(ctx) }()
	b.drain.Add(2)
	go func() { defer b.drain.Done(); b.publishLoop() }()
	go func() { defer b.drain.Done(); b.ackLoop() }()
	if b.spool.Len() > 0 {
		b.log.Info("spool holds frames from before; they go first", "frames", b.spool.Len())
	}
}

// Close stops taking frames, settles every accepted frame (broker or
// spool), publishes the final statuses and disconnects. ctx bounds the wait
// for the broker; frames are never dropped by Close.
func (b *Bridge) Close(ctx context.Context) error {
	b.inMu.Lock()
	if b.closed {
		b.inMu.Unlock()
		return nil
	}
	b.closed = true
	b.stopping.Store(true)
	close(b.in)
	b.inMu.Unlock()
	b.drain.Wait() // publisher and acker have settled every frame

	if b.client.IsConnectionOpen() {
		b.reconcile(ctx, false)
		payload, _ := json.Marshal(gatewayStatus{State: "offline", Gateway: b.cfg.GatewayID, Since: b.now()})
		b.wait(ctx, b.client.Publish(b.topics.GatewayStatus(), 1, true, payload))
	}
	b.cancel()
	b.commandQueue.close()
	b.workers.Wait()
	if b.connecting != nil {
		// paho cannot abandon a connection attempt: let it end (within
		// ConnectTimeout, or ctx) so that Disconnect leaves nothing behind.
		select {
		case <-b.connecting.Done():
		case <-ctx.Done():
		}
	}
	b.client.Disconnect(250)
	for _, l := range b.lanes {
		l.close(ctx)
	}
	return nil
}

// Subscribe makes the bridge subscribe to filter, at QoS 1, on every
// connection to the broker, and hand each message on it to handle instead
// of taking it as a command. handle runs on the MQTT client's goroutine
// and must return promptly. The filter must not overlap the bridge's own
// ({prefix}/...). Call it before Start.
func (b *Bridge) Subscribe(filter string, handle func(topic string, payload []byte)) {
	if b.extra == nil {
		b.extra = map[string]byte{}
	}
	b.extra[filter] = 1
	b.client.AddRoute(filter, func(_ mqtt.Client, m mqtt.Message) { handle(m.Topic(), m.Payload()) })
}

// OnConnect registers f to run after every connection to the broker, once
// the subscriptions are renewed. f runs on the bridge's control goroutine
// and must return promptly. Call it before Start.
func (b *Bridge) OnConnect(f func()) { b.connectHooks = append(b.connectHooks, f) }

// Publish publishes one message at QoS 1 and waits for the broker to take
// it, within ctx and mqtt.publish_timeout. It is for state that its owner
// publishes again after a reconnect (Home Assistant discovery): nothing is
// spooled, and it fails at once while the broker is not connected.
func (b *Bridge) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	if !b.client.IsConnectionOpen() {
		return fmt.Errorf("publish %s: %w", topic, mqtt.ErrNotConnected)
	}
	if err := b.wait(ctx, b.client.Publish(topic, 1, retain, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// Connected reports whether the broker is connected.
func (b *Bridge) Connected() bool { return b.client.IsConnectionOpen() }

// Deliver implements router.Sink.
func (b *Bridge) Deliver(f protocols.Frame) error { return b.deliver(f, b.cfg.QueueWait) }

// deliver queues a frame, waiting up to wait for room: a device that
// sends faster than the broker takes is slowed down (its connection stops
// being read) before anything is refused.
func (b *Bridge) deliver(f protocols.Frame, wait time.Duration) error {
	topic, err := b.topics.Uplink(f.Device, f.Channel)
	if err != nil {
		return fmt.Errorf("%w: %w", protocols.ErrInvalidFrame, err)
	}
	if f.QoS > 2 {
		// A plugin's mistake. paho writes the PUBLISH as asked (QoS 3, or
		// other bits set), Mosquitto drops the connection over it, and the
		// frame, spooled for the failed publish, went out again at replay.
		return fmt.Errorf("%w: QoS %d (MQTT has 0, 1 and 2)", protocols.ErrInvalidFrame, f.QoS)
	}
	b.inMu.RLock()
	defer b.inMu.RUnlock()
	if b.closed {
		return protocols.ErrClosed
	}
	if f.QoS == 0 {
		b.publishAtMostOnce(topic, f)
		return nil
	}
	q := queued{frame: f, topic: topic}
	select {
	case b.in <- q:
		return nil
	default:
	}
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case b.in <- q:
			return nil
		case <-timer.C:
		}
	}
	b.busy.Add(1)
	return protocols.ErrBusy
}

// publishAtMostOnce publishes a QoS 0 frame on the caller's goroutine.
// Such a frame needs neither the spool nor paho's bookkeeping: no token to
// wait for, no order to keep with QoS 1 frames (MQTT orders messages per
// QoS level only). So on the connections the bridge opens itself it is
// encoded with paho's packet encoder and queued straight onto the
// connection, behind paho's CONNECT: paho's publish pipeline (a token, a
// timer and two goroutine hand-overs a message) was half the gateway's CPU
// at QoS 0. A connection whose buffer is full holds the device's reads
// until it drains or fails its write timeout; a frame that cannot be
// written is dropped and counted, as while the broker is unreachable.
func (b *Bridge) publishAtMostOnce(topic string, f protocols.Frame) {
	client, conn := b.client, &b.conn
	if l := b.laneOf(f.Device); l != nil && l.client.IsConnectionOpen() {
		client, conn = l.client, &l.conn
	}
	var err error
	switch cc := conn.Load(); {
	case !client.IsConnectionOpen():
		err = mqtt.ErrNotConnected
	case cc != nil:
		pub := packets.PublishPacket{
			FixedHeader: packets.FixedHeader{MessageType: packets.Publish, Retain: f.Retain},
			TopicName:   topic,
			Payload:     f.Payload,
		}
		err = pub.Write(afterConnect{cc})
	default:
		t := client.Publish(topic, 0, f.Retain, f.Payload)
		select {
		case <-t.Done(): // failed at once, or already written
			err = t.Error()
		default:
		}
	}
	if err != nil {
		b.qos0Dropped.Add(1)
	}
	if f.Ack != nil {
		f.Ack(nil)
	}
}

// publishLoop takes QoS 1+ frames in arrival order and either publishes
// them or marks them for the spool; the acker settles them in the same
// order.
func (b *Bridge) publishLoop() {
	defer close(b.pipeline)
	for q := range b.in {
		f := q.frame
		b.modeMu.Lock()
		toSpool := b.spooling || !b.client.IsConnectionOpen()
		if toSpool {
			b.spooling = true
			b.spoolBound++
		}
		b.modeMu.Unlock()
		it := item{queued: q}
		if !toSpool {
			it.deadline = time.Now().Add(b.cfg.PublishTimeout)
			it.token = b.client.Publish(q.topic, f.QoS, f.Retain, f.Payload)
		}
		b.pipeline <- it // blocks at MaxInflight: the queue fills, Deliver says busy
	}
}

// ackLoop settles frames in order: an ack after the PUBACK, or the spool
// when the publish failed or the frame was bound for it.
func (b *Bridge) ackLoop() {
	var batch []item
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b.appendToSpool(batch)
		batch = batch[:0]
	}
	for it := range b.pipeline {
		if it.token == nil {
			batch = append(batch, it)
			if len(b.pipeline) == 0 || len(batch) >= 256 {
				flush()
			}
			continue
		}
		flush()
		if err := b.waitToken(it.token, it.deadline); err == nil {
			b.published.Add(1)
			if it.frame.Ack != nil {
				it.frame.Ack(nil)
			}
			continue
		} else {
			b.log.Debug("publish failed; spooling", "topic", it.topic, "err", err)
		}
		b.modeMu.Lock()
		b.spooling = true
		b.spoolBound++
		b.modeMu.Unlock()
		batch = append(batch, it)
		if len(b.pipeline) == 0 {
			flush()
		}
	}
	flush()
}

// waitToken waits for a publish until its deadline. The deadline counts
// from the publish, not from the wait: tokens are waited for one after the
// other, and a stalled broker must not cost PublishTimeout per frame.
func (b *Bridge) waitToken(t mqtt.Token, deadline time.Time) error {
	select {
	case <-t.Done(): // the usual case under load, without a timer
		return t.Error()
	default:
	}
	if !t.WaitTimeout(max(time.Until(deadline), time.Millisecond)) {
		return errors.New("no PUBACK within the publish timeout")
	}
	return t.Error()
}

// appendToSpool writes a batch in one durable transaction and settles it.
func (b *Bridge) appendToSpool(batch []item) {
	records := make([]spool.Record, len(batch))
	for i, it := range batch {
		records[i] = spool.Record{Topic: it.topic, Payload: it.frame.Payload, QoS: it.frame.QoS, Retain: it.frame.Retain, Time: time.Now()}
	}
	results, err := b.spool.Append(records)
	for i, it := range batch {
		var ackErr error
		switch {
		case err != nil:
			b.log.Error("spool write failed; frames refused", "err", err, "frames", len(batch))
			ackErr = fmt.Errorf("%w: %w", protocols.ErrBusy, err)
		case results[i] != nil:
			b.rejected.Add(1)
			ackErr = fmt.Errorf("%w: %w", protocols.ErrBusy, results[i])
		default:
			b.spooled.Add(1)
		}
		if it.frame.Ack != nil {
			it.frame.Ack(ackErr)
		}
	}
	b.modeMu.Lock()
	b.spoolBound -= len(batch)
	b.modeMu.Unlock()
	signal(b.replayWake)
}

// replayLoop publishes spooled frames, oldest first, whenever the broker is
// reachable, and removes them once the broker has them.
func (b *Bridge) replayLoop(ctx context.Context) {
	const batchSize = 256
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.replayWake:
		case <-retry.C: // a replay was interrupted on a connection that stayed up
		}
		for b.client.IsConnectionOpen() && ctx.Err() == nil {
			entries, corrupt, err := b.spool.Peek(batchSize)
			if err != nil {
				b.log.Error("spool read failed", "err", err)
				break
			}
			if corrupt > 0 {
				b.log.Error("damaged spool records discarded", "records", corrupt)
			}
			if len(entries) == 0 {
				b.modeMu.Lock()
				if b.spoolBound == 0 && b.spool.Len() == 0 && b.spooling {
					b.spooling = false
					b.log.Info("spool drained; publishing directly")
				}
				b.modeMu.Unlock()
				break
			}
			tokens := make([]mqtt.Token, len(entries))
			deadline := time.Now().Add(b.cfg.PublishTimeout)
			for i, e := range entries {
				qos := e.QoS
				if qos > 2 { // spooled by a version that let it in (deliver)
					qos = 1
				}
				tokens[i] = b.client.Publish(e.Topic, qos, e.Retain, e.Payload)
			}
			var done []uint64
			for i, t := range tokens {
				if err := b.waitToken(t, deadline); err != nil {
					b.log.Debug("replay interrupted", "err", err)
					break
				}
				done = append(done, entries[i].ID)
			}
			if err := b.spool.Remove(done); err != nil {
				b.log.Error("spool remove failed", "err", err)
			}
			b.replayed.Add(uint64(len(done)))
			if len(done) < len(entries) {
				// The broker did not confirm in time. After a reconnect the
				// connection wakes us; if the connection stays up, try again
				// after a pause rather than wait for the next frame.
				retry.Reset(replayRetry)
				break
			}
		}
	}
}

// replayRetry is the pause before a replay interrupted on a connection
// that stayed up is tried again.
const replayRetry = 5 * time.Second

// connectLoop keeps the client connected.
func (b *Bridge) connectLoop(ctx context.Context) {
	b.connecting = b.stayConnected(ctx, b.client, b.lost, connectHooks{
		attempt: func() { b.synced.Store(false) },
		failed: func(err error, retry time.Duration) {
			b.log.Warn("cannot reach the broker; retrying", "url", b.cfg.URL, "err", err, "in", retry.Round(time.Millisecond))
		},
		connected: func() {
			url := b.cfg.URL
			if d, ok := b.dialed.Load().(string); ok {
				url = d
			}
			b.log.Info("connected to the broker", "url", url)
		},
	})
}

// connectHooks are what a connection of the bridge's does around
// stayConnected's attempts; nil ones do nothing.
type connectHooks struct {
	attempt   func()                               // before each attempt
	failed    func(err error, retry time.Duration) // an attempt failed; the next is in retry
	connected func()
}

// stayConnected keeps client connected until ctx ends: it connects again
// whenever lost is signalled, and retries a failed attempt with
// exponential backoff and full jitter, so that a fleet does not stampede a
// recovering broker. It returns the attempt under way when ctx ended, nil
// for none: paho cannot abandon one, so Close waits for it.
func (b *Bridge) stayConnected(ctx context.Context, client mqtt.Client, lost <-chan struct{}, on connectHooks) mqtt.Token {
	delay := b.cfg.ReconnectMin
	for {
		select {
		case <-lost: // drop a stale signal
		default:
		}
		if on.attempt != nil {
			on.attempt()
		}
		token := client.Connect()
		select {
		case <-token.Done():
		case <-ctx.Done():
			return token
		}
		if err := token.Error(); err != nil {
			retry := time.Duration(rand.Int64N(int64(delay))) + delay/2
			if on.failed != nil {
				on.failed(err, retry)
			}
			select {
			case <-time.After(retry):
			case <-ctx.Done():
				return nil
			}
			delay = min(delay*2, b.cfg.ReconnectMax)
			continue
		}
		delay = b.cfg.ReconnectMin
		if on.connected != nil {
			on.connected()
		}
		select {
		case <-lost:
		case <-ctx.Done():
			return nil
		}
	}
}

// Stats returns a snapshot of the counters.
func (b *Bridge) Stats() Stats {
	records, bytes, dropped := b.spool.Stats()
	b.modeMu.Lock()
	spooling := b.spooling
	b.modeMu.Unlock()
	return Stats{
		Published: b.published.Load(), Spooled: b.spooled.Load(), Replayed: b.replayed.Load(),
		SpoolRejected: b.rejected.Load(), SpoolDropped: dropped, SpoolRecords: records, SpoolBytes: bytes,
		QoS0Dropped: b.qos0Dropped.Load(), Busy: b.busy.Load(), Commands: b.commands.Load(),
		CommandsFailed: b.commandsFailed.Load(), Forwarded: b.forwarded.Load(), Duplicates: b.duplicates.Load(),
		Takeovers: b.takeovers.Load(), Connected: b.client.IsConnectionOpen(), QoS0Lanes: b.openLanes(),
		Synced:          b.client.IsConnectionOpen() && b.subscribed.Load() && b.synced.Load(),
		PresencePending: b.presencePending(), Spooling: spooling,
	}
}

// presencePending counts the devices whose presence the broker does not
// hold yet.
func (b *Bridge) presencePending() int {
	b.presence.mu.Lock()
	defer b.presence.mu.Unlock()
	n := 0
	for _, e := range b.presence.devices {
		if e.dirty {
			n++
		}
	}
	return n
}

// wait waits for a control-plane token, bounded by ctx and PublishTimeout.
func (b *Bridge) wait(ctx context.Context, t mqtt.Token) error {
	timer := time.NewTimer(b.cfg.PublishTimeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		if err := t.Error(); err != nil {
			return err
		}
		return refused(t)
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errors.New("broker did not answer in time")
	}
}

// refused reports the filters of a subscription the broker answered with
// the failure code 0x80, which paho does not count as an error: an ACL,
// or a clustered broker that could not set the subscription up (NATS while
// JetStream elects a new leader).
func refused(t mqtt.Token) error {
	st, ok := t.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	var filters []string
	for filter, code := range st.Result() {
		if code >= 0x80 {
			filters = append(filters, filter)
		}
	}
	if len(filters) == 0 {
		return nil
	}
	slices.Sort(filters)
	return fmt.Errorf("the broker refused the subscription to %s", strings.Join(filters, ", "))
}

// sinceFormat is RFC 3339 with milliseconds, for people and tools that
// read statuses; which session is the newest is told by the stamp.
const sinceFormat = "2006-01-02T15:04:05.000Z07:00"

func (b *Bridge) now() string { return b.owners.Now().UTC().Format(sinceFormat) }
