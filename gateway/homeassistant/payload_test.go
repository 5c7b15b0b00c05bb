package homeassistant

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/gateway/homeassistant/hatest"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/protocols"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata")

func float(f float64) *float64 { return &f }

// kitchen describes a device with every kind of entity.
func kitchen() *protocols.Description {
	return &protocols.Description{Name: "Kitchen sensor", Model: "esp32-th", Firmware: "1.2.0", Entities: []protocols.Entity{
		{Key: "temperature", Component: "sensor", Channel: "telemetry", Field: "t", Unit: "°C", DeviceClass: "temperature", StateClass: "measurement"},
		{Key: "humidity", Component: "sensor", Channel: "telemetry", Field: "env.rh", Unit: "%", DeviceClass: "humidity", StateClass: "measurement"},
		{Key: "door", Name: "Back door", Component: "binary_sensor", Channel: "contact", DeviceClass: "door",
			On: json.RawMessage(`"open"`), Off: json.RawMessage(`"closed"`)},
		{Key: "relay", Component: "switch", Channel: "relay", Field: "on", Command: "set-relay"},
		{Key: "reboot", Component: "button", Command: "reboot", DeviceClass: "restart", Category: "config"},
		{Key: "interval", Component: "number", Channel: "config", Field: "s", Command: "set-interval",
			Min: float(10), Max: float(3600), Step: float(10), Unit: "s", Category: "config"},
		protocols.Connectivity(),
	}}
}

func testBuilder(t *testing.T, mode Mode) *builder {
	t.Helper()
	topics, err := mqttbridge.NewTopics("wsgate", "hub", mqttbridge.DefaultUplinkTemplate)
	if err != nil {
		t.Fatal(err)
	}
	return &builder{prefix: "homeassistant", mode: mode, namespace: "wsgate", version: "1.0.0", topics: topics,
		network: objectID("wsgate"), local: objectID("wsgate") + "_" + objectID("hub")}
}

// golden compares what was published with testdata/name, one message a
// paragraph: the topic, then the payload indented.
func golden(t *testing.T, name string, msgs []message) {
	t.Helper()
	var b bytes.Buffer
	for _, m := range msgs {
		b.WriteString(m.topic + "\n")
		if len(m.payload) == 0 {
			b.WriteString("(empty)\n\n")
			continue
		}
		if err := json.Indent(&b, m.payload, "", "  "); err != nil {
			t.Fatalf("%s: %v: %s", m.topic, err, m.payload)
		}
		b.WriteString("\n\n")
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}

// TestAnnouncementGolden: what a device with every kind of entity is
// announced with, in both modes, is what testdata holds and what Home
// Assistant's discovery schemas take.
func TestAnnouncementGolden(t *testing.T) {
	t.Parallel()
	for _, mode := range []Mode{ModeDevice, ModeComponent} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			b := testBuilder(t, mode)
			a, skipped := b.announce("kitchen-sensor", false, kitchen(), nil)
			if len(skipped) > 0 {
				t.Fatal(skipped)
			}
			golden(t, "kitchen-"+string(mode)+".golden", a.messages)
			want := map[string]string{"temperature": "sensor", "humidity": "sensor", "door": "binary_sensor", "relay": "switch",
				"reboot": "button", "interval": "number", "connectivity": "binary_sensor"}
			if len(a.entities) != len(want) {
				t.Errorf("entities %v, want %v", a.entities, want)
			}
			var entities []hatest.Entity
			for _, m := range a.messages {
				cfg, problems := hatest.Parse("homeassistant", m.topic, m.payload)
				for _, p := range problems {
					t.Errorf("%s: %s", m.topic, p)
				}
				if cfg.Node != "wsgate" {
					t.Errorf("%s: node %q", m.topic, cfg.Node)
				}
				entities = append(entities, cfg.Entities...)
			}
			for _, e := range entities {
				key := e.UniqueID[strings.LastIndexByte(e.UniqueID, '/')+1:]
				if e.UniqueID != "wsgate/kitchen-sensor/"+key || want[key] != e.Platform {
					t.Errorf("entity %q is a %s", e.UniqueID, e.Platform)
				}
				avail := []string{"wsgate/kitchen-sensor/status", "wsgate/$gateway/hub/status"}
				if key == "connectivity" {
					avail = avail[1:] // its state is the device's presence
				}
				var got []string
				for _, a := range e.Availability {
					got = append(got, a.Topic)
				}
				if strings.Join(got, " ") != strings.Join(avail, " ") || e.Options["availability_mode"] != "all" {
					t.Errorf("%s: availability %v (%v), want %v, all", key, got, e.Options["availability_mode"], avail)
				}
			}
		})
	}
}

