// Package gpio is the "gpio" device driver: one line of a Linux GPIO chip,
// through the GPIO character device (/dev/gpiochipN, uAPI v2), as an input
// that publishes its debounced edges or as an output that commands and
// routed frames switch.
//
// Input payload, on the configured channel (default "state"), at start and
// after each debounced change the edge option selects:
//
//	{"value":1,"edge":"rising","time":"2025-01-02T15:04:05.123456789Z"}
//
// value is the logical level (active_low inverts it), edge is "rising"
// (0 to 1) or "falling" (1 to 0) and is left out of the value read at
// start, time is when the first edge of the change happened (UTC,
// RFC 3339). Debouncing waits until the line has been quiet for the
// debounce period, then reads it: a bounce that ends where it began
// publishes nothing.
//
// Output payload, at start and whenever the value changes:
//
//	{"value":1,"time":"2025-01-02T15:04:05.123456789Z"}
//
// Commands: "get" (both directions) returns {"value":0|1}; on outputs,
// "set" takes {"value":X} or X, where X is 0, 1, true, false, "on" or "off",
// and returns {"value":0|1}; "pulse" takes {"ms":N}, makes the line active
// for N ms (at most max_pulse) and then inactive, and returns
// {"value":0,"ms":N} when the pulse is over. A frame routed to an output
// (Accept) sets it from its payload: X as above, JSON or bare text.
//
// The driver talks to the hardware through a small interface (chip, in
// chip.go) whose real implementation is the ioctl layer in chardev_linux.go;
// the tests run the driver against a fake chip. The package depends on the
// devices and protocols contracts and golang.org/x/sys/unix only.
package gpio

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// Sample is a copy-paste [[devices]] example for a Raspberry Pi: a button
// and a relay.
//
//go:embed sample.toml
var Sample string

// Driver is the name the driver registers under.
const Driver = "gpio"

func init() {
	devices.Register(Driver, func() devices.Config { return NewConfig() })
}

// Option values.
const (
	DirectionInput  = "input"
	DirectionOutput = "output"

	EdgeRising  = "rising"
	EdgeFalling = "falling"
	EdgeBoth    = "both"

	BiasAsIs     = "as-is"
	BiasPullUp   = "pull-up"
	BiasPullDown = "pull-down"
	BiasDisabled = "disabled"
)

// noLine is the value of Config.Line when the line is not set by offset.
const noLine = -1

// Config is the options of a gpio device.
type Config struct {
	// Chip is the GPIO chip: a name under /dev ("gpiochip0") or a path.
	// Default "gpiochip0".
	Chip string `toml:"chip"`
	// Line is the line's offset on the chip; Name finds it by its name
	// instead ("GPIO17"). Set one of them.
	Line int    `toml:"line"`
	Name string `toml:"name"`
	// Direction is "input" (default) or "output".
	Direction string `toml:"direction"`
	// ActiveLow inverts the line: a low level is value 1. For a button to
	// ground with a pull-up, and for most relay boards.
	ActiveLow bool `toml:"active_low"`
	// Bias is the line's pull resistor: "as-is" (default, leave it as the
	// firmware set it), "pull-up", "pull-down" or "disabled".
	Bias string `toml:"bias"`

	// Edge selects the changes an input publishes: "rising", "falling"
	// or "both" (default).
	Edge string `toml:"edge"`
	// Debounce is how long an input must be quiet after an edge before
	// its level counts; default 20ms, 0 publishes every change the
	// kernel reports.
	Debounce time.Duration `toml:"debounce"`

	// Initial is an output's value when the device starts, 0 (default)
	// or 1.
	Initial int `toml:"initial"`
	// MaxPulse bounds the "pulse" command; default 10s.
	MaxPulse time.Duration `toml:"max_pulse"`

	// Channel the values are published on; default "state".
	Channel string `toml:"channel"`
	// QoS of the published values, 0 or 1; default 1: an edge is an event
	// (a button pressed, a door opened) that must not be lost while the
	// broker restarts.
	QoS int `toml:"qos"`

	// open opens a chip by path; nil is the character device. The tests
	// set a fake.
	open func(path string) (chip, error)
}

// NewConfig returns a Config with the defaults set.
func NewConfig() *Config {
	return &Config{
		Chip:      "gpiochip0",
		Line:      noLine,
		Direction: DirectionInput,
		Bias:      BiasAsIs,
		Edge:      EdgeBoth,
		Debounce:  20 * time.Millisecond,
		MaxPulse:  10 * time.Second,
		Channel:   "state",
		QoS:       1,
	}
}

var chipName = regexp.MustCompile(`^gpiochip[0-9]+$`)

