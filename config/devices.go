package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/wsgate/wsgate/devices"
	_ "github.com/wsgate/wsgate/devices/all" // the built-in drivers
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// Device is one [[devices]] entry: a local device and its driver's options.
type Device struct {
	ID     string `toml:"id"`
	Driver string `toml:"driver"`
	// Entities say what the device measures and controls, for Home
	// Assistant discovery: its [[devices.entities]] tables. Left out, the
	// driver's own (devices.Describer) are used; `entities = []` means
	// none.
	Entities *[]Entity `toml:"entities"`
	// Options are decoded from the same table by the driver; nil when the
	// driver is unknown.
	Options devices.Config `toml:"-"`
}

// Entity is one [[devices.entities]] table (protocols.Entity).
type Entity struct {
	Key         string   `toml:"key"`
	Name        string   `toml:"name"`
	Component   string   `toml:"component"`
	Channel     string   `toml:"channel"`
	Field       string   `toml:"field"`
	Command     string   `toml:"command"`
	Unit        string   `toml:"unit"`
	DeviceClass string   `toml:"device_class"`
	StateClass  string   `toml:"state_class"`
	Category    string   `toml:"category"`
	On          any      `toml:"on"`
	Off         any      `toml:"off"`
	Min         *float64 `toml:"min"`
	Max         *float64 `toml:"max"`
	Step        *float64 `toml:"step"`
}

// Entity converts the table. On and Off, TOML values, become JSON ones.
func (e Entity) Entity() protocols.Entity {
	value := func(v any) json.RawMessage {
		if v == nil {
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return json.RawMessage("{}") // refused by Validate as not a scalar
		}
		return b
	}
	return protocols.Entity{
		Key: e.Key, Name: e.Name, Component: e.Component, Channel: e.Channel, Field: e.Field, Command: e.Command,
		Unit: e.Unit, DeviceClass: e.DeviceClass, StateClass: e.StateClass, Category: e.Category,
		On: value(e.On), Off: value(e.Off), Min: e.Min, Max: e.Max, Step: e.Step,
	}
}

// Description is what the device is announced with: its entities, or
// its driver's when the entry lists none; nil when it has none.
func (d Device) Description() *protocols.Description {
	var entities []protocols.Entity
	switch {
	case d.Entities != nil:
		for _, e := range *d.Entities {
			entities = append(entities, e.Entity())
		}
	default:
		if ds, ok := d.Options.(devices.Describer); ok {
			entities = ds.Entities()
		}
	}
	if len(entities) == 0 {
		return nil
	}
	return &protocols.Description{Model: d.Driver, Entities: entities}
}

// Route is one [[routes]] entry (see router.Route and docs/DEVICES.md).
type Route struct {
	Devices  []string `toml:"devices"`
	Channels []string `toml:"channels"`
	To       []string `toml:"to"`
	Pick     string   `toml:"pick"`
	Channel  string   `toml:"channel"`
}

// RouterRoute converts the entry for the router.
func (r Route) RouterRoute() router.Route {
	return router.Route{Devices: r.Devices, Channels: r.Channels, To: r.To, Pick: r.Pick, Channel: r.Channel}
}

func decodeDevice(md *toml.MetaData, table toml.Primitive) (Device, error) {
	var d Device
	if err := md.PrimitiveDecode(table, &d); err != nil {
		return d, err
	}
	newConfig, ok := devices.Lookup(d.Driver)
	if !ok {
		return d, nil
	}
	d.Options = newConfig()
	return d, md.PrimitiveDecode(table, d.Options)
}

func (c *Config) validateDevices() []fault {
	var fs []fault
	add := func(path, format string, args ...any) {
		fs = append(fs, fault{path: path, msg: fmt.Sprintf(format, args...)})
	}
	ids := map[string]int{}
	for i, d := range c.Devices {
		at := func(key string) string { return fmt.Sprintf("devices.%d.%s", i, key) }
		switch j, dup := ids[d.ID]; {
		case !protocols.ValidDeviceID(d.ID):
			add(at("id"), "%q is not a device id (1-128 bytes, no / + # NUL, not starting with $)", d.ID)
		case dup:
			add(at("id"), "%q is also the id of devices[%d]", d.ID, j)
		}
		ids[d.ID] = i
		if d.Entities != nil {
			desc := protocols.Description{}
			for _, e := range *d.Entities {
				desc.Entities = append(desc.Entities, e.Entity())
			}
			for _, err := range unjoin(desc.Validate()) {
				var fe *protocols.FieldError
				if errors.As(err, &fe) {
					// "entities[2].unit" is "entities.2.unit" in a key path.
					add(at(indexes.ReplaceAllString(fe.Field, ".$1")), "%s", fe.Problem)
				}
			}
		}
		if d.Options == nil {
			continue // unknown driver, reported by Parse
		}
		if err := d.Options.Validate(); err != nil {
			for _, e := range unjoin(err) {
				key, problem := devices.SplitKeyError(e)
				if key == "" {
					add(at("driver"), "%s", problem)
				} else {
					add(at(key), "%s", problem)
				}
			}
		}
	}
	for i, r := range c.Routes {
		at := func(key string) string { return fmt.Sprintf("routes.%d.%s", i, key) }
		for _, p := range r.Devices {
			if _, err := path.Match(p, ""); err != nil {
				add(at("devices"), "pattern %q: %v", p, err)
			}
		}
		for _, f := range r.Channels {
			if !validFilter(f) {
				add(at("channels"), "%q is not a channel filter (levels, + for one level, # last for the rest)", f)
			}
		}
		for _, t := range r.To {
			id, isDevice := strings.CutPrefix(t, "device:")
			switch {
			case t == router.TargetMQTT:
			case !isDevice:
				add(at("to"), "%q is neither \"mqtt\" nor \"device:<id>\"", t)
			default:
				i := slices.IndexFunc(c.Devices, func(d Device) bool { return d.ID == id })
				if i < 0 {
					add(at("to"), "no [[devices]] entry has the id %q", id)
					break
				}
				// What run would refuse: a device that takes no frames.
				if ft, ok := c.Devices[i].Options.(devices.FrameTaker); c.Devices[i].Options != nil && (!ok || !ft.AcceptsFrames()) {
					add(at("to"), "local device %q (%s) does not take frames: serial devices, exec in daemon mode and gpio outputs do", id, c.Devices[i].Driver)
				}
			}
		}
		if r.Pick != "" && slices.Contains(strings.Split(r.Pick, "."), "") {
			add(at("pick"), "%q has an empty field name", r.Pick)
		}
		if r.Channel != "" && !validFilter(r.Channel) || strings.ContainsAny(r.Channel, "+#") {
			add(at("channel"), "%q is not a channel", r.Channel)
		}
	}
	return fs
}

// indexes matches the [N] of "entities[2].unit".
var indexes = regexp.MustCompile(`\[(\d+)\]`)

// validFilter checks an MQTT-style channel filter.
func validFilter(f string) bool {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "":
			return false
		case l == "#" && i != len(levels)-1:
			return false
		case l != "+" && l != "#" && strings.ContainsAny(l, "+#\x00"):
			return false
		}
	}
	return true
}
