package sysfs

import (
	"testing"
)

// TestEntities: a reading is a sensor; thermal and w1_slave readings are
// temperatures in degrees Celsius, read from their celsius field.
func TestEntities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		parser, key, field, class, stateClass string
	}{
		{ParserThermal, "temperature", "celsius", "temperature", "measurement"},
		{ParserW1Slave, "temperature", "celsius", "temperature", "measurement"},
		{ParserNumber, "value", "", "", "measurement"},
		{ParserRaw, "value", "", "", ""},
	} {
		c := NewConfig()
		c.Parser = tc.parser
		es := c.Entities()
		if len(es) != 1 {
			t.Fatalf("%s: %d entities", tc.parser, len(es))
		}
		e := es[0]
		if e.Component != "sensor" || e.Key != tc.key || e.Field != tc.field || e.DeviceClass != tc.class ||
			e.StateClass != tc.stateClass || e.Channel != c.Channel {
			t.Errorf("%s: %+v", tc.parser, e)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("%s: %v", tc.parser, err)
		}
	}
}
