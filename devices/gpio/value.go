package gpio

import (
	"encoding/json"
	"fmt"
	"strings"
)

// parseValue reads a line value from a command's args or a routed frame:
// 0, 1, true, false, "on" or "off" (any case), as JSON or as bare text
// (mosquitto_pub -m on), or an object {"value": one of those}.
func parseValue(b []byte) (bool, error) {
	s := strings.TrimSpace(string(b))
	if v, ok := word(s); ok {
		return v, nil
	}
	var x any
	if err := json.Unmarshal([]byte(s), &x); err != nil {
		return false, fmt.Errorf("%s is not 0, 1, true, false, on or off", clip(s))
	}
	if obj, ok := x.(map[string]any); ok {
		inner, ok := obj["value"]
		if !ok || len(obj) != 1 {
			return false, fmt.Errorf(`%s: want {"value": 0|1|true|false|"on"|"off"}`, clip(s))
		}
		x = inner
	}
	switch v := x.(type) {
	case bool:
		return v, nil
	case float64:
		if v == 0 || v == 1 {
			return v == 1, nil
		}
	case string:
		if v, ok := word(strings.TrimSpace(v)); ok {
			return v, nil
		}
	}
	return false, fmt.Errorf("%s is not 0, 1, true, false, on or off", clip(s))
}

func word(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "true", "on":
		return true, true
	case "0", "false", "off":
		return false, true
	}
	return false, false
}

// clip shortens text quoted in an error.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
