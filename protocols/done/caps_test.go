package done

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

func float(f float64) *float64 { return &f }

// TestHelloCaps: the entities of a hello's caps reach Attach as the
// device's description, field by field.
func TestHelloCaps(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil)
	mustText(t, s, `{"op":"hello","id":"kitchen-sensor","model":"esp32-th","fw":"1.2.0","caps":[
		{"key":"temperature","ch":"telemetry","field":"t","component":"sensor","unit":"°C","device_class":"temperature","state_class":"measurement"},
		{"key":"door","name":"Door","ch":"contact","component":"binary_sensor","device_class":"door","on":"open","off":"closed","future":{"x":1}},
		{"key":"relay","ch":"relay","field":"on","component":"switch","cmd":"set-relay"},
		{"key":"reboot","component":"button","cmd":"reboot","device_class":"restart","category":"config","name":null},
		{"key":"interval","ch":"config","field":"s","component":"number","cmd":"set-interval","min":10,"max":3600,"step":10,"unit":"s","category":"config"}
	]}`)
	wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":30,"max":65536}`)
	want := &protocols.Description{Model: "esp32-th", Firmware: "1.2.0", Entities: []protocols.Entity{
		{Key: "temperature", Component: "sensor", Channel: "telemetry", Field: "t", Unit: "°C", DeviceClass: "temperature", StateClass: "measurement"},
		{Key: "door", Name: "Door", Component: "binary_sensor", Channel: "contact", DeviceClass: "door", On: json.RawMessage(`"open"`), Off: json.RawMessage(`"closed"`)},
		{Key: "relay", Component: "switch", Channel: "relay", Field: "on", Command: "set-relay"},
		{Key: "reboot", Component: "button", Command: "reboot", DeviceClass: "restart", Category: "config"},
		{Key: "interval", Component: "number", Channel: "config", Field: "s", Command: "set-interval", Min: float(10), Max: float(3600), Step: float(10), Unit: "s", Category: "config"},
	}}
	if len(out.descriptions) != 1 || !reflect.DeepEqual(out.descriptions[0], want) {
		t.Fatalf("attached with\n%+v\nwant\n%+v", out.descriptions[0], want)
	}
}

// TestHelloCapsProblems: a hello whose caps have mistakes still connects;
// the entities at fault are left out and the device is told which and why,
// in one error after the welcome.
func TestHelloCapsProblems(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, caps string
		keep       []string // keys of the entities kept
		problems   []string // in the error's reason
	}{
		{"not an array", `{"key":"t"}`, nil, []string{"caps: must be an array of objects, not an object"}},
		{"not an object", `["pub",{"key":"t","ch":"telemetry","component":"sensor"}]`, []string{"t"},
			[]string{"caps[0]: must be an object, not a string"}},
		{"wrong types", `[{"key":5,"ch":"x","component":"sensor"},{"key":"n","component":"number","cmd":"c","min":"low"}]`, nil,
			[]string{"caps[0].key: must be a string, not a number", "caps[1].min: must be a number, not a string"}},
		{"unknown component", `[{"key":"l","ch":"light","component":"light"}]`, nil,
			[]string{`caps[0].component: "light" is not one of sensor, binary_sensor, switch, button, number`}},
		{"sensor without channel", `[{"key":"t","component":"sensor"}]`, nil,
			[]string{"caps[0].ch: a sensor needs the channel its state is published on"}},
		{"switch without command", `[{"key":"r","ch":"relay","component":"switch"}]`, nil,
			[]string{"caps[0].cmd: a switch needs the command it is controlled with"}},
		{"reserved channel", `[{"key":"r","ch":"cmd/x","component":"sensor"}]`, nil, []string{`caps[0].ch: "cmd/x" is not a channel`}},
		{"bad key", `[{"key":"a b","ch":"x","component":"sensor"},{"key":"","ch":"x","component":"sensor"}]`, nil,
			[]string{`caps[0].key: "a b" must be`, `caps[1].key: "" must be`}},
		{"duplicate key", `[{"key":"t","ch":"x","component":"sensor"},{"key":"t","ch":"y","component":"sensor"}]`, []string{"t"},
			[]string{`caps[1].key: "t" is also the key of caps[0]`}},
		{"on equals off", `[{"key":"c","ch":"x","component":"binary_sensor","on":1,"off":1}]`, nil, []string{"caps[0].off: 1 is also the on value"}},
		{"on not a scalar", `[{"key":"c","ch":"x","component":"binary_sensor","on":{"a":1}}]`, nil, []string{`caps[0].on: {"a":1} is not a JSON string, number or boolean`}},
		{"min over max", `[{"key":"n","component":"number","cmd":"set","min":5,"max":1}]`, nil, []string{"caps[0].max: 1 is below min 5"}},
		{"unit on a switch", `[{"key":"r","component":"switch","cmd":"set","unit":"W"}]`, nil, []string{"caps[0].unit: a switch has no unit"}},
		{"model too long", `[]`, nil, []string{"model: longer than 64 bytes"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, out := start(t, nil)
			model := "esp32"
			if tt.name == "model too long" {
				model = strings.Repeat("m", 65)
			}
			mustText(t, s, `{"op":"hello","id":"d1","model":"`+model+`","caps":`+tt.caps+`}`)
			sent := out.takeSent(t)
			if len(sent) != 2 || sent[0]["op"] != "welcome" || sent[1]["op"] != "error" || sent[1]["code"] != CodeBadRequest {
				t.Fatalf("sent %v, want a welcome and an error bad-request", sent)
			}
			reason := sent[1]["reason"].(string)
			for _, p := range tt.problems {
				if !strings.Contains(reason, p) {
					t.Errorf("reason %q does not say %q", reason, p)
				}
			}
			if len(out.attached) != 1 || len(out.descriptions) != 1 || out.descriptions[0] == nil {
				t.Fatalf("attached %v with %v", out.attached, out.descriptions)
			}
			var keys []string
			for _, e := range out.descriptions[0].Entities {
				keys = append(keys, e.Key)
			}
			if !reflect.DeepEqual(keys, tt.keep) {
				t.Errorf("entities kept %q, want %q", keys, tt.keep)
			}
			if err := out.descriptions[0].Validate(); err != nil {
				t.Errorf("the description attached does not validate: %v", err)
			}
		})
	}
}

