package homeassistant

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/gateway/homeassistant/hatest"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/spool"
	"github.com/wsgate/wsgate/protocols"
)

// Every test closes what it started: discovery, bridge, spool, broker and
// clients. Anything left running when the package's tests end is a leak.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds what should happen soon; tests assert outcomes, not timing.
const wait = 30 * time.Second

func testLog() *slog.Logger {
	if os.Getenv("WSGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// gateway is the part of a gateway discovery works in: a real bridge to a
// real broker, a router, and discovery watching it.
type gateway struct {
	router    *router.Router
	bridge    *mqttbridge.Bridge
	published *recorder
	discovery *Discovery
	close     func()
}

// recorder is the bridge, counting what discovery publishes through it.
type recorder struct {
	*mqttbridge.Bridge
	mu     sync.Mutex
	topics map[string]int
}

func (r *recorder) Publish(ctx context.Context, topic string, payload []byte, retain bool) error {
	err := r.Bridge.Publish(ctx, topic, payload, retain)
	if err == nil {
		r.mu.Lock()
		r.topics[topic]++
		r.mu.Unlock()
	}
	return err
}

func (r *recorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.topics[topic]
}

func startGateway(t *testing.T, url string, opts Options) *gateway {
	t.Helper()
	log := testLog().With("test", t.Name())
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Limits{}, spool.Reject)
	if err != nil {
		t.Fatal(err)
	}
	topics, err := mqttbridge.NewTopics("wsgate", "hub", mqttbridge.DefaultUplinkTemplate)
	if err == nil {
		topics, err = topics.Reserve("homeassistant")
	}
	if err != nil {
		t.Fatal(err)
	}
	b := mqttbridge.New(mqttbridge.Config{
		URL: url, ClientID: brokertest.ClientID("wsgate-hub"), GatewayID: "hub", Topics: topics,
		KeepAlive: 10 * time.Second, ConnectTimeout: 5 * time.Second,
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond, PublishTimeout: 10 * time.Second,
	}, sp, log)
	rt := router.New(b, log)
	rt.Watch(b)
	opts.Prefix, opts.StatusTopic, opts.Namespace, opts.GatewayID, opts.Version, opts.Log =
		"homeassistant", "homeassistant/status", "wsgate", "hub", "test", log
	if opts.Mode == "" {
		opts.Mode = ModeDevice
	}
	rec := &recorder{Bridge: b, topics: map[string]int{}}
	d := New(opts, topics, rec)
	rt.Watch(d)
	b.Start(rt)
	d.Start()
	g := &gateway{router: rt, bridge: b, published: rec, discovery: d}
	var closed bool
	g.close = func() {
		if closed {
			return
		}
		closed = true
		d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bridge: %v", err)
		}
		if err := sp.Close(); err != nil {
			t.Errorf("spool: %v", err)
		}
	}
	t.Cleanup(g.close)
	return g
}

// endpoint is an attached device that takes commands.
type endpoint struct{}

func (endpoint) Command(protocols.Command) error { return nil }
func (endpoint) Evict(string)                    {}

// attach attaches a device as a session would, with a new endpoint.
func (g *gateway) attach(t *testing.T, id string, d *protocols.Description) router.Endpoint {
	t.Helper()
	ep := &endpoint{}
	if err := g.router.Attach(router.Device{ID: id, Protocol: "done", Session: "s1", Since: time.Now(), Description: d}, ep); err != nil {
		t.Fatal(err)
	}
	return ep
}

// next waits for the next message on topic; live only, it skips retained
// copies a (re)subscription brings.
func next(t *testing.T, sub *brokertest.Subscriber, topic string, live bool) brokertest.Message {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-sub.Messages:
			if m.Topic == topic && (!live || !m.Retained) {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s", topic)
		}
	}
}

// parse checks a configuration with hatest and returns it.
func parse(t *testing.T, m brokertest.Message) hatest.Config {
	t.Helper()
	cfg, problems := hatest.Parse("homeassistant", m.Topic, m.Payload)
	for _, p := range problems {
		t.Errorf("%s: %s", m.Topic, p)
	}
	return cfg
}

