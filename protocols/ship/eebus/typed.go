package eebus

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

var (
	// ErrType marks EEBus JSON that does not fit the Go type it is decoded
	// into, and Go values Marshal cannot encode (maps, channels, functions).
	ErrType = errors.New("eebus: type mismatch")
	// ErrWrongMessage is returned by Unmarshal when the message is not the
	// one asked for (its root key is not the target's MessageName).
	ErrWrongMessage = errors.New("eebus: wrong message")
)

// Message is a SHIP message type: a Go struct whose fields are the
// message's elements in XSD sequence order, and which knows its root
// element name and the SHIP message type byte it travels with.
type Message interface {
	MessageName() string
	MessageType() MessageType
}

// Marshal encodes v as an EEBus message: a one-key root object whose value
// is v in EEBus form. If v is a Message (or a pointer to one), the root key
// is its MessageName:
//
//	Marshal(ConnectionHello{Phase: HelloReady, Waiting: &w})
//	// {"connectionHello":[{"phase":"ready"},{"waiting":60000}]}
//
// Any other v must be a struct (or a pointer to one) with exactly one field
// to encode, which becomes the root key: that is how a SPINE message,
// struct{ Datagram Datagram `json:"datagram"` }, is written in root form.
//
// Go values map to EEBus JSON like this:
//
//   - a struct becomes an array of single-key objects, one per field, in
//     declaration order (declare fields in XSD order); fields are named and
//     left out as encoding/json does it (the json tag, "-", omitempty,
//     omitzero); a struct with no field to encode becomes [];
//   - a slice or array becomes a JSON array of its elements (a nil slice is
//     [], unless omitted); a []byte is a base64 string, as in encoding/json;
//   - a json.RawMessage is copied in compact form, unconverted: it already
//     holds EEBus JSON (this is how Data.Payload carries the SPINE message);
//     an empty one is null;
//   - a type with its own MarshalJSON or MarshalText is encoded by
//     encoding/json and the result converted like ToEEBus converts values;
//   - booleans, numbers and strings are encoded by encoding/json;
//   - a nil pointer or interface is null, unless omitted;
//   - maps fail with ErrType: they have no field order.
func Marshal(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil, fmt.Errorf("%w: cannot marshal nil", ErrType)
	}
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, fmt.Errorf("%w: cannot marshal a nil %s", ErrType, rv.Type())
	}
	e := encoder{}
	if m, ok := v.(Message); ok {
		e.buf = append(e.buf, '{')
		e.buf = appendJSONString(e.buf, m.MessageName())
		e.buf = append(e.buf, ':')
		if err := e.value(rv, 0); err != nil {
			return nil, err
		}
		return append(e.buf, '}'), nil
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil, fmt.Errorf("%w: cannot marshal a nil %s", ErrType, rv.Type())
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%w: a root-style value must be a struct, not %s", ErrRoot, rv.Type())
	}
	var present []field
	for _, f := range fieldsOf(rv.Type()) {
		if f.present(rv.Field(f.index)) {
			present = append(present, f)
		}
	}
	if len(present) != 1 {
		return nil, fmt.Errorf("%w: %s has %d fields to encode", ErrRoot, rv.Type(), len(present))
	}
	f := present[0]
	e.buf = append(e.buf, '{')
	e.buf = append(e.buf, f.raw...)
	e.buf = append(e.buf, ':')
	if err := e.value(rv.Field(f.index), 0); err != nil {
		return nil, err
	}
	return append(e.buf, '}'), nil
}

// EncodeMessage marshals m and frames it with its message type: the bytes
// to send as one WebSocket binary message.
func EncodeMessage(m Message) ([]byte, error) {
	body, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	return Encode(m.MessageType(), body), nil
}

