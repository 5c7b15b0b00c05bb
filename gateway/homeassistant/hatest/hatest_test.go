package hatest

import (
	"strings"
	"testing"
)

const device = `"device":{"identifiers":["wsgate/d1"],"name":"d1"},"origin":{"name":"wsgate"}`

// TestParseFindsMistakes: each configuration breaks one rule of Home
// Assistant's schemas, and Parse says which.
func TestParseFindsMistakes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, topic, payload, want string
	}{
		{"topic level", "homeassistant/sensor/ws.gate/d1_t/config", `{"unique_id":"u","state_topic":"s",` + device + `}`, "outside [a-zA-Z0-9_-]"},
		{"not config", "homeassistant/sensor/wsgate/d1/state", `{}`, "is not homeassistant/"},
		{"unknown platform", "homeassistant/light/wsgate/d1_l/config", `{}`, "component \"light\""},
		{"no unique_id", "homeassistant/sensor/wsgate/d1_t/config", `{"state_topic":"s",` + device + `}`, "no unique_id"},
		{"no state topic", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u",` + device + `}`, "requires state_topic"},
		{"no command topic", "homeassistant/switch/wsgate/d1_r/config", `{"unique_id":"u","state_topic":"s",` + device + `}`, "requires command_topic"},
		{"wildcard command", "homeassistant/button/wsgate/d1_b/config", `{"unique_id":"u","command_topic":"a/+",` + device + `}`, "one can publish to"},
		{"typo", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","unit_of_measure":"W",` + device + `}`, "unit_of_measure is not an option"},
		{"option of another platform", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","payload_on":"1",` + device + `}`, "payload_on is not an option of sensor"},
		{"abbreviation", "homeassistant/sensor/wsgate/d1_t/config", `{"uniq_id":"u","stat_t":"s",` + device + `}`, "uniq_id is not an option"},
		{"device without id", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","device":{"name":"d1"}}`, "needs identifiers"},
		{"origin option", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","origin":{"name":"x","url":"y"}}`, "origin.url"},
		{"availability entry", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","availability":[{"topic":"a","payload":"x"}]}`, "availability[0].payload"},
		{"availability mode", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","availability_mode":"some"}`, "availability_mode"},
		{"state class", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","state_class":"average"}`, "state_class"},
		{"number range", "homeassistant/number/wsgate/d1_n/config", `{"unique_id":"u","command_topic":"c","min":5,"max":1}`, "max 1 is below min 5"},
		{"template", "homeassistant/sensor/wsgate/d1_t/config", `{"unique_id":"u","state_topic":"s","value_template":"{{ value }}"}`, "value_template"},
		{"device config without origin", "homeassistant/device/wsgate/d1/config", `{"device":{"identifiers":["x"]},"components":{"t":{"platform":"sensor","unique_id":"u","state_topic":"s"}}}`, "needs origin"},
		{"device config platform", "homeassistant/device/wsgate/d1/config", `{` + device + `,"components":{"t":{"platform":"light","unique_id":"u"}}}`, "platform \"light\""},
		{"device config option", "homeassistant/device/wsgate/d1/config", `{` + device + `,"unit_of_measurement":"W","components":{"t":{"platform":"sensor","unique_id":"u","state_topic":"s"}}}`, "not one a device configuration shares"},
		{"platform in component mode", "homeassistant/sensor/wsgate/d1_t/config", `{"platform":"sensor","unique_id":"u","state_topic":"s"}`, "platform belongs"},
	} {
		_, problems := Parse("homeassistant", tc.topic, []byte(tc.payload))
		if !strings.Contains(strings.Join(problems, "\n"), tc.want) {
			t.Errorf("%s: problems %q, want one saying %q", tc.name, problems, tc.want)
		}
	}
}

// TestParseTakesValid: a well-formed configuration of each mode has no
// problem, the shared options reach the components, and stubs are told
// apart.
func TestParseTakesValid(t *testing.T) {
	t.Parallel()
	cfg, problems := Parse("homeassistant", "homeassistant/device/wsgate/d1/config", []byte(`{`+device+`,
		"availability":[{"topic":"wsgate/d1/status","value_template":"{{ value_json.state }}"}],"availability_mode":"all",
		"components":{"t":{"platform":"sensor","unique_id":"wsgate/d1/t","state_topic":"wsgate/d1/x","value_template":"{{ value_json['t'] }}"},
		"gone":{"platform":"switch"}}}`))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if len(cfg.Entities) != 1 || len(cfg.Entities[0].Availability) != 1 || cfg.Stubs[0] != "gone" || cfg.Node != "wsgate" || cfg.Object != "d1" {
		t.Errorf("%+v", cfg)
	}
	if _, problems := Parse("homeassistant", "homeassistant/button/d1_b/config", []byte(`{"unique_id":"u","command_topic":"wsgate/d1/cmd/b","payload_press":""}`)); len(problems) > 0 {
		t.Error(problems)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		template, payload, want string
		err                     bool
	}{
		{"{{ value_json.state }}", `{"state":"online"}`, "online", false},
		{"{{ value_json['a']['b'] }}", `{"a":{"b":21.50}}`, "21.5", false},
		{"{{ value_json['on'] }}", `{"on":true}`, "True", false},
		{"{{ value_json['on'] | to_json }}", `{"on":true}`, "true", false},
		{"{{ value_json | to_json }}", `"open"`, `"open"`, false},
		{"{{ value_json }}", `42`, "42", false},
		{"{{ value_json['x'] }}", `{"t":1}`, "", true},
		{"{{ value_json['x'] }}", `not json`, "", true},
		{"{{ value }}", `1`, "", true},
	} {
		got, err := Render(tc.template, []byte(tc.payload))
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("Render(%q, %s) = %q, %v", tc.template, tc.payload, got, err)
		}
	}
}
