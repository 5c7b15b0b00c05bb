package done

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// inbound is every field a device may send; which ones matter depends on
// the op. Unknown fields are ignored, as the spec asks. Op, Ch, Data and
// Caps point into the message (or the scratch buffer), so they are valid
// only until the next decode: copy what outlives the message.
type inbound struct {
	Op, Ch                              []byte
	ID, Token, Model, FW, Error, Reason string
	Caps, Data                          json.RawMessage
	Seq                                 uint64
	TS                                  int64
	QoS                                 int
	HasSeq, HasTS, HasQoS, HasOK        bool
	Retain, OK                          bool

	scratch []byte // unescaped strings, reused across messages
}

// errSyntax marks input that is not JSON at all (close 1007), as opposed to
// JSON of the wrong shape (an error reply).
var errSyntax = errors.New("invalid JSON")

// decode parses one text message into m without allocating for a typical
// pub. data is valid UTF-8: the gateway fails text messages that are not
// with 1007 before a session sees them. It fails with errSyntax for malformed JSON and with a plain error
// for JSON that is not a well-typed object. Object keys match exactly (the
// spec's names are lower case); of a repeated key the last one counts.
func decode(data []byte, m *inbound) error {
	scratch := m.scratch[:0]
	*m = inbound{}
	defer func() { m.scratch = scratch }()
	if !json.Valid(data) {
		return errSyntax
	}
	d := scanner{data: data}
	d.space()
	if d.peek() != '{' {
		return fmt.Errorf("a message must be a JSON object, not %s", kind(d.data[d.pos:]))
	}
	d.pos++
	for {
		d.space()
		if d.peek() == '}' {
			return nil
		}
		keyRaw := d.value()
		d.space()
		d.pos++ // ':'
		d.space()
		raw := d.value()
		d.space()
		if d.peek() == ',' {
			d.pos++
		}
		var key []byte
		key, scratch = unquote(keyRaw, scratch)
		var err error
		scratch, err = m.set(key, raw, scratch)
		if err != nil {
			return err
		}
	}
}

