package serial

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"time"

	bugst "go.bug.st/serial"

	"github.com/wsgate/wsgate/devices"
)

// Sample is a [[devices]] entry for a Raspberry Pi, ready to copy.
//
//go:embed sample.toml
var Sample string

// Framing names.
const (
	FramingLines  = "lines"           // newline-delimited, "\r\n" accepted
	FramingLength = "length-prefixed" // 2-byte big-endian length, then the bytes
)

// Encoding names.
const (
	EncodingText = "text" // the frame as a JSON string
	EncodingJSON = "json" // each frame is a JSON value, published as is
	EncodingHex  = "hex"  // the bytes as a JSON string of hex digits
)

// Config is the options of a serial device. NewConfig presets the defaults.
type Config struct {
	// Port is the device node, e.g. /dev/ttyUSB0 or /dev/ttyAMA0.
	Port string `toml:"port"`
	// Baud is the speed in bits per second.
	Baud int `toml:"baud"`
	// DataBits is 5, 6, 7 or 8.
	DataBits int `toml:"data_bits"`
	// Parity is none, odd, even, mark or space.
	Parity string `toml:"parity"`
	// StopBits is 1 or 2.
	StopBits int `toml:"stop_bits"`
	// Framing splits the byte stream into frames: lines or length-prefixed.
	Framing string `toml:"framing"`
	// Encoding turns a frame into a payload and back: text, json or hex.
	Encoding string `toml:"encoding"`
	// Channel is the channel frames are published on.
	Channel string `toml:"channel"`
	// QoS is the MQTT QoS of published frames, 0 or 1.
	QoS int `toml:"qos"`
	// MaxLine bounds one frame in bytes, in both directions.
	MaxLine int `toml:"max_line"`
	// ReopenMin and ReopenMax bound the delay before a lost or missing port
	// is opened again; it doubles after every failure.
	ReopenMin time.Duration `toml:"reopen_min"`
	ReopenMax time.Duration `toml:"reopen_max"`
}

// NewConfig returns a Config with the defaults: 9600 8N1, lines, text, on
// channel "rx" at QoS 1.
func NewConfig() *Config {
	return &Config{
		Baud:      9600,
		DataBits:  8,
		Parity:    "none",
		StopBits:  1,
		Framing:   FramingLines,
		Encoding:  EncodingText,
		Channel:   "rx",
		QoS:       1,
		MaxLine:   4096,
		ReopenMin: time.Second,
		ReopenMax: 30 * time.Second,
	}
}

func init() {
	devices.Register("serial", func() devices.Config { return NewConfig() })
}

// maxLengthPrefixed is the largest frame a 2-byte length can announce.
const maxLengthPrefixed = 0xFFFF

var parities = map[string]bugst.Parity{
	"none":  bugst.NoParity,
	"odd":   bugst.OddParity,
	"even":  bugst.EvenParity,
	"mark":  bugst.MarkParity,
	"space": bugst.SpaceParity,
}

// AcceptsFrames implements devices.FrameTaker: frames are written to the
// port.
func (c *Config) AcceptsFrames() bool { return true }

// Validate reports every problem of the options, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, devices.KeyError(key, format, args...))
	}
	switch {
	case c.Port == "":
		add("port", `missing: the serial device, such as "/dev/ttyUSB0"`)
	case runtime.GOOS != "windows" && !filepath.IsAbs(c.Port):
		add("port", `%q is not an absolute path such as "/dev/ttyUSB0"`, c.Port)
	}
	if c.Baud <= 0 {
		add("baud", "%d is not a speed in bits per second, such as 9600 or 115200", c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		add("data_bits", "%d is not 5, 6, 7 or 8", c.DataBits)
	}
	if _, ok := parities[c.Parity]; !ok {
		add("parity", "%q is not none, odd, even, mark or space", c.Parity)
	}
	if c.StopBits != 1 && c.StopBits != 2 {
		add("stop_bits", "%d is not 1 or 2", c.StopBits)
	}
	if c.Framing != FramingLines && c.Framing != FramingLength {
		add("framing", "%q is not %q or %q", c.Framing, FramingLines, FramingLength)
	}
	if c.Encoding != EncodingText && c.Encoding != EncodingJSON && c.Encoding != EncodingHex {
		add("encoding", "%q is not %q, %q or %q", c.Encoding, EncodingText, EncodingJSON, EncodingHex)
	}
	if err := devices.ValidChannel(c.Channel); err != nil {
		add("channel", "%v", err)
	}
	if c.QoS != 0 && c.QoS != 1 {
		add("qos", "%d is not 0 or 1", c.QoS)
	}
	switch {
	case c.MaxLine <= 0:
		add("max_line", "%d is not a positive number of bytes", c.MaxLine)
	case c.Framing == FramingLength && c.MaxLine > maxLengthPrefixed:
		add("max_line", "%d is more than a 2-byte length can announce (%d)", c.MaxLine, maxLengthPrefixed)
	}
	minOK := durationProblem(add, "reopen_min", c.ReopenMin)
	if durationProblem(add, "reopen_max", c.ReopenMax) && minOK && c.ReopenMax < c.ReopenMin {
		add("reopen_max", "%s is less than reopen_min (%s)", c.ReopenMax, c.ReopenMin)
	}
	return errors.Join(errs...)
}

// durationProblem reports a delay that is not positive, or so small that it
// must be a bare number (nanoseconds); it returns whether d is fine.
func durationProblem(add func(key, format string, args ...any), key string, d time.Duration) bool {
	switch {
	case d <= 0:
		add(key, `must be a positive duration such as "1s"`)
	case d < time.Millisecond:
		add(key, `%s is less than 1ms; write a duration string such as "1s" (a bare number is nanoseconds)`, d)
	default:
		return true
	}
	return false
}

// mode is the port settings of the options.
func (c *Config) mode() *bugst.Mode {
	stop := bugst.OneStopBit
	if c.StopBits == 2 {
		stop = bugst.TwoStopBits
	}
	return &bugst.Mode{BaudRate: c.Baud, DataBits: c.DataBits, Parity: parities[c.Parity], StopBits: stop}
}

// Open creates the device. The port itself is opened by Run, again after
// it is lost, so a device that is not plugged in yet is no error here.
func (c *Config) Open(_ string, log *slog.Logger) (devices.Device, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return newDevice(*c, log), nil
}

var (
	_ devices.Config     = (*Config)(nil)
	_ devices.FrameTaker = (*Config)(nil)
)
