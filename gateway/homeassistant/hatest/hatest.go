// Package hatest checks MQTT discovery configurations the way Home
// Assistant reads them, for tests: the topic, the device and origin, the
// options each platform takes (and requires), availability, and the value
// templates the gateway writes, which Render evaluates on a payload.
//
// The rules are those of Home Assistant's MQTT documentation and its
// discovery schemas (homeassistant/components/mqtt: discovery.py,
// schemas.py and the platforms'), with the full option names the gateway
// writes (Home Assistant also takes abbreviations). Options Home Assistant
// would drop unread are reported too, since they mean a typo.
package hatest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Entity is one entity of a configuration, with what tests act on.
type Entity struct {
	Platform      string
	UniqueID      string
	Name          string
	StateTopic    string
	ValueTemplate string
	CommandTopic  string
	PayloadOn     string
	PayloadOff    string
	PayloadPress  *string
	Availability  []Availability
	Options       map[string]any // every option, after the device's shared ones are merged
}

// Availability is one entry of an entity's availability.
type Availability struct {
	Topic, ValueTemplate, PayloadAvailable, PayloadNotAvailable string
}

// Config is a parsed discovery message.
type Config struct {
	Node, Object string
	Device       map[string]any
	Origin       map[string]any
	Entities     []Entity // sorted by unique id; removal stubs are left out
	Stubs        []string // components (device mode) that only name their platform: removed
}

// Platforms are the components the gateway announces; Home Assistant has
// more.
var Platforms = []string{"sensor", "binary_sensor", "switch", "button", "number"}