// AcceptsFrames implements devices.FrameTaker: an output takes routed
// values.
func (c *Config) AcceptsFrames() bool { return c.Direction == DirectionOutput }

// Entities implements devices.Describer: an input is a binary sensor, an
// output a switch set with the set command; both are on at value 1.
func (c *Config) Entities() []protocols.Entity {
	e := protocols.Entity{Key: "state", Component: protocols.ComponentBinarySensor, Channel: c.Channel, Field: "value",
		On: json.RawMessage("1"), Off: json.RawMessage("0")}
	if c.Direction == DirectionOutput {
		e.Component, e.Command = protocols.ComponentSwitch, "set"
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
	case c.Chip == "":
		add("chip", `required: a chip such as "gpiochip0"`)
	case !chipName.MatchString(c.Chip) && !filepath.IsAbs(c.Chip):
		add("chip", `%q is neither a chip name such as "gpiochip0" nor a path such as "/dev/gpiochip0"`, c.Chip)
	}
	switch {
	case c.Line != noLine && c.Name != "":
		add("line", "set line (an offset) or name, not both")
	case c.Line == noLine && c.Name == "":
		add("line", `required: the line's offset on the chip (17 for GPIO17 on a Raspberry Pi), or its name = "GPIO17"`)
	case c.Line < noLine:
		add("line", "%d is not a line offset", c.Line)
	}
	if c.Direction != DirectionInput && c.Direction != DirectionOutput {
		add("direction", "%q is not %q or %q", c.Direction, DirectionInput, DirectionOutput)
	}
	if _, ok := biasFlags[c.Bias]; !ok {
		add("bias", "%q is not %q, %q, %q or %q", c.Bias, BiasAsIs, BiasPullUp, BiasPullDown, BiasDisabled)
	}
	if c.Edge != EdgeRising && c.Edge != EdgeFalling && c.Edge != EdgeBoth {
		add("edge", "%q is not %q, %q or %q", c.Edge, EdgeRising, EdgeFalling, EdgeBoth)
	}
	switch {
	case c.Debounce < 0:
		add("debounce", "%s is negative", c.Debounce)
	case c.Debounce > 0 && c.Debounce < time.Millisecond:
		add("debounce", `%s is less than 1ms; write a duration such as "20ms" (a bare number is nanoseconds), or "0s" for none`, c.Debounce)
	}
	switch {
	case c.Initial != 0 && c.Initial != 1:
		add("initial", "must be 0 or 1, got %d", c.Initial)
	case c.Initial != 0 && c.Direction == DirectionInput:
		add("initial", "applies to direction %q only", DirectionOutput)
	}
	if c.MaxPulse < time.Millisecond {
		add("max_pulse", `must be at least 1ms, such as "10s", got %s`, c.MaxPulse)
	}
	if err := devices.ValidChannel(c.Channel); err != nil {
		add("channel", "%v", err)
	}
	if c.QoS != 0 && c.QoS != 1 {
		add("qos", "must be 0 or 1, got %d", c.QoS)
	}
	return errors.Join(errs...)
}

// chipPath is the device node of the chip option.
func (c *Config) chipPath() string {
	if filepath.IsAbs(c.Chip) {
		return c.Chip
	}
	return "/dev/" + c.Chip
}

// Open checks that the chip exists and has the line, and creates the
// device. It holds nothing: Run requests the line and releases it when it
// returns.
func (c *Config) Open(id string, log *slog.Logger) (devices.Device, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &base{cfg: *c, log: log, path: c.chipPath(), open: c.open}
	if b.open == nil {
		b.open = openChip
	}
	ch, err := b.open(b.path)
	if err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	defer ch.Close()
	if b.offset, err = resolveLine(ch, c); err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	b.opts = lineOptions{Consumer: consumer(id), ActiveLow: c.ActiveLow, Bias: c.Bias}
	if c.Direction == DirectionOutput {
		return &Output{base: b}, nil
	}
	return &Input{base: b}, nil
}

// resolveLine returns the offset of the configured line on ch.
func resolveLine(ch chip, c *Config) (int, error) {
	if c.Name != "" {
		return ch.LineByName(c.Name)
	}
	if n := ch.Lines(); c.Line >= n {
		return 0, fmt.Errorf("%s has %d lines (0 to %d), not line %d", ch.Name(), n, n-1, c.Line)
	}
	return c.Line, nil
}

// consumer is the label the kernel shows for a requested line (gpioinfo).
func consumer(id string) string {
	s := "wsgate:" + id
	if len(s) > maxNameSize-1 {
		s = s[:maxNameSize-1]
	}
	return s
}

var (
	_ devices.Config     = (*Config)(nil)
	_ devices.FrameTaker = (*Config)(nil)
)
