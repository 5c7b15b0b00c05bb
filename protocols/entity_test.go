package protocols

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func num(f float64) *float64 { return &f }

func TestEntityValidate(t *testing.T) {
	t.Parallel()
	valid := []Entity{
		{Key: "t", Component: ComponentSensor, Channel: "telemetry", Field: "t", Unit: "°C", DeviceClass: "temperature", StateClass: "measurement"},
		{Key: "rh", Component: ComponentSensor, Channel: "sensors/env", Field: "reading.rh"},
		{Key: "raw", Component: ComponentSensor, Channel: "value"},
		{Key: "door", Component: ComponentBinarySensor, Channel: "contact", On: json.RawMessage(`"open"`), Off: json.RawMessage(`"closed"`)},
		{Key: "relay", Component: ComponentSwitch, Channel: "relay", Field: "on", Command: "set-relay"},
		{Key: "blind-relay", Component: ComponentSwitch, Command: "set"}, // no state: optimistic
		{Key: "reboot", Component: ComponentButton, Command: "reboot", DeviceClass: "restart", Category: "config"},
		{Key: "interval", Component: ComponentNumber, Channel: "config", Field: "s", Command: "set-interval", Min: num(10), Max: num(3600), Step: num(10), Unit: "s"},
		Connectivity(),
	}
	for _, e := range valid {
		if err := e.Validate(); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
	for _, tc := range []struct {
		e     Entity
		field string
	}{
		{Entity{Key: "", Component: ComponentSensor, Channel: "x"}, "key"},
		{Entity{Key: strings.Repeat("k", 65), Component: ComponentSensor, Channel: "x"}, "key"},
		{Entity{Key: "a.b", Component: ComponentSensor, Channel: "x"}, "key"},
		{Entity{Key: "k", Name: "a\nb", Component: ComponentSensor, Channel: "x"}, "name"},
		{Entity{Key: "k", Component: "light", Channel: "x"}, "component"},
		{Entity{Key: "k", Component: ComponentSensor}, "channel"},
		{Entity{Key: "k", Component: ComponentBinarySensor}, "channel"},
		{Entity{Key: "k", Component: ComponentButton, Command: "b", Channel: "x"}, "channel"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "cmd/x"}, "channel"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "status/x"}, "channel"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "a//b"}, "channel"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "a/+"}, "channel"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "$SYS"}, "channel"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", Field: "a..b"}, "field"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", Field: "a'b"}, "field"},
		{Entity{Key: "k", Component: ComponentSwitch, Command: "set", Field: "on"}, "field"},
		{Entity{Key: "k", Component: ComponentSwitch, Channel: "x"}, "command"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", Command: "set"}, "command"},
		{Entity{Key: "k", Component: ComponentButton, Command: "a/b"}, "command"},
		{Entity{Key: "k", Component: ComponentBinarySensor, Channel: "x", Unit: "W"}, "unit"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", DeviceClass: "Temperature"}, "device_class"},
		{Entity{Key: "k", Component: ComponentNumber, Command: "n", StateClass: "measurement"}, "state_class"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", StateClass: "total increasing"}, "state_class"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", Category: "system"}, "category"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", On: json.RawMessage(`1`)}, "on"},
		{Entity{Key: "k", Component: ComponentSwitch, Command: "s", On: json.RawMessage(`[1]`)}, "on"},
		{Entity{Key: "k", Component: ComponentSwitch, Command: "s", On: json.RawMessage(`0`), Off: json.RawMessage(` 0 `)}, "off"},
		{Entity{Key: "k", Component: ComponentBinarySensor, Channel: "x", Off: json.RawMessage(`true`)}, "off"},
		{Entity{Key: "k", Component: ComponentSensor, Channel: "x", Min: num(1)}, "min"},
		{Entity{Key: "k", Component: ComponentNumber, Command: "n", Min: num(5), Max: num(1)}, "max"},
		{Entity{Key: "k", Component: ComponentNumber, Command: "n", Step: num(0)}, "step"},
	} {
		err := tc.e.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%+v: %v, want a problem with %s", tc.e, err, tc.field)
			continue
		}
		found := false
		for _, e := range unjoin(err) {
			if errors.As(e, &fe) && fe.Field == tc.field {
				found = true
			}
		}
		if !found {
			t.Errorf("%+v: %v, want a problem with %s", tc.e, err, tc.field)
		}
	}
}

func TestDescriptionValidate(t *testing.T) {
	t.Parallel()
	d := Description{Model: "esp32", Entities: []Entity{
		{Key: "t", Component: ComponentSensor, Channel: "x"},
		{Key: "t", Component: ComponentSensor, Channel: "y"},
		{Key: "bad", Component: "light"},
	}}
	got := d.Validate()
	for _, want := range []string{`entities[1].key: "t" is also the key of entities[0]`, `entities[2].component: "light" is not one of`} {
		if got == nil || !strings.Contains(got.Error(), want) {
			t.Errorf("Validate() = %v, want %q", got, want)
		}
	}
	long := Description{Firmware: strings.Repeat("f", 65), Entities: make([]Entity, MaxEntities+1)}
	for i := range long.Entities {
		long.Entities[i] = Entity{Key: "k" + strings.Repeat("x", i), Component: ComponentSensor, Channel: "x"}
	}
	if err := long.Validate(); err == nil || !strings.Contains(err.Error(), "firmware: longer than 64 bytes") ||
		!strings.Contains(err.Error(), "entities: 65 entities, at most 64") {
		t.Errorf("Validate() = %v", err)
	}
}

func TestOnOffValues(t *testing.T) {
	t.Parallel()
	e := Entity{Component: ComponentSwitch}
	if string(e.OnValue()) != "true" || string(e.OffValue()) != "false" {
		t.Errorf("defaults %s %s", e.OnValue(), e.OffValue())
	}
	e.On, e.Off = json.RawMessage(` "on" `), json.RawMessage("1.50")
	if string(e.OnValue()) != `"on"` || string(e.OffValue()) != "1.50" {
		t.Errorf("compact %s %s", e.OnValue(), e.OffValue())
	}
}
