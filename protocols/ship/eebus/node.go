package eebus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

var (
	// ErrSyntax marks input that is not JSON, or JSON nested deeper than
	// maxDepth.
	ErrSyntax = errors.New("eebus: invalid JSON")
	// ErrRoot marks a message whose root is not an object with exactly one
	// key (rule 2), or a root-style Go value that does not have exactly one
	// field to encode.
	ErrRoot = errors.New("eebus: root must be an object with exactly one key")
	// ErrDuplicateKey marks an object, or an encoded object (an array of
	// single-key objects), that holds the same key twice. Neither form can
	// express a repeated element (repeated elements are arrays), so the
	// codec refuses to guess which one counts.
	ErrDuplicateKey = errors.New("eebus: duplicate key")
)

// maxDepth bounds the nesting of arrays and objects the codec accepts, and
// of Go values it encodes. SPINE messages nest a few dozen levels at most.
const maxDepth = 1000

// kind says what a node is.
type kind uint8

const (
	kindScalar kind = iota // string, number, true, false or null
	kindObject
	kindArray
)

// node is one JSON value in an order-preserving tree. Scalars keep their
// JSON text as it appeared in the input (escapes and number spelling
// included), so that a conversion changes structure only, never values.
type node struct {
	kind    kind
	raw     []byte   // kindScalar: the JSON text of the value
	members []member // kindObject: in input order
	elems   []*node  // kindArray
}

// member is one key of an object.
type member struct {
	name string // the decoded key
	raw  []byte // the key as JSON text, quotes included
	val  *node
}

// singleKey reports whether n is an object with exactly one key: the
// element form of an encoded object (rule 1).
func (n *node) singleKey() bool {
	return n.kind == kindObject && len(n.members) == 1
}

// describe names the JSON kind of n for error messages.
func (n *node) describe() string {
	switch n.kind {
	case kindObject:
		return "object"
	case kindArray:
		return "array"
	}
	switch c := n.raw[0]; {
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	}
	return "number"
}

// appendTo appends n to b as compact JSON.
func (n *node) appendTo(b []byte) []byte {
	switch n.kind {
	case kindObject:
		b = append(b, '{')
		for i, m := range n.members {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, m.raw...)
			b = append(b, ':')
			b = m.val.appendTo(b)
		}
		return append(b, '}')
	case kindArray:
		b = append(b, '[')
		for i, e := range n.elems {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.appendTo(b)
		}
		return append(b, ']')
	}
	return append(b, n.raw...)
}

// parse reads data, which must be exactly one JSON value, into a tree. It
// validates with encoding/json first, so the scanner below only has to
// find token boundaries; it still checks every step and never panics.
// Objects with a repeated key fail with ErrDuplicateKey.
func parse(data []byte) (*node, error) {
	if !json.Valid(data) {
		err := json.Unmarshal(data, new(json.RawMessage)) // for the position
		if err == nil {
			err = errors.New("not a JSON value")
		}
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	p := parser{data: data}
	n, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.data) {
		return nil, p.errorf("data after the value")
	}
	return n, nil
}

// parseRoot parses a message and checks rule 2: the root is an object with
// exactly one key.
func parseRoot(data []byte) (*node, error) {
	root, err := parse(data)
	if err != nil {
		return nil, err
	}
	if !root.singleKey() {
		if root.kind == kindObject {
			return nil, fmt.Errorf("%w: the root object has %d keys", ErrRoot, len(root.members))
		}
		return nil, fmt.Errorf("%w: the root is a JSON %s", ErrRoot, root.describe())
	}
	return root, nil
}

type parser struct {
	data []byte
	pos  int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrSyntax, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (*node, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested deeper than %d", maxDepth)
	}
	p.space()
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input")
	}
	switch p.data[p.pos] {
	case '{':
		return p.object(depth)
	case '[':
		return p.array(depth)
	case '"':
		raw, err := p.str()
		if err != nil {
			return nil, err
		}
		return &node{kind: kindScalar, raw: raw}, nil
	}
	start := p.pos
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r', ',', ']', '}', ':':
			return &node{kind: kindScalar, raw: p.data[start:p.pos]}, nil
		}
		p.pos++
	}
	if start == p.pos {
		return nil, p.errorf("unexpected end of input")
	}
	return &node{kind: kindScalar, raw: p.data[start:p.pos]}, nil
}

// str returns the string token at p.pos, quotes included.
func (p *parser) str() ([]byte, error) {
	start := p.pos
	for i := p.pos + 1; i < len(p.data); i++ {
		switch p.data[i] {
		case '\\':
			i++
		case '"':
			p.pos = i + 1
			return p.data[start:p.pos], nil
		}
	}
	return nil, p.errorf("unterminated string")
}

func (p *parser) object(depth int) (*node, error) {
	p.pos++ // '{'
	n := &node{kind: kindObject}
	var seen map[string]bool // only for objects with many keys
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return n, nil
	}
	for {
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("expected a key")
		}
		raw, err := p.str()
		if err != nil {
			return nil, err
		}
		name, err := unquote(raw)
		if err != nil {
			return nil, p.errorf("key %s: %v", raw, err)
		}
		if seen == nil && len(n.members) >= 8 {
			seen = make(map[string]bool, 2*len(n.members))
			for _, m := range n.members {
				seen[m.name] = true
			}
		}
		if hasKey(n.members, seen, name) {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateKey, name)
		}
		if seen != nil {
			seen[name] = true
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("expected ':'")
		}
		p.pos++
		val, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.members = append(n.members, member{name: name, raw: raw, val: val})
		p.space()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unterminated object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return n, nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *parser) array(depth int) (*node, error) {
	p.pos++ // '['
	n := &node{kind: kindArray}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return n, nil
	}
	for {
		e, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.elems = append(n.elems, e)
		p.space()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unterminated array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return n, nil
		default:
			return nil, p.errorf("expected ',' or ']'")
		}
	}
}

// hasKey reports whether name is among members; seen, when not nil, holds
// the same names for large objects.
func hasKey(members []member, seen map[string]bool, name string) bool {
	if seen != nil {
		return seen[name]
	}
	for _, m := range members {
		if m.name == name {
			return true
		}
	}
	return false
}

// unquote decodes a JSON string token.
func unquote(raw []byte) (string, error) {
	if len(raw) >= 2 && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}
