package sysfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// errCRC marks a w1_slave reading whose CRC check failed: skipped and
// counted, not an error of the device.
var errCRC = errors.New("1-Wire CRC check failed")

// parser turns the content of the file into a JSON payload.
type parser func(data []byte, c *Config) ([]byte, error)

var parsers = map[string]parser{
	ParserRaw:     parseRaw,
	ParserNumber:  parseNumber,
	ParserThermal: parseThermal,
	ParserW1Slave: parseW1Slave,
}

var parserList = `"raw", "number", "thermal", "w1_slave"`

// parseRaw: the trimmed text as a JSON string.
func parseRaw(data []byte, _ *Config) ([]byte, error) {
	return json.Marshal(string(bytes.TrimSpace(data)))
}

// parseNumber: a decimal number, scaled, as a JSON number.
func parseNumber(data []byte, c *Config) ([]byte, error) {
	s := string(bytes.TrimSpace(data))
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("%q is not a number", clip(s))
	}
	return number(v*c.Scale + c.Offset)
}

// parseThermal: integer millidegrees Celsius, as in
// /sys/class/thermal/thermal_zone*/temp.
func parseThermal(data []byte, _ *Config) ([]byte, error) {
	s := string(bytes.TrimSpace(data))
	milli, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%q is not integer millidegrees", clip(s))
	}
	return celsius(milli)
}

// parseW1Slave: the two-line w1_slave file of a DS18B20 (w1_therm):
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
func parseW1Slave(data []byte, _ *Config) ([]byte, error) {
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("want two lines (crc and t=), got %q", clip(string(data)))
	}
	crc := strings.TrimSpace(lines[0])
	switch {
	case !strings.Contains(crc, "crc="):
		return nil, fmt.Errorf("first line %q has no crc=", clip(crc))
	case strings.HasSuffix(crc, " NO"):
		return nil, errCRC
	case !strings.HasSuffix(crc, " YES"):
		return nil, fmt.Errorf("first line %q ends in neither YES nor NO", clip(crc))
	}
	_, t, ok := strings.Cut(lines[1], "t=")
	if !ok {
		return nil, fmt.Errorf("second line %q has no t=", clip(lines[1]))
	}
	milli, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("t=%q is not integer millidegrees", clip(t))
	}
	return celsius(milli)
}

func celsius(milli int64) ([]byte, error) {
	c, err := number(float64(milli) / 1000)
	if err != nil {
		return nil, err
	}
	return append(append([]byte(`{"celsius":`), c...), '}'), nil
}

// number encodes v as a JSON number, rounded to 12 significant digits so
// that binary floating point noise from scale (0.1*3 = 0.30000000000000004)
// does not reach the payload.
func number(v float64) ([]byte, error) {
	r, err := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// clip shortens text quoted in an error.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