// Unmarshal decodes the EEBus message data into v, a non-nil pointer,
// driven by v's Go type. That resolves what the untyped FromEEBus cannot
// know: [] decoded into a struct is an empty struct, into a slice an empty
// (non-nil) slice.
//
// If v is a Message, the root key must be its MessageName, otherwise
// Unmarshal fails with ErrWrongMessage; as the one exception, a
// *MessageProtocolHandshakeError also accepts the unwrapped form {"error":N}
// that ship-go sends (section 6.3). Any other v is decoded from the whole
// root object, root-style: a struct's fields are matched to the root key.
//
// The mapping is the reverse of Marshal's. A struct accepts an encoded
// object (an array of single-key objects) and, leniently, an object in root
// form; keys match field names exactly, unknown keys are ignored (a later
// version of the spec may add elements), a key given twice fails with
// ErrDuplicateKey. A json.RawMessage receives the value as compact EEBus
// JSON, unconverted. A type with its own UnmarshalJSON, and an empty
// interface, receive the value converted as FromEEBus converts it. Scalars
// are decoded by encoding/json, null leaves the target as encoding/json
// does. Like encoding/json, Unmarshal does not zero fields that data leaves
// out: decode into a fresh value. Other mismatches fail with ErrType.
func Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%w: Unmarshal needs a non-nil pointer, not %T", ErrType, v)
	}
	root, err := parseRoot(data)
	if err != nil {
		return err
	}
	m := root.members[0]
	msg, ok := v.(Message)
	if !ok {
		return decodeValue(rv.Elem(), root, "")
	}
	name := msg.MessageName()
	if m.name == name {
		return decodeValue(rv.Elem(), m.val, name)
	}
	if _, ok := v.(*MessageProtocolHandshakeError); ok && m.name == unwrappedHandshakeErrorKey {
		return decodeValue(rv.Elem(), root, name)
	}
	return fmt.Errorf("%w: got %q, want %q", ErrWrongMessage, m.name, name)
}

// unwrappedHandshakeErrorKey is the root key of ship-go's
// messageProtocolHandshakeError, sent without its wrapper (quirk Q1).
const unwrappedHandshakeErrorKey = "error"

// Peek returns the name of the message in data, its root key, so that a
// caller can pick the type to Unmarshal into. The one exception is
// ship-go's unwrapped handshake error {"error":N}, for which Peek returns
// NameMessageProtocolHandshakeError. Peek checks that data is JSON with a
// one-key root object (ErrSyntax, ErrRoot, ErrDuplicateKey), nothing more.
func Peek(data []byte) (string, error) {
	root, err := parseRoot(data)
	if err != nil {
		return "", err
	}
	name := root.members[0].name
	if name == unwrappedHandshakeErrorKey {
		return NameMessageProtocolHandshakeError, nil
	}
	return name, nil
}

// field is one encodable struct field.
type field struct {
	name      string
	raw       []byte // name as a JSON string
	index     int
	omitEmpty bool
	omitZero  bool
}

// present reports whether the field is encoded.
func (f field) present(v reflect.Value) bool {
	if f.omitZero && v.IsZero() {
		return false
	}
	if f.omitEmpty && isEmpty(v) {
		return false
	}
	return true
}

var fieldCache sync.Map // reflect.Type -> []field

// fieldsOf lists the exported fields of the struct type t that encode, in
// declaration order, named as encoding/json names them. Embedded structs
// are not flattened: they are fields like any other.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		}
		options := strings.Split(opts, ",")
		fs = append(fs, field{
			name:      name,
			raw:       appendJSONString(nil, name),
			index:     i,
			omitEmpty: slices.Contains(options, "omitempty"),
			omitZero:  slices.Contains(options, "omitzero"),
		})
	}
	actual, _ := fieldCache.LoadOrStore(t, fs)
	return actual.([]field)
}

// isEmpty is encoding/json's omitempty test.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64,
		reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

var (
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	unmarshalerType   = reflect.TypeFor[json.Unmarshaler]()
)

type encoder struct {
	buf []byte
}

