package protocols

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
)

// Description is what a device tells about itself beyond its id: what it
// is, and the entities it measures or controls, so that home automation
// software can offer it without being configured for it (the gateway
// announces it to Home Assistant through MQTT discovery). A session that
// has one passes it to Outlet.Attach with the device; it must not change
// afterwards.
type Description struct {
	Name         string // for people; empty: the device id
	Manufacturer string
	Model        string
	Firmware     string
	Serial       string
	Entities     []Entity
}

// Entity is one thing a device measures or controls. Its state is a value
// the device publishes on one of its channels (a field of a JSON object, or
// the whole payload); it is controlled with a command the device takes.
type Entity struct {
	// Key names the entity within its device, for good: 1-64 characters
	// of A-Z a-z 0-9 _ -.
	Key string
	// Name is for people; empty lets the consumer name it (after its
	// device class, or its key).
	Name string
	// Component is what kind of entity it is (the Component constants).
	Component string
	// Channel is where the device publishes the state, relative to the
	// device; StatusChannel stands for the gateway's status of the device.
	// Required for sensors, optional for switches and numbers (without it
	// they have no state), none for buttons.
	Channel string
	// Field is the key of a JSON object payload that holds the value, or
	// a dotted path of keys into nested objects (reading.t); each key 1-64
	// characters of A-Z a-z 0-9 _ -. Empty: the whole payload is the value.
	Field string
	// Command is the command (cmd/<Command>) a switch, button or number
	// is controlled with. A switch or number command's arguments have the
	// state's shape: {"<Field>": value}, or the bare value without Field.
	// A button's command has no arguments.
	Command string
	// Unit, DeviceClass and StateClass are Home Assistant's
	// unit_of_measurement, device_class and state_class.
	Unit, DeviceClass, StateClass string
	// Category is "config" or "diagnostic" for entities that are not the
	// device's main business; empty for those that are.
	Category string
	// On and Off are the JSON values a binary sensor's or a switch's
	// states have (and a switch's command takes); nil: true and false.
	On, Off json.RawMessage
	// Min, Max and Step bound a number's value; nil: the consumer's
	// defaults (Home Assistant's are 1, 100 and 1).
	Min, Max, Step *float64
}

// The components an Entity can be, named as Home Assistant does.
const (
	ComponentSensor       = "sensor"        // a value: a temperature, a count
	ComponentBinarySensor = "binary_sensor" // a state that is on or off: a contact, motion
	ComponentSwitch       = "switch"        // on or off, and set by a command
	ComponentButton       = "button"        // a command without arguments or state
	ComponentNumber       = "number"        // a value set by a command
)

// Components lists the components an Entity can be.
var Components = []string{ComponentSensor, ComponentBinarySensor, ComponentSwitch, ComponentButton, ComponentNumber}

// StatusChannel in an Entity's Channel stands for the gateway's retained
// status of the device ({"state":"online"|"offline",...}), not a channel
// the device publishes on: a connectivity sensor's state.
const StatusChannel = "status"

// MaxEntities bounds the entities of one Description.
const MaxEntities = 64

// Connectivity is the binary sensor of a device's presence: on while the
// device is connected. It describes devices the gateway knows nothing else
// about (a SHIP device, whose SPINE description the gateway does not read).
func Connectivity() Entity {
	return Entity{
		Key: "connectivity", Component: ComponentBinarySensor, Channel: StatusChannel, Field: "state",
		DeviceClass: "connectivity", Category: "diagnostic",
		On: json.RawMessage(`"online"`), Off: json.RawMessage(`"offline"`),
	}
}

// FieldError is one problem with one field of an Entity or Description,
// named by its key in the configuration ("unit", "entities[2].key").
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// In puts the error under a parent key: "unit" in "caps[2]" is
// "caps[2].unit".
func (e *FieldError) In(parent string) *FieldError {
	return &FieldError{Field: parent + "." + e.Field, Problem: e.Problem}
}

// Validate checks the description: its texts, and every entity with
// Entity.Validate under "entities[i]"; keys are unique. Each problem is a
// *FieldError.
func (d *Description) Validate() error {
	var errs []error
	for _, f := range [...][2]string{{"name", d.Name}, {"manufacturer", d.Manufacturer}, {"model", d.Model}, {"firmware", d.Firmware}, {"serial", d.Serial}} {
		if err := checkText(f[1], 64); err != "" {
			errs = append(errs, &FieldError{f[0], err})
		}
	}
	if len(d.Entities) > MaxEntities {
		errs = append(errs, &FieldError{"entities", fmt.Sprintf("%d entities, at most %d", len(d.Entities), MaxEntities)})
	}
	for i, e := range d.Entities {
		at := fmt.Sprintf("entities[%d]", i)
		for _, err := range unjoin(e.Validate()) {
			var fe *FieldError
			if errors.As(err, &fe) {
				err = fe.In(at)
			}
			errs = append(errs, err)
		}
		if j := slices.IndexFunc(d.Entities[:i], func(o Entity) bool { return o.Key == e.Key }); j >= 0 && e.Key != "" {
			errs = append(errs, &FieldError{at + ".key", fmt.Sprintf("%q is also the key of entities[%d]", e.Key, j)})
		}
	}
	return errors.Join(errs...)
}

