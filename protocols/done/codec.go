package done

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// inbound is every field a device may send; which ones matter depends on
// the op. Unknown fields are ignored, as the spec asks.
type inbound struct {
	Op     string          `json:"op"`
	ID     string          `json:"id"`
	Token  string          `json:"token"`
	Model  string          `json:"model"`
	FW     string          `json:"fw"`
	Caps   json.RawMessage `json:"caps"`
	Ch     string          `json:"ch"`
	Data   json.RawMessage `json:"data"`
	Seq    *uint64         `json:"seq"`
	TS     *int64          `json:"ts"`
	QoS    *int            `json:"qos"`
	Retain bool            `json:"retain"`
	OK     *bool           `json:"ok"`
	Error  string          `json:"error"`
	Reason string          `json:"reason"`
}

// errSyntax marks input that is not JSON at all (close 1007), as opposed to
// JSON of the wrong shape (an error reply).
var errSyntax = errors.New("invalid JSON")

// decode parses one text message. It fails with errSyntax for malformed
// JSON and with a plain error for JSON that is not a well-typed object.
func decode(data []byte, m *inbound) error {
	*m = inbound{}
	if err := json.Unmarshal(data, m); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) || !json.Valid(data) {
			return fmt.Errorf("%w: %v", errSyntax, err)
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field == "" {
				return fmt.Errorf("a message must be a JSON object, not %s", typeErr.Value)
			}
			return fmt.Errorf("field %q must not be %s", typeErr.Field, typeErr.Value)
		}
		return err
	}
	return nil
}

// Encoders for the gateway's messages. They append to dst so that hot paths
// can reuse buffers.

func appendWelcome(dst []byte, session string, heartbeatSeconds int, max int64) []byte {
	dst = append(dst, `{"op":"welcome","session":`...)
	dst = appendJSONString(dst, session)
	dst = append(dst, `,"heartbeat":`...)
	dst = strconv.AppendInt(dst, int64(heartbeatSeconds), 10)
	dst = append(dst, `,"max":`...)
	dst = strconv.AppendInt(dst, max, 10)
	return append(dst, '}')
}

func appendAck(dst []byte, seq uint64) []byte {
	dst = append(dst, `{"op":"ack","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}')
}

func appendNack(dst []byte, seq uint64, code, reason string) []byte {
	dst = append(dst, `{"op":"nack","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"code":`...)
	dst = appendJSONString(dst, code)
	dst = append(dst, `,"reason":`...)
	dst = appendJSONString(dst, reason)
	return append(dst, '}')
}

func appendError(dst []byte, code, reason string) []byte {
	dst = append(dst, `{"op":"error","code":`...)
	dst = appendJSONString(dst, code)
	dst = append(dst, `,"reason":`...)
	dst = appendJSONString(dst, reason)
	return append(dst, '}')
}

func appendCommand(dst []byte, id, name string, args json.RawMessage) []byte {
	dst = append(dst, `{"op":"cmd","id":`...)
	dst = appendJSONString(dst, id)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, name)
	if len(args) > 0 {
		dst = append(dst, `,"args":`...)
		dst = append(dst, args...)
	}
	return append(dst, '}')
}

// appendEnvelope wraps a pub's data with its seq and ts, for configs that
// ask for an envelope.
func appendEnvelope(dst []byte, m *inbound) []byte {
	dst = append(dst, '{')
	if m.Seq != nil {
		dst = append(dst, `"seq":`...)
		dst = strconv.AppendUint(dst, *m.Seq, 10)
		dst = append(dst, ',')
	}
	if m.TS != nil {
		dst = append(dst, `"ts":`...)
		dst = strconv.AppendInt(dst, *m.TS, 10)
		dst = append(dst, ',')
	}
	dst = append(dst, `"data":`...)
	dst = append(dst, m.Data...)
	return append(dst, '}')
}

func appendJSONString(dst []byte, s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimRight(b.Bytes(), "\n")...)
}
