package ocpp16

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// kind is the JSON type a schema asks for.
type kind uint8

const (
	kindString kind = iota + 1
	kindInteger
	kindNumber
	kindBoolean
	kindObject
	kindArray
)

var kindNames = [...]string{
	kindString: "a string", kindInteger: "an integer", kindNumber: "a number",
	kindBoolean: "a boolean", kindObject: "an object", kindArray: "an array",
}

// shape is what an OCPP 1.6 JSON schema allows for one value: its type and
// the few constraints the 1.6 schemas use. Objects allow no properties but
// their fields (the schemas' additionalProperties: false).
type shape struct {
	kind       kind
	maxLength  int      // strings: most characters (CiString20 is 20); 0 for any
	enum       []string // strings: the values allowed; nil for any
	dateTime   bool     // strings: an RFC 3339 date-time
	multipleOf float64  // numbers: 0 for any
	fields     []field  // objects
	items      *shape   // arrays
	minItems   int      // arrays
}

// field is a property of an object.
type field struct {
	name     string
	required bool
	shape
}

// validate decodes a payload and checks it against s, which must be an
// object shape. It returns the decoded object, or the first violation as
// the CALLERROR OCPP-J 1.6 answers it with.
func (s shape) validate(payload []byte) (map[string]any, *rpcError) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber() // integers stay distinguishable from 1.0
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, &rpcError{formationViolation, "the payload is not JSON"}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		// The payload's own type is part of the message structure, not a
		// property's data type.
		return nil, &rpcError{formationViolation, "the payload must be a JSON object"}
	}
	if err := s.check("", obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// check reports the first way v departs from s; path names v in the
// description.
func (s shape) check(path string, v any) *rpcError {
	violation := func(code errorCode, format string, args ...any) *rpcError {
		return &rpcError{code, path + ": " + fmt.Sprintf(format, args...)}
	}
	wrongType := func() *rpcError {
		return violation(typeConstraintViolation, "must be %s, not %s", kindNames[s.kind], describe(v))
	}
	switch s.kind {
	case kindString:
		str, ok := v.(string)
		if !ok {
			return wrongType()
		}
		// JSON Schema counts characters, not bytes.
		if n := utf8.RuneCountInString(str); s.maxLength > 0 && n > s.maxLength {
			return violation(propertyConstraintViolation, "%d characters, at most %d allowed", n, s.maxLength)
		}
		if s.enum != nil && !slices.Contains(s.enum, str) {
			return violation(propertyConstraintViolation, "%q is not one of %s", str, strings.Join(s.enum, ", "))
		}
		if s.dateTime {
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				return violation(propertyConstraintViolation, "%q is not an RFC 3339 date-time", str)
			}
		}
	case kindInteger:
		// JSON Schema draft 4, which the 1.6 schemas use, counts as an
		// integer a number without fraction or exponent: 1.0 is not one.
		n, ok := v.(json.Number)
		if !ok || strings.ContainsAny(string(n), ".eE") {
			return wrongType()
		}
	case kindNumber:
		n, ok := v.(json.Number)
		if !ok {
			return wrongType()
		}
		f, err := n.Float64()
		if err != nil {
			return violation(propertyConstraintViolation, "%s is out of range", n)
		}
		if s.multipleOf > 0 && !isMultiple(f, s.multipleOf) {
			return violation(propertyConstraintViolation, "%s is not a multiple of %g", n, s.multipleOf)
		}
	case kindBoolean:
		if _, ok := v.(bool); !ok {
			return wrongType()
		}
	case kindObject:
		obj, ok := v.(map[string]any)
		if !ok {
			return wrongType()
		}
		for _, f := range s.fields {
			fv, present := obj[f.name]
			if !present {
				if f.required {
					return &rpcError{occurenceConstraintViolation, join(path, f.name) + ": required"}
				}
				continue
			}
			if err := f.check(join(path, f.name), fv); err != nil {
				return err
			}
		}
		if name, ok := s.unknown(obj); ok {
			return &rpcError{formationViolation, join(path, name) + ": no such property"}
		}
	case kindArray:
		arr, ok := v.([]any)
		if !ok {
			return wrongType()
		}
		if len(arr) < s.minItems {
			return violation(occurenceConstraintViolation, "%d items, at least %d required", len(arr), s.minItems)
		}
		for i, item := range arr {
			if err := s.items.check(fmt.Sprintf("%s[%d]", path, i), item); err != nil {
				return err
			}
		}
	}
	return nil
}

// unknown returns the first in sorted order (so that the answer does not
// depend on map order) of obj's properties that s does not define.
func (s shape) unknown(obj map[string]any) (first string, found bool) {
	for name := range obj {
		known := slices.ContainsFunc(s.fields, func(f field) bool { return f.name == name })
		if !known && (!found || name < first) {
			first, found = name, true
		}
	}
	return first, found
}

// isMultiple reports whether f is a multiple of m, allowing for binary
// floating point: 21.4 / 0.1 is 213.99999999999997.
func isMultiple(f, m float64) bool {
	q := f / m
	return math.Abs(q-math.Round(q)) <= 1e-9*math.Max(1, math.Abs(q))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// describe names the JSON type of a decoded value for a description.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return "a number with a fraction or exponent"
		}
		return "a number"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return "null"
}