// Validate checks one entity against what its component takes. Each
// problem is a *FieldError naming the field.
func (e *Entity) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{field, fmt.Sprintf(format, args...)})
	}
	if !validName(e.Key, 64, false) {
		add("key", "%q must be 1-64 characters of A-Z a-z 0-9 _ -", e.Key)
	}
	if p := checkText(e.Name, 64); p != "" {
		add("name", "%s", p)
	}
	if !slices.Contains(Components, e.Component) {
		add("component", "%q is not one of %s", e.Component, strings.Join(Components, ", "))
		return errors.Join(errs...) // what else is allowed depends on it
	}
	stated := e.Component == ComponentSensor || e.Component == ComponentBinarySensor
	commanded := e.Component == ComponentSwitch || e.Component == ComponentButton || e.Component == ComponentNumber
	binary := e.Component == ComponentBinarySensor || e.Component == ComponentSwitch

	switch {
	case e.Component == ComponentButton && e.Channel != "":
		add("channel", "a button has no state")
	case stated && e.Channel == "":
		add("channel", "a %s needs the channel its state is published on", e.Component)
	case e.Channel != "" && !validChannel(e.Channel):
		add("channel", "%q is not a channel (/-separated levels without + # NUL, not starting with $, cmd/ or status/)", e.Channel)
	}
	switch {
	case e.Field != "" && e.Channel == "":
		add("field", "there is no channel for it to be in")
	case e.Field != "" && !validPath(e.Field):
		add("field", "%q must be a key, or a dotted path of keys, of 1-64 characters of A-Z a-z 0-9 _ - each", e.Field)
	}
	switch {
	case commanded && e.Command == "":
		add("command", "a %s needs the command it is controlled with", e.Component)
	case !commanded && e.Command != "":
		add("command", "a %s takes no command", e.Component)
	case e.Command != "" && !validName(e.Command, 64, true):
		add("command", "%q must be 1-64 characters of A-Z a-z 0-9 . _ -", e.Command)
	}
	switch {
	case e.Unit != "" && e.Component != ComponentSensor && e.Component != ComponentNumber:
		add("unit", "a %s has no unit", e.Component)
	case e.Unit != "":
		if p := checkText(e.Unit, 32); p != "" {
			add("unit", "%s", p)
		}
	}
	if e.DeviceClass != "" && !validClass(e.DeviceClass) {
		add("device_class", "%q must be 1-32 characters of a-z 0-9 _", e.DeviceClass)
	}
	switch {
	case e.StateClass != "" && e.Component != ComponentSensor:
		add("state_class", "only a sensor has one")
	case e.StateClass != "" && !validClass(e.StateClass):
		add("state_class", "%q must be 1-32 characters of a-z 0-9 _ (measurement, total, total_increasing)", e.StateClass)
	}
	if e.Category != "" && e.Category != "config" && e.Category != "diagnostic" {
		add("category", "%q is not config or diagnostic", e.Category)
	}
	for _, v := range [...]struct {
		field string
		value json.RawMessage
	}{{"on", e.On}, {"off", e.Off}} {
		switch {
		case v.value == nil:
		case !binary:
			add(v.field, "only a binary_sensor or a switch has on and off values")
		case !scalar(v.value):
			add(v.field, "%s is not a JSON string, number or boolean", v.value)
		}
	}
	if binary && bytes.Equal(e.OnValue(), e.OffValue()) {
		add("off", "%s is also the on value", e.OffValue())
	}
	for _, v := range [...]struct {
		field string
		value *float64
	}{{"min", e.Min}, {"max", e.Max}, {"step", e.Step}} {
		switch {
		case v.value == nil:
		case e.Component != ComponentNumber:
			add(v.field, "only a number has one")
		case math.IsNaN(*v.value) || math.IsInf(*v.value, 0):
			add(v.field, "must be a finite number")
		}
	}
	if e.Component == ComponentNumber {
		if e.Min != nil && e.Max != nil && *e.Min > *e.Max {
			add("max", "%g is below min %g", *e.Max, *e.Min)
		}
		if e.Step != nil && !(*e.Step >= 0.001) {
			add("step", "%g is not at least 0.001", *e.Step)
		}
	}
	return errors.Join(errs...)
}

// OnValue is the JSON value of the on state, compact: On, or true.
func (e *Entity) OnValue() []byte { return compactOr(e.On, "true") }

// OffValue is the JSON value of the off state, compact: Off, or false.
func (e *Entity) OffValue() []byte { return compactOr(e.Off, "false") }

func compactOr(v json.RawMessage, def string) []byte {
	if v == nil {
		return []byte(def)
	}
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return v
	}
	return b.Bytes()
}

// scalar reports whether v is one JSON string, number or boolean.
func scalar(v json.RawMessage) bool {
	var x any
	if json.Unmarshal(v, &x) != nil {
		return false
	}
	switch x.(type) {
	case string, float64, bool:
		return true
	}
	return false
}

// validName: 1-max characters of A-Z a-z 0-9 _ - (and . when dot).
func validName(s string, max int, dot bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || dot && c == '.') {
			return false
		}
	}
	return true
}

// validPath: keys joined with dots, at most 8 deep.
func validPath(s string) bool {
	keys := strings.Split(s, ".")
	if len(keys) > 8 {
		return false
	}
	for _, k := range keys {
		if !validName(k, 64, false) {
			return false
		}
	}
	return true
}

// validClass: Home Assistant's classes are 1-32 characters of a-z 0-9 _.
func validClass(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// checkText says what is wrong with a text for people, "" when nothing.
func checkText(s string, max int) string {
	if len(s) > max {
		return fmt.Sprintf("longer than %d bytes", max)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) {
		return "holds a control character or invalid UTF-8"
	}
	return ""
}

// validChannel: topic levels the device publishes on (below its own
// topic), or StatusChannel. The gateway's cmd/ and status/ levels are not
// channels of the device.
func validChannel(ch string) bool {
	if ch == StatusChannel {
		return true
	}
	if len(ch) > 256 {
		return false
	}
	for i, level := range strings.Split(ch, "/") {
		if level == "" || strings.ContainsAny(level, "+#\x00") || level[0] == '$' {
			return false
		}
		if i == 0 && (level == "cmd" || level == "status") {
			return false
		}
	}
	return true
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
