package serial

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/devices/devicetest"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string
	}{
		{"defaults with a port", func(c *Config) {}, nil},
		{"length-prefixed hex", func(c *Config) {
			c.Framing, c.Encoding, c.MaxLine, c.QoS = FramingLength, EncodingHex, 65535, 0
		}, nil},
		{"missing port", func(c *Config) { c.Port = "" },
			[]string{`port: missing: the serial device, such as "/dev/ttyUSB0"`}},
		{"relative port", func(c *Config) { c.Port = "ttyUSB0" },
			[]string{`port: "ttyUSB0" is not an absolute path such as "/dev/ttyUSB0"`}},
		{"bad baud", func(c *Config) { c.Baud = 0 },
			[]string{"baud: 0 is not a speed in bits per second, such as 9600 or 115200"}},
		{"unknown framing and encoding", func(c *Config) { c.Framing, c.Encoding = "slip", "base64" },
			[]string{
				`framing: "slip" is not "lines" or "length-prefixed"`,
				`encoding: "base64" is not "text", "json" or "hex"`,
			}},
		{"line settings", func(c *Config) { c.DataBits, c.Parity, c.StopBits = 9, "Even", 3 },
			[]string{
				"data_bits: 9 is not 5, 6, 7 or 8",
				`parity: "Even" is not none, odd, even, mark or space`,
				"stop_bits: 3 is not 1 or 2",
			}},
		{"channel and qos", func(c *Config) { c.Channel, c.QoS = "cmd/x", 2 },
			[]string{
				`channel: "cmd/x" starts with cmd or status, which belong to the gateway`,
				"qos: 2 is not 0 or 1",
			}},
		{"channel wildcard", func(c *Config) { c.Channel = "rx/#" },
			[]string{`channel: "rx/#" contains a wildcard or NUL`}},
		{"empty channel level", func(c *Config) { c.Channel = "rx//a" },
			[]string{`channel: "rx//a" has an empty topic level`}},
		{"max_line", func(c *Config) { c.MaxLine = 0 },
			[]string{"max_line: 0 is not a positive number of bytes"}},
		{"max_line beyond a 2-byte length", func(c *Config) { c.Framing, c.MaxLine = FramingLength, 70000 },
			[]string{"max_line: 70000 is more than a 2-byte length can announce (65535)"}},
		{"backoff", func(c *Config) { c.ReopenMin, c.ReopenMax = 0, 30 },
			[]string{
				`reopen_min: must be a positive duration such as "1s"`,
				`reopen_max: 30ns is less than 1ms; write a duration string such as "1s" (a bare number is nanoseconds)`,
			}},
		{"backoff order", func(c *Config) { c.ReopenMin, c.ReopenMax = time.Minute, time.Second },
			[]string{"reopen_max: 1s is less than reopen_min (1m0s)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			c.Port = "/dev/ttyUSB0"
			tt.modify(c)
			got := devicetest.Problems(t, c)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	newConfig, ok := devices.Lookup("serial")
	if !ok {
		t.Fatal(`driver "serial" not registered`)
	}
	if _, ok := newConfig().(*Config); !ok {
		t.Fatalf("NewConfig returns %T", newConfig())
	}
}

// TestSample decodes the sample the way the config package does: the
// [[devices]] table into the id and driver, and again into the options,
// with no key left over.
func TestSample(t *testing.T) {
	t.Parallel()
	entries := devicetest.Sample(t, Sample, "serial", NewConfig)
	if len(entries) != 1 {
		t.Fatalf("%d [[devices]] entries", len(entries))
	}
	if _, err := entries[0].Config.Open(entries[0].ID, discard()); err != nil {
		t.Errorf("Open: %v", err)
	}
	// Every option is in the sample, so that it documents them all.
	for _, key := range []string{"port", "baud", "data_bits", "parity", "stop_bits", "framing", "encoding",
		"channel", "qos", "max_line", "reopen_min", "reopen_max"} {
		if !strings.Contains(Sample, "\n"+key+" = ") {
			t.Errorf("sample lacks %s", key)
		}
	}
}

func TestOpenInvalid(t *testing.T) {
	t.Parallel()
	_, err := NewConfig().Open("x", discard())
	if err == nil || !strings.Contains(err.Error(), "port: missing") {
		t.Fatalf("Open of a config without a port: %v", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Errorf("Open error %v does not carry the joined problems", err)
	}
}