func (e *encoder) value(v reflect.Value, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: value nested deeper than %d (a cycle?)", ErrType, maxDepth)
	}
	if !v.IsValid() {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	t := v.Type()
	if t == rawMessageType {
		return e.raw(v.Bytes())
	}
	if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if t.Implements(marshalerType) || t.Implements(textMarshalerType) {
		return e.viaJSON(v)
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return e.value(v.Elem(), depth+1)
	case reflect.Struct:
		e.buf = append(e.buf, '[')
		first := true
		for _, f := range fieldsOf(t) {
			fv := v.Field(f.index)
			if !f.present(fv) {
				continue
			}
			if !first {
				e.buf = append(e.buf, ',')
			}
			first = false
			e.buf = append(e.buf, '{')
			e.buf = append(e.buf, f.raw...)
			e.buf = append(e.buf, ':')
			if err := e.value(fv, depth+1); err != nil {
				return err
			}
			e.buf = append(e.buf, '}')
		}
		e.buf = append(e.buf, ']')
		return nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && v.Kind() == reflect.Slice {
			return e.viaJSON(v) // base64, as encoding/json
		}
		e.buf = append(e.buf, '[')
		for i := range v.Len() {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
		return nil
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return e.viaJSON(v)
	}
	return fmt.Errorf("%w: cannot marshal %s", ErrType, t)
}

// raw appends a json.RawMessage, which holds EEBus JSON already.
func (e *encoder) raw(b []byte) error {
	if len(b) == 0 {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	n, err := parse(b)
	if err != nil {
		return fmt.Errorf("json.RawMessage: %w", err)
	}
	e.buf = n.appendTo(e.buf)
	return nil
}

// viaJSON encodes v with encoding/json and converts the result to EEBus
// form (a no-op for scalars).
func (e *encoder) viaJSON(v reflect.Value) error {
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrType, err)
	}
	n, err := parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", v.Type(), err)
	}
	e.buf = toEEBus(n).appendTo(e.buf)
	return nil
}

// decodeValue decodes n into v, which is settable; path names the place in
// the message for errors.
func decodeValue(v reflect.Value, n *node, path string) error {
	t := v.Type()
	if t == rawMessageType {
		v.SetBytes(n.appendTo(nil))
		return nil
	}
	if n.kind == kindScalar {
		// encoding/json knows every scalar case: pointers, null,
		// Unmarshalers, numbers out of range, strings into numbers.
		if err := json.Unmarshal(n.raw, v.Addr().Interface()); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrType, pathOr(path), err)
		}
		return nil
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return decodeValue(v.Elem(), n, path)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) ||
		v.Kind() == reflect.Interface && t.NumMethod() == 0 {
		plain, err := fromEEBus(n)
		if err != nil {
			return fmt.Errorf("%s: %w", pathOr(path), err)
		}
		if err := json.Unmarshal(plain.appendTo(nil), v.Addr().Interface()); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrType, pathOr(path), err)
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		return decodeStruct(v, n, path)
	case reflect.Slice:
		if n.kind != kindArray {
			break
		}
		s := reflect.MakeSlice(t, len(n.elems), len(n.elems))
		for i, e := range n.elems {
			if err := decodeValue(s.Index(i), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Array:
		if n.kind != kindArray {
			break
		}
		for i := range v.Len() {
			if i >= len(n.elems) {
				v.Index(i).SetZero()
				continue
			}
			if err := decodeValue(v.Index(i), n.elems[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %s: cannot decode a JSON %s into %s", ErrType, pathOr(path), n.describe(), t)
}

// decodeStruct decodes an encoded object, or an object in root form, into
// the struct v.
func decodeStruct(v reflect.Value, n *node, path string) error {
	var members []member
	switch n.kind {
	case kindObject:
		members = n.members
	case kindArray:
		members = make([]member, len(n.elems))
		for i, e := range n.elems {
			if !e.singleKey() {
				return fmt.Errorf("%w: %s: element %d of an encoded %s is a JSON %s, not a single-key object",
					ErrType, pathOr(path), i, v.Type(), e.describe())
			}
			members[i] = e.members[0]
		}
	}
	fs := fieldsOf(v.Type())
	seen := make([]bool, len(fs))
	for _, m := range members {
		i := slices.IndexFunc(fs, func(f field) bool { return f.name == m.name })
		if i < 0 {
			continue // unknown element: ignored
		}
		if seen[i] {
			return fmt.Errorf("%w: %s: %q", ErrDuplicateKey, pathOr(path), m.name)
		}
		seen[i] = true
		if err := decodeValue(v.Field(fs[i].index), m.val, path+"."+m.name); err != nil {
			return err
		}
	}
	return nil
}

func pathOr(path string) string {
	if path == "" {
		return "root"
	}
	return strings.TrimPrefix(path, ".")
}