// common are the options every platform takes (MQTT_ENTITY_COMMON_SCHEMA
// and the availability schemas), platform those of each platform.
var (
	common = []string{
		"platform", "unique_id", "name", "device", "origin", "availability", "availability_mode",
		"availability_topic", "availability_template", "payload_available", "payload_not_available",
		"entity_category", "entity_picture", "enabled_by_default", "icon", "json_attributes_topic",
		"json_attributes_template", "object_id", "default_entity_id", "qos", "encoding",
	}
	platform = map[string][]string{
		"sensor": {"state_topic", "value_template", "device_class", "state_class", "unit_of_measurement",
			"expire_after", "force_update", "last_reset_value_template", "options", "suggested_display_precision"},
		"binary_sensor": {"state_topic", "value_template", "device_class", "payload_on", "payload_off",
			"expire_after", "force_update", "off_delay"},
		"switch": {"command_topic", "command_template", "state_topic", "value_template", "device_class",
			"payload_on", "payload_off", "state_on", "state_off", "optimistic", "retain"},
		"button": {"command_topic", "command_template", "payload_press", "device_class", "retain"},
		"number": {"command_topic", "command_template", "state_topic", "value_template", "device_class",
			"min", "max", "step", "mode", "unit_of_measurement", "payload_reset", "optimistic", "retain"},
	}
	required = map[string][]string{
		"sensor": {"state_topic"}, "binary_sensor": {"state_topic"},
		"switch": {"command_topic"}, "button": {"command_topic"}, "number": {"command_topic"},
	}
	// shared are the options of a device configuration its components
	// inherit unless they set their own (discovery.py's SHARED_OPTIONS).
	shared = []string{
		"availability", "availability_mode", "availability_template", "availability_topic",
		"command_topic", "payload_available", "payload_not_available", "state_topic", "qos", "encoding",
	}
	stateClasses = []string{"measurement", "measurement_angle", "total", "total_increasing"}
	levelRE      = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// Parse checks one discovery message, retained on topic under prefix, and
// returns what it announces with every problem found; an empty payload
// (a removal) has none.
func Parse(prefix, topic string, payload []byte) (Config, []string) {
	var c Config
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	rest, ok := strings.CutPrefix(topic, prefix+"/")
	levels := strings.Split(rest, "/")
	if !ok || len(levels) < 3 || len(levels) > 4 || levels[len(levels)-1] != "config" {
		bad("topic %q is not %s/<component>/[<node_id>/]<object_id>/config", topic, prefix)
		return c, problems
	}
	component := levels[0]
	c.Object = levels[len(levels)-2]
	if len(levels) == 4 {
		c.Node = levels[1]
	}
	for _, l := range levels[1 : len(levels)-1] {
		if !levelRE.MatchString(l) {
			bad("topic level %q has characters outside [a-zA-Z0-9_-]", l)
		}
	}
	if len(payload) == 0 {
		return c, problems
	}
	var doc map[string]any
	if err := json.Unmarshal(payload, &doc); err != nil || doc == nil {
		bad("payload is not a JSON object: %v", err)
		return c, problems
	}
	if o, ok := doc["origin"]; ok {
		c.Origin = checkOrigin(o, bad)
	}
	if d, ok := doc["device"]; ok {
		c.Device = checkDevice(d, bad)
	}

	if component == "device" {
		// Device-based discovery: device, origin and components required.
		if c.Device == nil {
			bad("a device configuration needs device")
		}
		if c.Origin == nil {
			bad("a device configuration needs origin")
		}
		comps, ok := doc["components"].(map[string]any)
		if !ok || len(comps) == 0 {
			bad("a device configuration needs components, an object")
			return c, problems
		}
		for _, key := range slices.Sorted(maps.Keys(comps)) {
			comp, ok := comps[key].(map[string]any)
			if !ok {
				bad("components.%s is not an object", key)
				continue
			}
			p, _ := comp["platform"].(string)
			if !slices.Contains(Platforms, p) {
				bad("components.%s: platform %q is not one of %v", key, p, Platforms)
				continue
			}
			if len(comp) == 1 {
				c.Stubs = append(c.Stubs, key)
				continue
			}
			merged := map[string]any{}
			for k, v := range comp {
				merged[k] = v
			}
			for _, k := range shared {
				if v, ok := doc[k]; ok {
					if _, own := merged[k]; !own {
						merged[k] = v
					}
				}
			}
			merged["device"], merged["origin"] = doc["device"], doc["origin"]
			c.Entities = append(c.Entities, checkEntity("components."+key+": ", p, merged, bad))
		}
		for key := range doc {
			if key != "device" && key != "origin" && key != "components" && !slices.Contains(shared, key) {
				bad("option %q is not one a device configuration shares with its components", key)
			}
		}
	} else {
		if !slices.Contains(Platforms, component) {
			bad("component %q is not one of %v", component, Platforms)
			return c, problems
		}
		if _, ok := doc["platform"]; ok {
			bad("platform belongs in device configurations only")
		}
		c.Entities = append(c.Entities, checkEntity("", component, doc, bad))
	}
	slices.SortFunc(c.Entities, func(a, b Entity) int { return strings.Compare(a.UniqueID, b.UniqueID) })
	return c, problems
}

func checkOrigin(v any, bad func(string, ...any)) map[string]any {
	o, ok := v.(map[string]any)
	if !ok {
		bad("origin is not an object")
		return nil
	}
	if n, _ := o["name"].(string); n == "" {
		bad("origin needs a name")
	}
	for k, v := range o {
		switch k {
		case "name", "sw_version", "support_url":
			if _, ok := v.(string); !ok {
				bad("origin.%s is not a string", k)
			}
		default:
			bad("origin.%s is not an origin option (the schema takes no others)", k)
		}
	}
	return o
}

func checkDevice(v any, bad func(string, ...any)) map[string]any {
	d, ok := v.(map[string]any)
	if !ok {
		bad("device is not an object")
		return nil
	}
	ids, _ := d["identifiers"].([]any)
	if len(ids) == 0 && d["connections"] == nil {
		bad("device needs identifiers or connections")
	}
	for _, id := range ids {
		if s, ok := id.(string); !ok || s == "" {
			bad("device.identifiers holds %v, not a string", id)
		}
	}
	for k, v := range d {
		switch k {
		case "identifiers", "connections":
		case "name", "manufacturer", "model", "model_id", "hw_version", "sw_version", "serial_number", "suggested_area", "via_device", "configuration_url":
			if _, ok := v.(string); !ok {
				bad("device.%s is not a string", k)
			}
		default:
			bad("device.%s is not a device option", k)
		}
	}
	return d
}

// checkEntity checks one component's options, the device's shared ones
// merged in.
func checkEntity(at, p string, opts map[string]any, bad func(string, ...any)) Entity {
	e := Entity{Platform: p, Options: opts}
	str := func(k string) string {
		v, ok := opts[k]
		if !ok {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			bad("%s%s is not a string: %v", at, k, v)
		}
		return s
	}
	for k := range opts {
		if !slices.Contains(common, k) && !slices.Contains(platform[p], k) {
			bad("%s%s is not an option of %s (Home Assistant would drop it)", at, k, p)
		}
	}
	for _, k := range required[p] {
		if _, ok := opts[k]; !ok {
			bad("%sa %s requires %s", at, p, k)
		}
	}
	e.UniqueID = str("unique_id")
	if e.UniqueID == "" {
		bad("%sno unique_id: Home Assistant cannot keep the entity's settings", at)
	}
	if v, ok := opts["name"]; ok && v != nil {
		e.Name = str("name")
	}
	e.StateTopic, e.CommandTopic, e.ValueTemplate = str("state_topic"), str("command_topic"), str("value_template")
	if e.StateTopic != "" && !validTopic(e.StateTopic, true) {
		bad("%sstate_topic %q is not a topic", at, e.StateTopic)
	}
	if e.CommandTopic != "" && !validTopic(e.CommandTopic, false) {
		bad("%scommand_topic %q is not a topic one can publish to", at, e.CommandTopic)
	}
	if e.ValueTemplate != "" && !templateRE.MatchString(e.ValueTemplate) {
		bad("%svalue_template %q is not of the form the gateway writes", at, e.ValueTemplate)
	}
	if p == "binary_sensor" || p == "switch" {
		e.PayloadOn, e.PayloadOff = str("payload_on"), str("payload_off")
		if _, ok := opts["payload_on"]; !ok {
			e.PayloadOn = "ON"
		}
		if _, ok := opts["payload_off"]; !ok {
			e.PayloadOff = "OFF"
		}
	}
	if v, ok := opts["payload_press"]; ok {
		s, _ := v.(string)
		e.PayloadPress = &s
	}
	if c := str("entity_category"); c != "" && c != "config" && c != "diagnostic" {
		bad("%sentity_category %q is not config or diagnostic", at, c)
	}
	if c := str("state_class"); c != "" && !slices.Contains(stateClasses, c) {
		bad("%sstate_class %q is not one of %v", at, c, stateClasses)
	}
	if q, ok := opts["qos"]; ok {
		if f, ok := q.(float64); !ok || f != math.Trunc(f) || f < 0 || f > 2 {
			bad("%sqos %v is not 0, 1 or 2", at, q)
		}
	}
	if p == "number" {
		lo, hi := 1.0, 100.0 // Home Assistant's defaults
		for _, k := range []string{"min", "max", "step"} {
			if v, ok := opts[k]; ok {
				f, ok := v.(float64)
				if !ok {
					bad("%s%s is not a number", at, k)
				}
				switch k {
				case "min":
					lo = f
				case "max":
					hi = f
				case "step":
					if f < 0.001 {
						bad("%sstep %v is below 0.001", at, f)
					}
				}
			}
		}
		if lo > hi {
			bad("%smax %v is below min %v", at, hi, lo)
		}
	}
	if m := str("availability_mode"); m != "" && m != "all" && m != "any" && m != "latest" {
		bad("%savailability_mode %q is not all, any or latest", at, m)
	}
	switch av := opts["availability"].(type) {
	case nil:
	case []any:
		for i, a := range av {
			m, ok := a.(map[string]any)
			if !ok {
				bad("%savailability[%d] is not an object", at, i)
				continue
			}
			get := func(k, def string) string {
				if s, ok := m[k].(string); ok {
					return s
				}
				return def
			}
			entry := Availability{Topic: get("topic", ""), ValueTemplate: get("value_template", ""),
				PayloadAvailable: get("payload_available", "online"), PayloadNotAvailable: get("payload_not_available", "offline")}
			if !validTopic(entry.Topic, true) {
				bad("%savailability[%d].topic %q is not a topic", at, i, entry.Topic)
			}
			for k := range m {
				if k != "topic" && k != "value_template" && k != "payload_available" && k != "payload_not_available" {
					bad("%savailability[%d].%s is not an availability option", at, i, k)
				}
			}
			e.Availability = append(e.Availability, entry)
		}
	default:
		bad("%savailability is not a list", at)
	}
	if _, ok := opts["availability_topic"]; ok && opts["availability"] != nil {
		bad("%savailability and availability_topic exclude each other", at)
	}
	return e
}

// validTopic: no empty topic, no NUL, and wildcards only as whole levels
// where subscribing (never where publishing).
func validTopic(t string, subscribe bool) bool {
	if t == "" || strings.ContainsRune(t, 0) {
		return false
	}
	for _, l := range strings.Split(t, "/") {
		if strings.ContainsAny(l, "+#") && (!subscribe || len(l) > 1) {
			return false
		}
	}
	return true
}

// templateRE is the one template form the gateway writes: a value_json
// path, as .key or ['key'] steps, and an optional to_json filter.
var templateRE = regexp.MustCompile(`^\{\{ value_json((?:\.[A-Za-z_][A-Za-z0-9_]*|\['[A-Za-z0-9_-]+'\])*)( \| to_json)? \}\}$`)

var stepRE = regexp.MustCompile(`\.([A-Za-z_][A-Za-z0-9_]*)|\['([A-Za-z0-9_-]+)'\]`)

// Render evaluates a value template of the gateway's form on a payload as
// Home Assistant would: value_json is the payload decoded as JSON, a
// missing key is an error, a value is rendered as Python prints it
// (True, 21.5, text), or as JSON text after | to_json.
func Render(template string, payload []byte) (string, error) {
	m := templateRE.FindStringSubmatch(template)
	if m == nil {
		return "", fmt.Errorf("template %q is not of the form the gateway writes", template)
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("value_json: the payload %q is not JSON", payload)
	}
	for _, step := range stepRE.FindAllStringSubmatch(m[1], -1) {
		key := step[1] + step[2]
		obj, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("value_json: %v has no key %q", v, key)
		}
		if v, ok = obj[key]; !ok {
			return "", fmt.Errorf("value_json: no key %q in %s", key, payload)
		}
	}
	if m[2] != "" {
		b, err := json.Marshal(v)
		return string(b), err
	}
	switch x := v.(type) {
	case bool:
		return map[bool]string{true: "True", false: "False"}[x], nil
	case nil:
		return "None", nil
	case string:
		return x, nil
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil && strings.ContainsAny(string(x), ".eE") {
			return strconv.FormatFloat(f, 'f', -1, 64), nil
		}
		return string(x), nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}
