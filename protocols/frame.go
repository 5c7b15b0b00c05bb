package protocols

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Frame is one decoded unit of device data on its way to the router, and
// from there to MQTT or local drivers.
type Frame struct {
	Device  string // the attached device id; set by the Outlet
	Channel string // "/"-separated, relative to the device, e.g. "sensors/temp"
	Payload []byte
	QoS     byte // 0, 1 or 2; the MQTT bridge refuses others as invalid
	Retain  bool
	// Seq, when HasSeq, numbers a QoS 1 frame within its device's session
	// (done's seq): a frame sent again with the same Seq after it was
	// refused goes only to the route targets that did not take it.
	Seq    uint64
	HasSeq bool
	// Ack, when set, is called exactly once, from any goroutine, when the
	// frame is safe (QoS 1: broker PUBACK or durably spooled) with nil, or
	// with the reason it was not accepted. Fire-and-forget frames leave it
	// nil.
	Ack func(error)
}

// ValidDeviceID reports whether id can name a device: one non-empty MQTT
// topic level of at most 128 bytes, without wildcards, NUL or a leading
// '$'. Protocols may be stricter (done allows [A-Za-z0-9._-]).
func ValidDeviceID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.HasPrefix(id, "$") &&
		!strings.ContainsAny(id, "/+#\x00")
}

// Command is a downlink request to one device.
type Command struct {
	Device string          // the target device id
	ID     string          // unique per device session, echoed in the result
	Name   string          // e.g. "set-interval"
	Args   json.RawMessage // JSON; nil when the command has no arguments
}

// Result is a device's answer to a Command.
type Result struct {
	ID    string          `json:"id"`
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error string          `json:"error,omitempty"`
}

// ResultChannel is the channel results of the named command are published on.
func ResultChannel(command string) string {
	return "cmd/" + command + "/result"
}

// ResultFrame builds the frame that carries a command's result to the
// router. Results are QoS 1 and not retained.
func ResultFrame(command string, r Result) (Frame, error) {
	payload, err := json.Marshal(r)
	if err != nil {
		return Frame{}, fmt.Errorf("encode result of %q: %w", command, err)
	}
	return Frame{Channel: ResultChannel(command), Payload: payload, QoS: 1}, nil
}
