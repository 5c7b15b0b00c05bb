package done

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
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
// with 1007 before a session sees them. It fails with errSyntax for what
// json.Valid refuses, and with a plain error for JSON that is not a
// well-typed object. Syntax is checked in the same pass that reads the
// fields. Object keys match exactly (the spec's names are lower case); of a
// repeated key the last one counts.
func decode(data []byte, m *inbound) error {
	scratch := m.scratch[:0]
	*m = inbound{}
	defer func() { m.scratch = scratch }()
	d := scanner{data: data}
	d.space()
	if d.peek() != '{' {
		raw, ok := d.value(0)
		if !ok || !d.end() {
			return errSyntax
		}
		return fmt.Errorf("a message must be a JSON object, not %s", kind(raw))
	}
	d.pos++
	d.space()
	// A wrongly typed field is reported only once the whole message is
	// known to be JSON, since a syntax error must close the session.
	var fieldErr error
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			keyStart := d.pos
			escaped, ok := d.str()
			if !ok {
				return errSyntax
			}
			keyRaw := data[keyStart:d.pos]
			d.space()
			if d.peek() != ':' {
				return errSyntax
			}
			d.pos++
			d.space()
			raw, ok := d.value(1)
			if !ok {
				return errSyntax
			}
			if fieldErr == nil {
				key := keyRaw[1 : len(keyRaw)-1]
				if escaped {
					key, scratch = unquote(keyRaw, scratch)
				}
				scratch, fieldErr = m.set(key, raw, scratch)
			}
			d.space()
			if d.peek() == '}' {
				d.pos++
				break
			}
			if d.peek() != ',' {
				return errSyntax
			}
			d.pos++
			d.space()
		}
	}
	if !d.end() {
		return errSyntax
	}
	return fieldErr
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

// maxNestingDepth is encoding/json's limit on nested arrays and objects,
// the outermost included: json.Valid refuses deeper input.
const maxNestingDepth = 10000

// scanner reads JSON and checks its syntax as it goes, accepting exactly what
// json.Valid accepts (RFC 8259, without checking UTF-8 inside strings).
type scanner struct {
	data []byte
	pos  int
}

// peek returns the byte at pos, or 0 at the end, which no JSON rule accepts
// outside a string.
func (d *scanner) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

func (d *scanner) space() {
	i := d.pos
	// Most messages have no whitespace: c > ' ' ends the loop at once.
	for i < len(d.data) {
		if c := d.data[i]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			break
		}
		i++
	}
	d.pos = i
}

// end reports whether only whitespace is left.
func (d *scanner) end() bool {
	d.space()
	return d.pos == len(d.data)
}

// value moves past one JSON value and returns its raw bytes; ok is false if
// the value is not valid JSON. depth is the number of arrays and objects the
// value is in. Nested containers are walked with a stack of brackets instead
// of recursion, so that hostile nesting costs bytes, not goroutine stack.
func (d *scanner) value(depth int) (raw []byte, ok bool) {
	start := d.pos
	var small [32]byte   // usual nesting fits without allocating
	closers := small[:0] // for each open container, the bracket that closes it
	for {
		switch c := d.peek(); c {
		case '{', '[':
			if depth+len(closers) == maxNestingDepth {
				return nil, false
			}
			closer := byte('}')
			if c == '[' {
				closer = ']'
			}
			d.pos++
			d.space()
			if d.peek() != closer {
				closers = append(closers, closer)
				if c == '{' && !d.key() {
					return nil, false
				}
				continue // to the first element
			}
			d.pos++ // an empty container is a complete value
		case '"':
			if _, ok := d.str(); !ok {
				return nil, false
			}
		case 't':
			if !d.literal("true") {
				return nil, false
			}
		case 'f':
			if !d.literal("false") {
				return nil, false
			}
		case 'n':
			if !d.literal("null") {
				return nil, false
			}
		default:
			if !d.number() {
				return nil, false
			}
		}
		// A value is complete: close the containers it ends, then go on
		// with the next element, if any.
		for {
			if len(closers) == 0 {
				return d.data[start:d.pos], true
			}
			d.space()
			closer := closers[len(closers)-1]
			if d.peek() == closer {
				d.pos++
				closers = closers[:len(closers)-1]
				continue
			}
			if d.peek() != ',' {
				return nil, false
			}
			d.pos++
			d.space()
			if closer == '}' && !d.key() {
				return nil, false
			}
			break
		}
	}
}

// key moves past an object key, its colon and the whitespace up to the
// value.
func (d *scanner) key() bool {
	if _, ok := d.str(); !ok {
		return false
	}
	d.space()
	if d.peek() != ':' {
		return false
	}
	d.pos++
	d.space()
	return true
}

// str moves past a string literal; escaped tells whether it holds a
// backslash escape.
func (d *scanner) str() (escaped, ok bool) {
	data, start := d.data, d.pos
	if start >= len(data) || data[start] != '"' {
		return false, false
	}
	for i := start + 1; i < len(data); i++ {
		i = plainEnd(data, i)
		if i == len(data) {
			break
		}
		switch data[i] {
		case '"':
			d.pos = i + 1
			return escaped, true
		case '\\':
			escaped = true
			i++
			if i == len(data) {
				return false, false
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(data) || !isHex(data[i+1]) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) {
					return false, false
				}
				i += 4
			default:
				return false, false
			}
		default: // a control character
			return false, false
		}
	}
	return false, false // unterminated
}

// plainEnd returns the index of the first byte from i on that a string
// cannot hold as it is (a quote, a backslash or a control character), or
// len(data). It reads eight bytes at a time: strings are most of a typical
// pub.
func plainEnd(data []byte, i int) int {
	for ; i+8 <= len(data); i += 8 {
		w := binary.LittleEndian.Uint64(data[i:])
		if m := bytesBelow(w, 0x20) | bytesBelow(w^(ones*'"'), 1) | bytesBelow(w^(ones*'\\'), 1); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(data) && data[i] >= 0x20 && data[i] != '"' && data[i] != '\\' {
		i++
	}
	return i
}

// ones has 1 in each byte of a word.
const ones = 0x0101010101010101

// bytesBelow sets the high bit of each byte of w that is below n (n <= 0x80),
// the lowest exactly: the subtraction sets the high bit of a byte below n,
// &^ w drops the bytes that had it already, and a borrow can only mark
// bytes above (after, in little endian) one that was below n.
func bytesBelow(w uint64, n byte) uint64 {
	return (w - ones*uint64(n)) &^ w & (0x80 * ones)
}

// number moves past -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *scanner) number() bool {
	data, i := d.data, d.pos
	if i < len(data) && data[i] == '-' {
		i++
	}
	end := digits(data, i)
	if end == i || data[i] == '0' && end > i+1 { // none, or a leading zero
		return false
	}
	i = end
	if i < len(data) && data[i] == '.' {
		if i, end = i+1, digits(data, i+1); end == i {
			return false
		}
		i = end
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if end = digits(data, i); end == i {
			return false
		}
		i = end
	}
	d.pos = i
	return true
}

// digits returns the index of the first byte from i on that is not a digit.
func digits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

func (d *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(lit)) {
		return false
	}
	d.pos += len(lit)
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
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