// TestTemplatesReadPayloads: the value and availability templates read the
// payloads the gateway and the device publish, as Home Assistant renders
// them.
func TestTemplatesReadPayloads(t *testing.T) {
	t.Parallel()
	b := testBuilder(t, ModeComponent)
	a, _ := b.announce("kitchen-sensor", false, kitchen(), nil)
	byKey := map[string]hatest.Entity{}
	for _, m := range a.messages {
		cfg, _ := hatest.Parse("homeassistant", m.topic, m.payload)
		e := cfg.Entities[0]
		byKey[e.UniqueID[strings.LastIndexByte(e.UniqueID, '/')+1:]] = e
	}
	for _, tt := range []struct {
		key, payload, want string
	}{
		{"temperature", `{"t":21.5,"env":{"rh":40}}`, "21.5"},
		{"humidity", `{"t":21.5,"env":{"rh":40}}`, "40"},
		{"door", `"open"`, byKey["door"].PayloadOn},
		{"door", `"closed"`, byKey["door"].PayloadOff},
		{"relay", `{"on":true}`, byKey["relay"].PayloadOn},
		{"relay", `{"on":false}`, byKey["relay"].PayloadOff},
		{"interval", `{"s":60}`, "60"},
		{"connectivity", `{"state":"online","protocol":"done","gateway":"hub","since":"2026-11-26T10:00:00.123Z"}`, byKey["connectivity"].PayloadOn},
		{"connectivity", `{"state":"offline","protocol":"done","gateway":"hub","since":"2026-11-26T10:00:00.123Z"}`, byKey["connectivity"].PayloadOff},
	} {
		got, err := hatest.Render(byKey[tt.key].ValueTemplate, []byte(tt.payload))
		if err != nil || got != tt.want {
			t.Errorf("%s: %q on %s renders %q (%v), want %q", tt.key, byKey[tt.key].ValueTemplate, tt.payload, got, err, tt.want)
		}
	}
	for _, status := range []string{"online", "offline"} {
		payload := `{"state":"` + status + `","gateway":"hub"}`
		for _, av := range byKey["temperature"].Availability {
			if got, err := hatest.Render(av.ValueTemplate, []byte(payload)); err != nil || got != status {
				t.Errorf("availability %s renders %q (%v) on %s", av.Topic, got, err, payload)
			}
		}
	}
	// A switch's command payload is its on or off value as JSON: the
	// gateway takes it as the command's arguments.
	for _, p := range []string{byKey["relay"].PayloadOn, byKey["relay"].PayloadOff, byKey["interval"].CommandTopic} {
		if p == "" {
			t.Errorf("empty payload or topic in %+v", byKey["relay"])
		}
	}
	if !json.Valid([]byte(byKey["relay"].PayloadOn)) || !json.Valid([]byte(byKey["relay"].PayloadOff)) {
		t.Errorf("switch payloads %q %q are not JSON", byKey["relay"].PayloadOn, byKey["relay"].PayloadOff)
	}
	if p := byKey["reboot"].PayloadPress; p == nil || *p != "" {
		t.Errorf("button payload_press %v, want empty: a command without arguments", p)
	}
}

// TestAnnouncementRemovesEntities: in device mode an entity the device no
// longer has is removed with a platform-only stub, which the next
// announcement leaves out, as Home Assistant documents.
func TestAnnouncementRemovesEntities(t *testing.T) {
	t.Parallel()
	b := testBuilder(t, ModeDevice)
	d := kitchen()
	d.Entities = d.Entities[:1]
	prev := map[string]string{"temperature": "sensor", "door": "binary_sensor", "old": ""}
	a, _ := b.announce("kitchen-sensor", false, d, prev)
	cfg, problems := hatest.Parse("homeassistant", a.messages[0].topic, a.messages[0].payload)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if strings.Join(cfg.Stubs, ",") != "door" || len(cfg.Entities) != 1 {
		t.Errorf("stubs %v, entities %d; want the door removed, the old stub gone", cfg.Stubs, len(cfg.Entities))
	}
}

// TestAnnouncementSkipsInvalid: entities that do not validate, or whose
// channel is no topic, are left out and reported; the others are
// announced.
func TestAnnouncementSkipsInvalid(t *testing.T) {
	t.Parallel()
	b := testBuilder(t, ModeDevice)
	reserved, err := b.topics.(mqttbridge.Topics).Reserve("homeassistant")
	if err != nil {
		t.Fatal(err)
	}
	b.topics = reserved
	d := &protocols.Description{Entities: []protocols.Entity{
		{Key: "ok", Component: "sensor", Channel: "t"},
		{Key: "bad", Component: "light", Channel: "t"},
		{Key: "ok", Component: "sensor", Channel: "u"},
	}}
	a, skipped := b.announce("d1", false, d, nil)
	if len(skipped) != 2 || len(a.entities) != 1 {
		t.Errorf("skipped %v, announced %v", skipped, a.entities)
	}
	// A device named after the discovery prefix, with a template that
	// puts no prefix first, cannot make a state topic there.
	topics, err := mqttbridge.NewTopics("wsgate", "hub", "{device}/{channel}")
	if err != nil {
		t.Fatal(err)
	}
	if topics, err = topics.Reserve("homeassistant"); err != nil {
		t.Fatal(err)
	}
	b.topics = topics
	if _, skipped := b.announce("homeassistant", false, &protocols.Description{Entities: []protocols.Entity{
		{Key: "x", Component: "sensor", Channel: "sensor/x/config"}}}, nil); len(skipped) != 1 {
		t.Errorf("a state topic under the discovery prefix was announced")
	}
}

func TestObjectID(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, id := range []string{"kitchen-sensor", "a_b", "a.b", "a b", "a:b", "a.b.", "ü", "wsgate/site"} {
		o := objectID(id)
		if !validObjectID(o) {
			t.Errorf("objectID(%q) = %q, not a topic level Home Assistant takes", id, o)
		}
		if validObjectID(id) && o != id {
			t.Errorf("objectID(%q) = %q, changed a valid id", id, o)
		}
		if prev, dup := seen[o]; dup {
			t.Errorf("objectID(%q) = objectID(%q) = %q", id, prev, o)
		}
		seen[o] = id
	}
}
