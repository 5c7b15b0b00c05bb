package homeassistant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/wsgate/wsgate/protocols"
)

// The payloads follow Home Assistant's MQTT discovery documentation, with
// the full option names (the abbreviations are only there to save memory
// on microcontrollers). Field order is the order of the JSON, so that the
// payloads read well.

// deviceInfo is a configuration's "device".
type deviceInfo struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	Model        string   `json:"model,omitempty"`
	SWVersion    string   `json:"sw_version,omitempty"`
	SerialNumber string   `json:"serial_number,omitempty"`
}

// origin is a configuration's "origin": the application that published it.
type origin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

// availability is one entry of a configuration's "availability": a status
// topic whose JSON "state" says online or offline (Home Assistant's
// payload_available and payload_not_available defaults).
type availability struct {
	Topic         string `json:"topic"`
	ValueTemplate string `json:"value_template"`
}

// component is one entity's configuration: an entry of a device
// configuration's "components" (with Platform), or in component mode the
// whole payload of its topic (with Device, Origin and Availability).
type component struct {
	Platform         string         `json:"platform,omitempty"`
	UniqueID         string         `json:"unique_id"`
	Name             string         `json:"name,omitempty"`
	DeviceClass      string         `json:"device_class,omitempty"`
	StateClass       string         `json:"state_class,omitempty"`
	Unit             string         `json:"unit_of_measurement,omitempty"`
	EntityCategory   string         `json:"entity_category,omitempty"`
	StateTopic       string         `json:"state_topic,omitempty"`
	ValueTemplate    string         `json:"value_template,omitempty"`
	CommandTopic     string         `json:"command_topic,omitempty"`
	PayloadOn        string         `json:"payload_on,omitempty"`
	PayloadOff       string         `json:"payload_off,omitempty"`
	PayloadPress     *string        `json:"payload_press,omitempty"`
	Min              *float64       `json:"min,omitempty"`
	Max              *float64       `json:"max,omitempty"`
	Step             *float64       `json:"step,omitempty"`
	QoS              int            `json:"qos"`
	Device           *deviceInfo    `json:"device,omitempty"`
	Origin           *origin        `json:"origin,omitempty"`
	Availability     []availability `json:"availability,omitempty"`
	AvailabilityMode string         `json:"availability_mode,omitempty"`
}

// deviceConfig is the payload of a device-based discovery topic.
type deviceConfig struct {
	Device           deviceInfo     `json:"device"`
	Origin           origin         `json:"origin"`
	Availability     []availability `json:"availability"`
	AvailabilityMode string         `json:"availability_mode"`
	// Components are component values, or a {"platform": ...} stub that
	// removes an entity the device had.
	Components map[string]any `json:"components"`
}

// stateTemplate reads a status payload's state: "online" or "offline".
const stateTemplate = "{{ value_json.state }}"

// message is one retained publish: a configuration, or an empty payload
// that removes one.
type message struct {
	topic   string
	payload []byte
}

// announcement is how one device is announced: its configurations, each
// on its topic, and the entity keys (with their platforms) they hold.
type announcement struct {
	messages []message
	entities map[string]string // key -> platform
}

// builder makes the configurations of the devices of one gateway.
type builder struct {
	prefix    string // discovery prefix
	mode      Mode
	namespace string // mqtt.topic_prefix: device identifiers are namespace/id
	version   string
	topics    Topics
	network   string // the node of devices that connect to the gateway
	local     string // the node of this gateway's local devices
}

// node is the discovery node a device's configurations live under.
func (b *builder) node(local bool) string {
	if local {
		return b.local
	}
	return b.network
}

// deviceTopic is a device's topic in device mode.
func (b *builder) deviceTopic(id string, local bool) string {
	return b.prefix + "/device/" + b.node(local) + "/" + objectID(id) + "/config"
}

// componentTopic is an entity's topic in component mode.
func (b *builder) componentTopic(id string, local bool, platform, key string) string {
	return b.prefix + "/" + platform + "/" + b.node(local) + "/" + objectID(id) + "_" + key + "/config"
}

// topicsOf are the topics device id has, or would have, in either mode
// with the entities d describes.
func (b *builder) topicsOf(id string, local bool, d *protocols.Description) map[string]bool {
	topics := map[string]bool{b.deviceTopic(id, local): true}
	for _, e := range d.Entities {
		topics[b.componentTopic(id, local, e.Component, e.Key)] = true
	}
	return topics
}

// identifier names a device for Home Assistant: its place in the topic
// tree, namespace/id, unique across the gateways that share the namespace.
func (b *builder) identifier(id string) string { return b.namespace + "/" + id }

// deviceOf is the device an identifier names, ok false for identifiers
// of others.
func (b *builder) deviceOf(identifier string) (string, bool) {
	id, ok := strings.CutPrefix(identifier, b.namespace+"/")
	return id, ok && protocols.ValidDeviceID(id)
}

