package eebus

import "fmt"

// The names behind rule 5: the SHIP data message and its payload.
const (
	NameData    = "data"
	payloadName = "payload"
)

// ToEEBus converts a message from plain JSON to the EEBus form (section 5,
// rules 1 to 5). plain must be an object with exactly one key (the message
// name); its value is converted:
//
//   - an object becomes an array of single-key objects, one per key, in the
//     order the keys appear in plain; an empty object becomes [];
//   - an array stays an array, each element converted (so a list of objects
//     becomes an array of arrays, a list of scalars is unchanged);
//   - a scalar is copied as it is written in plain, escapes and number
//     spelling included.
//
// Rule 5: a SHIP data message carries the SPINE message in its own root
// form. ToEEBus recognises it by position and shape: in a message whose
// root key is "data" and whose value is an object, a "payload" key of that
// object whose value is an object with exactly one key (in practice
// {"datagram":{...}}) is converted like a root: it stays a one-key object
// and only its value is converted. A payload of any other shape, and a
// "payload" anywhere else (SPINE has its own "payload" inside the
// datagram), is converted by rule 1.
//
// The output is compact. Input that is not JSON fails with ErrSyntax, a
// root that is not a one-key object with ErrRoot, an object with a
// repeated key with ErrDuplicateKey.
func ToEEBus(plain []byte) ([]byte, error) {
	root, err := parseRoot(plain)
	if err != nil {
		return nil, err
	}
	return rootToEEBus(root).appendTo(nil), nil
}

// rootToEEBus converts a parsed message, a one-key object (rule 2).
func rootToEEBus(root *node) *node {
	m := root.members[0]
	var val *node
	if m.name == NameData && m.val.kind == kindObject {
		val = objectToEEBus(m.val, true)
	} else {
		val = toEEBus(m.val)
	}
	return &node{kind: kindObject, members: []member{{name: m.name, raw: m.raw, val: val}}}
}

func toEEBus(n *node) *node {
	switch n.kind {
	case kindObject:
		return objectToEEBus(n, false)
	case kindArray:
		elems := make([]*node, len(n.elems))
		for i, e := range n.elems {
			elems[i] = toEEBus(e)
		}
		return &node{kind: kindArray, elems: elems}
	}
	return n
}

// objectToEEBus applies rule 1 to an object; data says it is the value of
// a SHIP data message, whose payload follows rule 5.
func objectToEEBus(n *node, data bool) *node {
	elems := make([]*node, len(n.members))
	for i, m := range n.members {
		var val *node
		if data && m.name == payloadName && m.val.singleKey() {
			inner := m.val.members[0]
			val = &node{kind: kindObject, members: []member{{name: inner.name, raw: inner.raw, val: toEEBus(inner.val)}}}
		} else {
			val = toEEBus(m.val)
		}
		elems[i] = &node{kind: kindObject, members: []member{{name: m.name, raw: m.raw, val: val}}}
	}
	return &node{kind: kindArray, elems: elems}
}

// FromEEBus converts a message from the EEBus form to plain JSON, without
// knowing the types: the structure alone decides. eebus must be an object
// with exactly one key; its value is converted:
//
//   - an array whose elements are all single-key objects is an encoded
//     object: the keys are merged into one object, in order (a key that
//     appears twice fails with ErrDuplicateKey);
//   - [] is ambiguous (an empty object or an empty list): FromEEBus makes
//     it {} (see below);
//   - any other array is a list, each element converted: an array of arrays
//     is a list of encoded objects, an array of scalars a list of scalars;
//   - an object met as a value (not as an element of an encoded object) is
//     a message in root form, like the SPINE datagram in a SHIP data
//     payload (rule 5): its keys are kept and each value is converted;
//   - a scalar is copied as written.
//
// Why [] becomes {}: SPINE and SHIP send empty objects all the time (every
// read request, accessMethodsRequest, dnsSd_mDns) while empty lists are
// rare, and a list can be left out instead. The price is that a real empty
// list (say "entity":[]) comes out as {}; Unmarshal, which knows the Go
// type, has no such ambiguity and should be preferred wherever the types
// are known.
//
// The output is compact, keys in input order. FromEEBus reads the JSON
// tokens; unlike a textual replacement it is not confused by whitespace
// between tokens or by strings that contain "[{" or "},{".
func FromEEBus(eebus []byte) ([]byte, error) {
	root, err := parseRoot(eebus)
	if err != nil {
		return nil, err
	}
	out, err := fromEEBus(root)
	if err != nil {
		return nil, err
	}
	return out.appendTo(nil), nil
}

func fromEEBus(n *node) (*node, error) {
	switch n.kind {
	case kindObject:
		out := &node{kind: kindObject, members: make([]member, len(n.members))}
		for i, m := range n.members {
			val, err := fromEEBus(m.val)
			if err != nil {
				return nil, err
			}
			out.members[i] = member{name: m.name, raw: m.raw, val: val}
		}
		return out, nil
	case kindArray:
		if isEncodedObject(n) {
			return mergeEncoded(n)
		}
		out := &node{kind: kindArray, elems: make([]*node, len(n.elems))}
		for i, e := range n.elems {
			val, err := fromEEBus(e)
			if err != nil {
				return nil, err
			}
			out.elems[i] = val
		}
		return out, nil
	}
	return n, nil
}

// isEncodedObject reports whether the array n is an object in EEBus form:
// [] or an array of single-key objects.
func isEncodedObject(n *node) bool {
	for _, e := range n.elems {
		if !e.singleKey() {
			return false
		}
	}
	return true
}

// mergeEncoded turns an encoded object into a plain one.
func mergeEncoded(n *node) (*node, error) {
	out := &node{kind: kindObject, members: make([]member, 0, len(n.elems))}
	var seen map[string]bool
	if len(n.elems) > 8 {
		seen = make(map[string]bool, len(n.elems))
	}
	for _, e := range n.elems {
		m := e.members[0]
		if hasKey(out.members, seen, m.name) {
			return nil, fmt.Errorf("%w: %q in an encoded object", ErrDuplicateKey, m.name)
		}
		if seen != nil {
			seen[m.name] = true
		}
		val, err := fromEEBus(m.val)
		if err != nil {
			return nil, err
		}
		out.members = append(out.members, member{name: m.name, raw: m.raw, val: val})
	}
	return out, nil
}