func keys(cfg hatest.Config) string {
	var ks []string
	for _, e := range cfg.Entities {
		ks = append(ks, e.UniqueID[strings.LastIndexByte(e.UniqueID, '/')+1:])
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}

const kitchenTopic = "homeassistant/device/wsgate/kitchen-sensor/config"

// TestAnnounceAndRepublish: a device that describes entities is announced
// when it attaches, again when Home Assistant comes online and after the
// broker restarts; an entity it drops is removed in two steps; it stays
// announced while offline, and Remove clears it once it is gone for good.
func TestAnnounceAndRepublish(t *testing.T) {
	m := brokertest.StartMosquitto(t)
	// A persistent session: what is published while the broker restarts
	// and the subscriber reconnects is kept for it.
	sub := brokertest.SubscribeSession(t, m.URL, "homeassistant/#", brokertest.ClientID("ha"))
	g := startGateway(t, m.URL, Options{})

	ep := g.attach(t, "kitchen-sensor", kitchen())
	first := next(t, sub, kitchenTopic, true)
	if cfg := parse(t, first); keys(cfg) != "connectivity,door,humidity,interval,reboot,relay,temperature" {
		t.Errorf("announced %s", keys(cfg))
	}

	// Home Assistant's birth message: everything again.
	brokertest.Publish(t, m.URL, "homeassistant/status", []byte("online"), false)
	if again := next(t, sub, kitchenTopic, true); string(again.Payload) != string(first.Payload) {
		t.Errorf("republished %s, want %s", again.Payload, first.Payload)
	}

	// A broker restart: the bridge reconnects and announces again. (What
	// the subscriber sees cannot tell it apart from a copy of what was in
	// flight when the broker stopped: the publishes are counted.)
	before := g.published.count(kitchenTopic)
	m.Stop()
	m.Start()
	eventually(t, "the announcement after the broker restart", func() bool { return g.published.count(kitchenTopic) > before })
	// Once a device attached afterwards is announced, whatever was
	// published before has come through.
	g.attach(t, "zz-last", kitchen())
	next(t, sub, "homeassistant/device/wsgate/zz-last/config", true)

	// The device comes back without its door: a stub removes it, then an
	// announcement without it follows.
	g.router.Detach("kitchen-sensor", ep)
	fewer := kitchen()
	fewer.Entities = slices.DeleteFunc(fewer.Entities, func(e protocols.Entity) bool { return e.Key == "door" })
	ep = g.attach(t, "kitchen-sensor", fewer)
	cfg := parse(t, next(t, sub, kitchenTopic, true))
	if strings.Join(cfg.Stubs, ",") != "door" || strings.Contains(keys(cfg), "door") {
		t.Errorf("stubs %v, entities %s: want the door removed", cfg.Stubs, keys(cfg))
	}
	cfg = parse(t, next(t, sub, kitchenTopic, true))
	if len(cfg.Stubs) > 0 || keys(cfg) != "connectivity,humidity,interval,reboot,relay,temperature" {
		t.Errorf("stubs %v, entities %s after the removal", cfg.Stubs, keys(cfg))
	}

	// Connected, it cannot be removed; gone, it can.
	if _, err := g.discovery.Remove(t.Context(), "kitchen-sensor"); !errors.Is(err, ErrConnected) {
		t.Errorf("Remove of a connected device: %v", err)
	}
	g.router.Detach("kitchen-sensor", ep)
	removed, err := g.discovery.Remove(t.Context(), "kitchen-sensor")
	if err != nil || len(removed) != 1 || removed[0] != kitchenTopic {
		t.Fatalf("Remove: %v %v", removed, err)
	}
	if m := next(t, sub, kitchenTopic, true); len(m.Payload) != 0 {
		t.Errorf("removal published %q, want an empty payload", m.Payload)
	}
	if _, err := g.discovery.Remove(t.Context(), "never-seen"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Remove of an unknown device: %v", err)
	}
}

// TestDevicesWithoutEntities: a device that describes nothing, or a
// description without entities, is not announced; attaching so does not
// remove an earlier announcement either.
func TestDevicesWithoutEntities(t *testing.T) {
	url := brokertest.StartEmbedded(t)
	sub := brokertest.Subscribe(t, url, "homeassistant/#")
	g := startGateway(t, url, Options{})
	g.attach(t, "plain", nil)
	g.attach(t, "model-only", &protocols.Description{Model: "esp32"})
	g.attach(t, "kitchen-sensor", kitchen())
	g.attach(t, "kitchen2", kitchen())
	nextOf(t, sub, kitchenTopic, "homeassistant/device/wsgate/kitchen2/config")
	eventually(t, "the broker's copies read back", func() bool { return len(g.discovery.Announcements()) == 2 })

	// kitchen-sensor's newer session has no caps. Home Assistant comes
	// online: kitchen2 is announced again, in the same pass as anything
	// else would be; a device attached afterwards comes after it.
	g.attach(t, "kitchen-sensor", &protocols.Description{})
	brokertest.Publish(t, url, "homeassistant/status", []byte("online"), false)
	deadline := time.After(wait)
	for last := false; !last; {
		select {
		case m := <-sub.Messages:
			switch m.Topic {
			case "homeassistant/status":
			case "homeassistant/device/wsgate/kitchen2/config":
				g.attach(t, "zz-last", kitchen())
			case "homeassistant/device/wsgate/zz-last/config":
				last = true
			default:
				t.Errorf("published %s %q", m.Topic, m.Payload)
			}
		case <-deadline:
			t.Fatal("kitchen2 and zz-last were not announced")
		}
	}
	if got := g.discovery.Announcements(); len(got) < 2 || got[0].Device != "kitchen-sensor" {
		t.Errorf("announcements %+v: kitchen-sensor's should stay", got)
	}
}

// TestLocalDevices: local devices are announced under the gateway's own
// node whether they run or not; one the configuration no longer has is
// cleared at the next start, the others stay.
func TestLocalDevices(t *testing.T) {
	m := brokertest.StartMosquitto(t)
	sub := brokertest.Subscribe(t, m.URL, "homeassistant/#")
	cpu := &protocols.Description{Model: "sysfs", Entities: []protocols.Entity{
		{Key: "temperature", Component: "sensor", Channel: "value", Field: "celsius", Unit: "°C", DeviceClass: "temperature", StateClass: "measurement"}}}
	relay := &protocols.Description{Model: "gpio", Entities: []protocols.Entity{
		{Key: "state", Component: "switch", Channel: "state", Field: "value", Command: "set", On: []byte("1"), Off: []byte("0")}}}
	const cpuTopic, relayTopic = "homeassistant/device/wsgate_hub/pi-cpu/config", "homeassistant/device/wsgate_hub/relay/config"

	g := startGateway(t, m.URL, Options{Locals: map[string]*protocols.Description{"pi-cpu": cpu, "relay": relay}})
	for topic, m := range nextOf(t, sub, cpuTopic, relayTopic) {
		cfg := parse(t, m)
		if cfg.Node != "wsgate_hub" || len(cfg.Entities) != 1 {
			t.Errorf("%s: node %q, %d entities", topic, cfg.Node, len(cfg.Entities))
		}
	}
	// A network device may not take a local device's place.
	g.attach(t, "relay", kitchen())
	g.close()

	// pi-cpu was removed from the configuration.
	startGateway(t, m.URL, Options{Locals: map[string]*protocols.Description{"relay": relay}})
	got := nextOf(t, sub, cpuTopic, relayTopic)
	if p := got[cpuTopic].Payload; len(p) != 0 {
		t.Errorf("pi-cpu: %q, want its configuration cleared", p)
	}
	if cfg := parse(t, got[relayTopic]); len(cfg.Entities) != 1 || cfg.Entities[0].Platform != "switch" {
		t.Errorf("relay: %+v, want it announced as before", cfg)
	}
}

// nextOf waits for the next live message on each of topics, in any order.
func nextOf(t *testing.T, sub *brokertest.Subscriber, topics ...string) map[string]brokertest.Message {
	t.Helper()
	got := map[string]brokertest.Message{}
	deadline := time.After(wait)
	for len(got) < len(topics) {
		select {
		case m := <-sub.Messages:
			if _, seen := got[m.Topic]; !seen && !m.Retained && slices.Contains(topics, m.Topic) {
				got[m.Topic] = m
			}
		case <-deadline:
			t.Fatalf("messages on %v: only %d", topics, len(got))
		}
	}
	return got
}

// TestComponentModeAndMigration: in component mode every entity has a
// topic of its own; switching modes migrates a device's entities as Home
// Assistant documents (the marker on the old topics, the new
// configuration, the old topics cleared), and an entity a device drops
// has its topic cleared.
func TestComponentModeAndMigration(t *testing.T) {
	m := brokertest.StartMosquitto(t)
	sub := brokertest.Subscribe(t, m.URL, "homeassistant/#")
	g := startGateway(t, m.URL, Options{Mode: ModeDevice})
	g.attach(t, "kitchen-sensor", kitchen())
	next(t, sub, kitchenTopic, true)
	g.close()

	g = startGateway(t, m.URL, Options{Mode: ModeComponent})
	ep := g.attach(t, "kitchen-sensor", kitchen())
	if m := next(t, sub, kitchenTopic, true); string(m.Payload) != `{"migrate_discovery":true}` {
		t.Fatalf("first on the old topic: %q, want the migration marker", m.Payload)
	}
	tempTopic := "homeassistant/sensor/wsgate/kitchen-sensor_temperature/config"
	doorTopic := "homeassistant/binary_sensor/wsgate/kitchen-sensor_door/config"
	for _, topic := range []string{tempTopic, doorTopic} {
		if cfg := parse(t, next(t, sub, topic, true)); len(cfg.Entities) != 1 || cfg.Node != "wsgate" {
			t.Errorf("%s: %+v", topic, cfg)
		}
	}
	if m := next(t, sub, kitchenTopic, true); len(m.Payload) != 0 {
		t.Errorf("old topic: %q, want it cleared after the migration", m.Payload)
	}

	g.router.Detach("kitchen-sensor", ep)
	fewer := kitchen()
	fewer.Entities = slices.DeleteFunc(fewer.Entities, func(e protocols.Entity) bool { return e.Key == "door" })
	g.attach(t, "kitchen-sensor", fewer)
	// The gateway republishes what it announces after each connection to
	// the broker, which may come after the first attach: the door's
	// configuration may come once more before its topic is cleared.
	for m := next(t, sub, doorTopic, true); len(m.Payload) != 0; m = next(t, sub, doorTopic, true) {
		if cfg := parse(t, m); len(cfg.Entities) != 1 {
			t.Fatalf("door: %q, want its topic cleared", m.Payload)
		}
	}
	eventually(t, "six topics read back", func() bool {
		got := g.discovery.Announcements()
		return len(got) == 1 && len(got[0].Topics) == 6 && got[0].Entities["door"] == ""
	})
}

// eventually polls cond until it holds, or fails the test after wait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
