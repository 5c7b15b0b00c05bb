// Package sysfs is the "sysfs" device driver: it polls a small text file,
// typically under /sys, parses it and publishes the value as JSON. It owns
// the parsers for the files a home hub reads most: a number, the Raspberry
// Pi's CPU temperature and the DS18B20 1-Wire thermometer.
//
// Payloads, by parser (one frame per reading on the configured channel):
//
//	raw       the trimmed text as a JSON string     "on battery"
//	number    a JSON number, value*scale + offset   21.5
//	thermal   integer millidegrees Celsius          {"celsius": 48.312}
//	w1_slave  the w1_slave file of a DS18B20        {"celsius": 23.125}
//
// A w1_slave file has two lines; the first ends in "crc=xx YES" or
// "crc=xx NO", the second carries the temperature as "t=23125". A reading
// whose CRC check failed is skipped and counted (Stats.SkippedCRC), never
// published. 85000 (85 °C) with a good CRC is what a DS18B20 reports after a
// power-on reset when no conversion has run yet (often a weak supply or
// parasite power); the datasheet makes it a valid temperature, so it is
// published like any other.
//
// A file that cannot be read (a sensor unplugged, a 1-Wire bus gone) or
// parsed is counted (Stats.Errors) and logged once per change of state,
// never published; polling goes on and the device recovers by itself when
// the file comes back.
//
// Commands: "read" takes a reading at once (published like a polled one)
// and returns its payload as the result's data.
//
// The package depends on the devices and protocols contracts only.
package sysfs

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// Sample is a copy-paste [[devices]] example for a Raspberry Pi.
//
//go:embed sample.toml
var Sample string

// Driver is the name the driver registers under.
const Driver = "sysfs"

func init() {
	devices.Register(Driver, func() devices.Config { return NewConfig() })
}

// Parser names.
const (
	ParserRaw     = "raw"
	ParserNumber  = "number"
	ParserThermal = "thermal"
	ParserW1Slave = "w1_slave"
)

// MinInterval is the shortest polling interval accepted; anything faster
// is a busy loop on a Raspberry Pi's slow cores, not a sensor.
const MinInterval = 10 * time.Millisecond

// Config is the options of a sysfs device.
type Config struct {
	// Path is the absolute path of the file to read. It may be a pattern
	// (filepath.Match syntax: "/sys/bus/w1/devices/28-*/w1_slave") that
	// must match exactly one file at each reading.
	Path string `toml:"path"`
	// Interval between readings; default 10s.
	Interval time.Duration `toml:"interval"`
	// Parser is one of raw, number, thermal, w1_slave; default raw.
	Parser string `toml:"parser"`
	// Channel the readings are published on; default "value".
	Channel string `toml:"channel"`
	// QoS of the readings, 0 or 1; default 1. A reading every few seconds
	// costs nothing to acknowledge, and on a home hub a QoS 1 reading is
	// spooled while the broker is down, so graphs have no gaps after a
	// broker restart; choose 0 for fast polling where stale values are
	// worthless.
	QoS int `toml:"qos"`
	// SuppressUnchanged publishes a reading only when its payload differs
	// from the last one published; default false.
	SuppressUnchanged bool `toml:"suppress_unchanged"`
	// Scale and Offset apply to the number parser: value*scale + offset.
	// Defaults 1 and 0.
	Scale  float64 `toml:"scale"`
	Offset float64 `toml:"offset"`
}

// NewConfig returns a Config with the defaults set.
func NewConfig() *Config {
	return &Config{
		Interval: 10 * time.Second,
		Parser:   ParserRaw,
		Channel:  "value",
		QoS:      1,
		Scale:    1,
	}
}

// Entities implements devices.Describer: the reading is a sensor; a
// temperature in degrees Celsius with the thermal and w1_slave parsers.
func (c *Config) Entities() []protocols.Entity {
	e := protocols.Entity{Key: "value", Component: protocols.ComponentSensor, Channel: c.Channel}
	switch c.Parser {
	case ParserThermal, ParserW1Slave:
		e.Key, e.Field, e.Unit, e.DeviceClass, e.StateClass = "temperature", "celsius", "°C", "temperature", "measurement"
	case ParserNumber:
		e.StateClass = "measurement"
	}
	return []protocols.Entity{e}
}

var _ devices.Describer = (*Config)(nil)

// Validate reports every problem with the options, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, devices.KeyError(key, format, args...))
	}
	switch {
	case c.Path == "":
		add("path", "required: the file to read, e.g. %q", "/sys/class/thermal/thermal_zone0/temp")
	case !filepath.IsAbs(c.Path):
		add("path", "%q is not an absolute path", c.Path)
	default:
		if _, err := filepath.Match(c.Path, ""); err != nil {
			add("path", "%q is not a valid pattern: %v", c.Path, err)
		}
	}
	if c.Interval < MinInterval {
		add("interval", "must be at least %s, got %s", MinInterval, c.Interval)
	}
	if _, ok := parsers[c.Parser]; !ok {
		add("parser", "%q is not one of %s", c.Parser, parserList)
	}
	if err := devices.ValidChannel(c.Channel); err != nil {
		add("channel", "%v", err)
	}
	if c.QoS != 0 && c.QoS != 1 {
		add("qos", "must be 0 or 1, got %d", c.QoS)
	}
	switch {
	case math.IsNaN(c.Scale) || math.IsInf(c.Scale, 0) || c.Scale == 0:
		add("scale", "must be a finite number other than 0, got %v", c.Scale)
	case c.Scale != 1 && c.Parser != ParserNumber:
		add("scale", "applies to parser %q only", ParserNumber)
	}
	switch {
	case math.IsNaN(c.Offset) || math.IsInf(c.Offset, 0):
		add("offset", "must be a finite number, got %v", c.Offset)
	case c.Offset != 0 && c.Parser != ParserNumber:
		add("offset", "applies to parser %q only", ParserNumber)
	}
	return errors.Join(errs...)
}

// Open creates the device. It acquires nothing: the file is read at each
// reading, so a sensor that is missing at start is not an error.
func (c *Config) Open(_ string, log *slog.Logger) (devices.Device, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("sysfs: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newDevice(*c, log), nil
}

var _ devices.Config = (*Config)(nil)
