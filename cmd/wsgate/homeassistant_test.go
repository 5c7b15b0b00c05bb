package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/gateway/homeassistant/hatest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/homeassistant")

// kitchenHello is a done device that describes its entities in its hello.
const kitchenHello = `{"op":"hello","id":"kitchen-sensor","model":"esp32-th","fw":"1.2.0","caps":[
	{"key":"temperature","ch":"telemetry","field":"t","component":"sensor","unit":"°C","device_class":"temperature","state_class":"measurement"},
	{"key":"humidity","ch":"telemetry","field":"rh","component":"sensor","unit":"%","device_class":"humidity","state_class":"measurement"},
	{"key":"door","ch":"contact","field":"open","component":"binary_sensor","device_class":"door"},
	{"key":"relay","name":"Relay","ch":"relay","field":"on","component":"switch","cmd":"set-relay"},
	{"key":"reboot","component":"button","cmd":"reboot","device_class":"restart","category":"config"},
	{"key":"interval","name":"Interval","ch":"config","field":"s","component":"number","cmd":"set-interval","min":10,"max":3600,"step":10,"unit":"s","category":"config"}
]}`

// TestHomeAssistantDiscovery: a done device with caps connects, and a
// local sysfs sensor runs. A subscriber on the gateway's broker receives
// their configurations, as the golden files hold them and as Home
// Assistant's schemas take them; their availability, state and command
// topics are the ones the gateway really uses (a value the device
// publishes is read by its template, a command published as Home
// Assistant would reaches the device); when Home Assistant says online,
// they are published again.
func TestHomeAssistantDiscovery(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last: after the clients and the gateway are gone
	sensor := filepath.Join(t.TempDir(), "temp")
	if err := os.WriteFile(sensor, []byte("48312\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := testConfig(t, `
[[devices]]
id = "pi-cpu"
driver = "sysfs"
path = "`+sensor+`"
parser = "thermal"
interval = "200ms"
`)
	startInProcess(t, ts.path, ts.wsURL)
	sub := brokertest.Subscribe(t, ts.mqttURL, "homeassistant/#")

	ws := helloCaps(t, ts.wsURL, kitchenHello)
	defer ws.Close()

	const kitchenTopic, cpuTopic = "homeassistant/device/wsgate/kitchen-sensor/config", "homeassistant/device/wsgate_test-gw/pi-cpu/config"
	configs := map[string]hatest.Config{}
	var payloads = map[string][]byte{}
	got := map[string]brokertest.Message{} // retained (the sensor's, from the start) or live
	for deadline := time.After(mqttTestWait); len(got) < 2; {
		select {
		case m := <-sub.Messages:
			got[m.Topic] = m
		case <-deadline:
			t.Fatalf("configurations: only %v", got)
		}
	}
	for topic, name := range map[string]string{kitchenTopic: "kitchen-sensor.golden", cpuTopic: "pi-cpu.golden"} {
		m := got[topic]
		goldenConfig(t, name, m.Payload)
		cfg, problems := hatest.Parse("homeassistant", topic, m.Payload)
		for _, p := range problems {
			t.Errorf("%s: %s", topic, p)
		}
		configs[topic], payloads[topic] = cfg, m.Payload
	}

	// Availability: the retained statuses of the device, the local device
	// and the gateway read online. A new subscriber gets them all.
	states := brokertest.Subscribe(t, ts.mqttURL, "wsgate/#")
	retained := map[string][]byte{}
	for deadline := time.After(mqttTestWait); len(retained) < 3; {
		select {
		case m := <-states.Messages:
			if strings.HasSuffix(m.Topic, "/status") && m.Retained {
				retained[m.Topic] = m.Payload
			}
		case <-deadline:
			t.Fatalf("retained statuses: only %v", retained)
		}
	}
	for topic, cfg := range configs {
		for _, e := range cfg.Entities {
			for _, a := range e.Availability {
				status, ok := retained[a.Topic]
				if !ok {
					t.Errorf("%s %s: availability topic %s is not a status the gateway keeps", topic, e.UniqueID, a.Topic)
					continue
				}
				if got, err := hatest.Render(a.ValueTemplate, status); err != nil || got != a.PayloadAvailable {
					t.Errorf("%s %s: %s on %s renders %q (%v), want %q", topic, e.UniqueID, a.ValueTemplate, status, got, err, a.PayloadAvailable)
				}
			}
		}
	}

	// State topics: what the device and the sensor publish is where the
	// entities look, and their templates read it.
	entities := map[string]hatest.Entity{}
	for _, cfg := range configs {
		for _, e := range cfg.Entities {
			entities[e.UniqueID] = e
		}
	}
	pub := func(ch, data string) {
		t.Helper()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"`+ch+`","data":`+data+`,"qos":0}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		entity, channel, data, want string
	}{
		{"wsgate/kitchen-sensor/temperature", "telemetry", `{"t":21.5,"rh":40}`, "21.5"},
		{"wsgate/kitchen-sensor/door", "contact", `{"open":true}`, entities["wsgate/kitchen-sensor/door"].PayloadOn},
		{"wsgate/kitchen-sensor/relay", "relay", `{"on":false}`, entities["wsgate/kitchen-sensor/relay"].PayloadOff},
		{"wsgate/kitchen-sensor/interval", "config", `{"s":60}`, "60"},
		{"wsgate/pi-cpu/temperature", "", "", "48.312"},
	} {
		e, ok := entities[tc.entity]
		if !ok {
			t.Fatalf("%s not announced", tc.entity)
		}
		if tc.channel != "" {
			pub(tc.channel, tc.data)
		}
		m := states.Next(t, e.StateTopic, mqttTestWait)
		if got, err := hatest.Render(e.ValueTemplate, m.Payload); err != nil || got != tc.want {
			t.Errorf("%s: %s on %s (from %s) renders %q (%v), want %q", tc.entity, e.ValueTemplate, m.Payload, e.StateTopic, got, err, tc.want)
		}
	}

	// Commands: what Home Assistant publishes on the command topics
	// reaches the device as done commands, and the results come back.
	relay, reboot, interval := entities["wsgate/kitchen-sensor/relay"], entities["wsgate/kitchen-sensor/reboot"], entities["wsgate/kitchen-sensor/interval"]
	for _, tc := range []struct {
		topic, payload, name, args string
	}{
		{relay.CommandTopic, relay.PayloadOn, "set-relay", "true"},
		{reboot.CommandTopic, *reboot.PayloadPress, "reboot", ""},
		{interval.CommandTopic, "120", "set-interval", "120"},
	} {
		brokertest.Publish(t, ts.mqttURL, tc.topic, []byte(tc.payload), false)
		cmd := readDeviceMsg(t, ws)
		if cmd.Op != "cmd" || cmd.Name != tc.name || string(cmd.Args) != tc.args {
			t.Errorf("%s %q reached the device as %+v (args %s), want %s with args %q", tc.topic, tc.payload, cmd, cmd.Args, tc.name, tc.args)
			continue
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"res","id":"`+cmd.ID+`","ok":true}`)); err != nil {
			t.Fatal(err)
		}
		if m := states.Next(t, tc.topic+"/result", mqttTestWait); !bytes.Contains(m.Payload, []byte(`"ok":true`)) {
			t.Errorf("result %s", m.Payload)
		}
	}

	// Home Assistant comes online: both are announced again, unchanged.
	// (Copies from the start may still wait: the retained configuration
	// and its live publication can both reach a subscriber that subscribed
	// as it was published.)
	for pending := true; pending; {
		select {
		case <-sub.Messages:
		default:
			pending = false
		}
	}
	brokertest.Publish(t, ts.mqttURL, "homeassistant/status", []byte("online"), false)
	for _, topic := range []string{kitchenTopic, cpuTopic} {
		if m := sub.Next(t, topic, mqttTestWait); !bytes.Equal(m.Payload, payloads[topic]) || m.Retained {
			t.Errorf("%s republished %s (retained %v)", topic, m.Payload, m.Retained)
		}
	}

	// The admin API lists them, and removes a device only once it is gone
	// and only when it is no local device.
	admin := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+ts.adminAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := admin("GET", "/homeassistant/devices"); code != http.StatusOK ||
		!strings.Contains(body, `"device":"kitchen-sensor"`) || !strings.Contains(body, `"device":"pi-cpu","local":true`) {
		t.Errorf("GET /homeassistant/devices: %d %s", code, body)
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"homeassistant", "devices", "-admin", ts.adminAddr}, &out, &out); code != 0 ||
		!regexp.MustCompile(`(?m)^pi-cpu +true +temperature \(sensor\)$`).MatchString(out.String()) ||
		!strings.Contains(out.String(), "relay (switch)") {
		t.Errorf("wsgate homeassistant devices: %d\n%s", code, out.String())
	}
	for _, id := range []string{"kitchen-sensor", "pi-cpu"} {
		if code, body := admin("DELETE", "/homeassistant/devices/"+id); code != http.StatusConflict {
			t.Errorf("DELETE %s: %d %s, want 409", id, code, body)
		}
	}
	ws.Close()
	waitStatus(t, states, "wsgate/kitchen-sensor/status", "offline")
	out.Reset()
	if code := run(t.Context(), []string{"homeassistant", "remove", "kitchen-sensor", "-admin", ts.adminAddr}, &out, &out); code != 0 ||
		out.String() != "cleared "+kitchenTopic+"\n" {
		t.Errorf("wsgate homeassistant remove kitchen-sensor once gone: %d\n%s", code, out.String())
	}
	if m := sub.Next(t, kitchenTopic, mqttTestWait); len(m.Payload) != 0 || m.Retained {
		t.Errorf("after the removal %s got %q, want an empty payload", kitchenTopic, m.Payload)
	}
}

// helloCaps connects a done device with the given hello and waits for the
// welcome; an error reply would mean the caps had problems.
func helloCaps(t *testing.T, wsURL, hello string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Join(strings.Fields(hello), " "))); err != nil {
		t.Fatal(err)
	}
	if m := readDeviceMsg(t, ws); m.Op != "welcome" {
		t.Fatalf("hello answered with %+v", m)
	}
	return ws
}

// goldenConfig compares a configuration with testdata/homeassistant/name,
// indented, with the version it names replaced by VERSION.
func goldenConfig(t *testing.T, name string, payload []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, payload, "", "  "); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	got := regexp.MustCompile(`("origin": \{\s*"name": "wsgate",\s*"sw_version": )"[^"]*"`).ReplaceAllString(b.String(), `$1"VERSION"`) + "\n"
	path := filepath.Join("testdata", "homeassistant", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -run TestHomeAssistantDiscovery -update rewrites it); got:\n%s", path, got)
	}
}