// TestHelloWithoutDescription: a hello without model, fw or caps attaches
// without a description, as before caps existed.
func TestHelloWithoutDescription(t *testing.T) {
	t.Parallel()
	for _, hello := range []string{`{"op":"hello","id":"d1"}`, `{"op":"hello","id":"d1","caps":null,"model":null}`} {
		s, out := start(t, nil)
		mustText(t, s, hello)
		wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":30,"max":65536}`)
		if len(out.descriptions) != 1 || out.descriptions[0] != nil {
			t.Errorf("%s: attached with %+v", hello, out.descriptions)
		}
	}
}

// TestHelloCapsLimit: at most protocols.MaxEntities entities are taken.
func TestHelloCapsLimit(t *testing.T) {
	t.Parallel()
	var caps []string
	for i := range protocols.MaxEntities + 3 {
		caps = append(caps, `{"key":"k`+strings.Repeat("x", i%3)+string(rune('a'+i%26))+`-`+string(rune('a'+i/26))+`","ch":"x","component":"sensor"}`)
	}
	s, out := start(t, nil)
	mustText(t, s, `{"op":"hello","id":"d1","caps":[`+strings.Join(caps, ",")+`]}`)
	sent := out.takeSent(t)
	if len(sent) != 2 || !strings.Contains(sent[1]["reason"].(string), "only the first 64 are used") {
		t.Fatalf("sent %v", sent)
	}
	if n := len(out.descriptions[0].Entities); n != protocols.MaxEntities {
		t.Errorf("%d entities kept", n)
	}
}

// TestHelloCapsEnvelope: with the envelope on, an entity's value is found
// inside the envelope's data.
func TestHelloCapsEnvelope(t *testing.T) {
	t.Parallel()
	s, out := start(t, func(c *Config) { c.Envelope = true })
	mustText(t, s, `{"op":"hello","id":"d1","caps":[{"key":"t","ch":"telemetry","field":"t","component":"sensor"},{"key":"v","ch":"value","component":"sensor"},{"key":"b","component":"button","cmd":"go"}]}`)
	wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":30,"max":65536}`)
	var fields []string
	for _, e := range out.descriptions[0].Entities {
		fields = append(fields, e.Field)
	}
	if strings.Join(fields, ",") != "data.t,data," {
		t.Errorf("fields %q, want data.t, data and none", fields)
	}
}

// TestReadmeCaps: the hellos with caps in README.md (and the project's
// docs/HOMEASSISTANT.md) are accepted without a problem.
func TestReadmeCaps(t *testing.T) {
	t.Parallel()
	var hellos []string
	for _, path := range []string{"README.md", "../../docs/HOMEASSISTANT.md"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile("(?s)```json\n(\\{\"op\":\"hello\".*?)```").FindAllStringSubmatch(string(data), -1) {
			hellos = append(hellos, m[1])
		}
	}
	if len(hellos) < 2 {
		t.Fatalf("%d hellos with caps found", len(hellos))
	}
	for _, hello := range hellos {
		s, out := start(t, nil)
		mustText(t, s, hello)
		wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":30,"max":65536}`)
		if d := out.descriptions[0]; d == nil || len(d.Entities) < 3 {
			t.Errorf("%s: attached with %+v", hello, d)
		}
	}
}