// set stores one field; raw is its JSON value.
func (m *inbound) set(key, raw, scratch []byte) ([]byte, error) {
	var err error
	switch string(key) {
	case "op":
		m.Op, scratch, err = stringField("op", raw, scratch)
	case "ch":
		m.Ch, scratch, err = stringField("ch", raw, scratch)
	case "id":
		m.ID, err = stringValue("id", raw)
	case "token":
		m.Token, err = stringValue("token", raw)
	case "model":
		m.Model, err = stringValue("model", raw)
	case "fw":
		m.FW, err = stringValue("fw", raw)
	case "error":
		m.Error, err = stringValue("error", raw)
	case "reason":
		m.Reason, err = stringValue("reason", raw)
	case "data":
		m.Data = raw
	case "caps":
		m.Caps = raw
	case "seq":
		m.Seq, m.HasSeq, err = uintField("seq", raw)
	case "ts":
		var u uint64
		var neg bool
		u, neg, m.HasTS, err = intField("ts", raw)
		if err == nil && u > 1<<63-1+boolInt(neg) {
			err = fmt.Errorf(`field "ts" is out of range`)
		}
		m.TS = int64(u)
		if neg {
			m.TS = -m.TS
		}
	case "qos":
		var u uint64
		var neg bool
		u, neg, m.HasQoS, err = intField("qos", raw)
		if err == nil && u > 1<<31 {
			err = fmt.Errorf(`field "qos" is out of range`)
		}
		m.QoS = int(u)
		if neg {
			m.QoS = -m.QoS
		}
	case "retain":
		m.Retain, _, err = boolField("retain", raw)
	case "ok":
		m.OK, m.HasOK, err = boolField("ok", raw)
	}
	return scratch, err
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// scanner walks JSON that json.Valid has accepted, so it needs no error
// handling of its own.
type scanner struct {
	data []byte
	pos  int
}

func (d *scanner) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *scanner) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value returns the raw bytes of the value at pos and moves past it.
func (d *scanner) value() []byte {
	start := d.pos
	switch d.peek() {
	case '"':
		d.pos++
		for d.data[d.pos] != '"' {
			if d.data[d.pos] == '\\' {
				d.pos++
			}
			d.pos++
		}
		d.pos++
	case '{', '[':
		depth := 0
		for {
			c := d.data[d.pos]
			switch c {
			case '"':
				d.value()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			d.pos++
			if depth == 0 {
				break
			}
		}
	default: // number, true, false, null
		for d.pos < len(d.data) {
			switch d.data[d.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return d.data[start:d.pos]
			}
			d.pos++
		}
	}
	return d.data[start:d.pos]
}

// kind names the JSON type of a raw value, for error messages.
func kind(raw []byte) string {
	switch c := firstByte(raw); {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	}
	return "a number"
}

func firstByte(raw []byte) byte {
	for _, c := range raw {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func typeError(field, want string, raw []byte) error {
	return fmt.Errorf("field %q must be %s, not %s", field, want, kind(raw))
}

// stringField returns a string value as bytes, unescaped into scratch
// when needed; null is absent.
func stringField(field string, raw, scratch []byte) ([]byte, []byte, error) {
	switch raw[0] {
	case '"':
		v, scratch := unquote(raw, scratch)
		return v, scratch, nil
	case 'n':
		return nil, scratch, nil
	}
	return nil, scratch, typeError(field, "a string", raw)
}

// stringValue is stringField for fields kept as Go strings.
func stringValue(field string, raw []byte) (string, error) {
	v, _, err := stringField(field, raw, nil)
	return string(v), err
}

func boolField(field string, raw []byte) (value, present bool, err error) {
	switch string(raw) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	case "null":
		return false, false, nil
	}
	return false, false, typeError(field, "true or false", raw)
}

// uintField reads an unsigned integer; null is absent.
func uintField(field string, raw []byte) (uint64, bool, error) {
	u, neg, present, err := intField(field, raw)
	if err == nil && neg && u != 0 {
		err = fmt.Errorf("field %q must not be negative", field)
	}
	return u, present, err
}

// intField reads an integer as magnitude and sign; fractions, exponents
// and values beyond 64 bits are errors, null is absent.
func intField(field string, raw []byte) (u uint64, neg, present bool, err error) {
	if string(raw) == "null" {
		return 0, false, false, nil
	}
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		neg, digits = true, digits[1:]
	}
	if len(digits) == 0 || digits[0] < '0' || digits[0] > '9' {
		return 0, false, false, typeError(field, "an integer", raw)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false, false, typeError(field, "an integer", raw)
		}
		d := uint64(c - '0')
		if u > (1<<64-1-d)/10 {
			return 0, false, false, fmt.Errorf("field %q is out of range", field)
		}
		u = u*10 + d
	}
	return u, neg, true, nil
}

// unquote returns the content of a JSON string literal; escaped content is
// decoded into scratch (invalid surrogates become U+FFFD, as encoding/json
// does).
func unquote(raw, scratch []byte) ([]byte, []byte) {
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body, scratch
	}
	start := len(scratch)
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			scratch = append(scratch, c)
			continue
		}
		i++
		switch body[i] {
		case 'b':
			scratch = append(scratch, '\b')
		case 'f':
			scratch = append(scratch, '\f')
		case 'n':
			scratch = append(scratch, '\n')
		case 'r':
			scratch = append(scratch, '\r')
		case 't':
			scratch = append(scratch, '\t')
		case 'u':
			r := hex4(body[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				// A surrogate is only valid as a pair: \uD8xx\uDCxx.
				pair := rune(utf8.RuneError)
				if i+6 < len(body) && body[i+1] == '\\' && body[i+2] == 'u' {
					pair = utf16.DecodeRune(r, hex4(body[i+3:i+7]))
				}
				if pair != utf8.RuneError {
					i += 6
				}
				r = pair
			}
			scratch = utf8.AppendRune(scratch, r)
		default: // '"', '\\', '/'
			scratch = append(scratch, body[i])
		}
	}
	return scratch[start:], scratch
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
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
	if m.HasSeq {
		dst = append(dst, `"seq":`...)
		dst = strconv.AppendUint(dst, m.Seq, 10)
		dst = append(dst, ',')
	}
	if m.HasTS {
		dst = append(dst, `"ts":`...)
		dst = strconv.AppendInt(dst, m.TS, 10)
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
