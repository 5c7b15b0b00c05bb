package gpio

import (
	"testing"
)

// TestEntities: an input is a binary sensor, an output a switch set with
// its set command; both read the published value, on at 1.
func TestEntities(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		direction, component, command string
	}{
		{DirectionInput, "binary_sensor", ""},
		{DirectionOutput, "switch", "set"},
	} {
		c := NewConfig()
		c.Direction, c.Channel = tc.direction, "door"
		es := c.Entities()
		if len(es) != 1 {
			t.Fatalf("%s: %d entities", tc.direction, len(es))
		}
		e := es[0]
		if e.Component != tc.component || e.Command != tc.command || e.Channel != "door" || e.Field != "value" ||
			string(e.OnValue()) != "1" || string(e.OffValue()) != "0" {
			t.Errorf("%s: %+v", tc.direction, e)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("%s: %v", tc.direction, err)
		}
	}
}