// announce builds the announcement of a device. Entities that do not
// validate, or whose channel cannot be a topic, are left out and reported
// in skipped. prev lists the entities of the device configuration the
// broker holds (device mode): those the device no longer has get a stub
// that removes them, unless they are stubs already.
func (b *builder) announce(id string, local bool, d *protocols.Description, prev map[string]string) (a announcement, skipped []error) {
	info := deviceInfo{
		Identifiers: []string{b.identifier(id)}, Name: id,
		Manufacturer: d.Manufacturer, Model: d.Model, SWVersion: d.Firmware, SerialNumber: d.Serial,
	}
	if d.Name != "" {
		info.Name = d.Name
	}
	org := origin{Name: "wsgate", SWVersion: b.version}
	avail := []availability{{b.topics.Status(id), stateTemplate}, {b.topics.GatewayStatus(), stateTemplate}}
	a.entities = map[string]string{}
	components := map[string]any{}
	for _, e := range d.Entities {
		c, err := b.component(id, e)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("entity %q: %w", e.Key, err))
			continue
		}
		if _, dup := a.entities[e.Key]; dup {
			skipped = append(skipped, fmt.Errorf("entity %q: the key is taken", e.Key))
			continue
		}
		a.entities[e.Key] = e.Component
		if b.mode == ModeDevice {
			c.Platform = e.Component
			components[e.Key] = c
			continue
		}
		c.Device, c.Origin = &info, &org
		if c.Availability == nil {
			c.Availability = avail
		}
		c.AvailabilityMode = "all"
		a.messages = append(a.messages, message{b.componentTopic(id, local, e.Component, e.Key), mustJSON(c)})
	}
	if b.mode == ModeDevice {
		for key, platform := range prev {
			if _, kept := a.entities[key]; !kept && platform != "" {
				components[key] = map[string]string{"platform": platform}
			}
		}
		cfg := deviceConfig{Device: info, Origin: org, Availability: avail, AvailabilityMode: "all", Components: components}
		a.messages = []message{{b.deviceTopic(id, local), mustJSON(cfg)}}
	}
	return a, skipped
}

// component is the configuration of one entity of device id.
func (b *builder) component(id string, e protocols.Entity) (component, error) {
	if err := e.Validate(); err != nil {
		return component{}, err
	}
	c := component{
		UniqueID: b.identifier(id) + "/" + e.Key, Name: e.Name,
		DeviceClass: e.DeviceClass, StateClass: e.StateClass, Unit: e.Unit, EntityCategory: e.Category,
		QoS: 1,
	}
	if c.Name == "" && e.DeviceClass == "" {
		// Without either, Home Assistant would call it "MQTT Sensor"; with
		// a device class and no name it is named after the class.
		c.Name = e.Key
	}
	switch {
	case e.Channel == protocols.StatusChannel:
		c.StateTopic = b.topics.Status(id)
		// The presence of the device is its state here, not a reason to
		// be unavailable: it is known while the gateway is.
		c.Availability = []availability{{b.topics.GatewayStatus(), stateTemplate}}
	case e.Channel != "":
		topic, err := b.topics.Uplink(id, e.Channel)
		if err != nil {
			return component{}, err
		}
		c.StateTopic = topic
	}
	binary := e.Component == protocols.ComponentBinarySensor || e.Component == protocols.ComponentSwitch
	if c.StateTopic != "" {
		c.ValueTemplate = valueTemplate(e.Field, binary)
	}
	if binary {
		// The state template renders the value as JSON text, and the
		// command's payload is JSON: the same text serves both.
		c.PayloadOn, c.PayloadOff = jsonText(e.OnValue()), jsonText(e.OffValue())
	}
	if e.Command != "" {
		c.CommandTopic = b.topics.Command(id, e.Command)
	}
	switch e.Component {
	case protocols.ComponentButton:
		press := "" // no arguments: the command arrives without args
		c.PayloadPress = &press
	case protocols.ComponentNumber:
		c.Min, c.Max, c.Step = e.Min, e.Max, e.Step
	}
	return c, nil
}

// valueTemplate reads the value at field (a dotted path) of a JSON
// payload, or the whole payload. A binary value is rendered as JSON text,
// to compare with payload_on and payload_off whatever its JSON type.
func valueTemplate(field string, binary bool) string {
	var b strings.Builder
	b.WriteString("{{ value_json")
	if field != "" {
		for key := range strings.SplitSeq(field, ".") {
			b.WriteString("['" + key + "']") // keys are A-Z a-z 0-9 _ -: nothing to escape
		}
	}
	if binary {
		b.WriteString(" | to_json")
	}
	b.WriteString(" }}")
	return b.String()
}

// jsonText is a JSON scalar as Home Assistant's to_json writes it: strings
// are re-encoded (no HTML escapes, characters as they are), numbers and
// booleans kept as the device wrote them.
func jsonText(v []byte) string {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return string(v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(buf.String(), "\n")
}

func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // templates hold ' and the like; keep them readable
	if err := enc.Encode(v); err != nil {
		panic(err) // only strings, numbers and maps of them
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// objectID makes a device id (or a topic prefix, or a gateway id) a
// discovery topic level, which Home Assistant limits to A-Z a-z 0-9 _ -.
// Ids that need no change stay as they are; others have every other
// character replaced with _ and a hash of the original appended, so that
// two ids never meet in one topic.
func objectID(id string) string {
	if validObjectID(id) {
		return id
	}
	b := []byte(id)
	for i, c := range b {
		if !objectChar(c) {
			b[i] = '_'
		}
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("%s_%08x", b, h.Sum32())
}

func validObjectID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !objectChar(s[i]) {
			return false
		}
	}
	return true
}

func objectChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}
