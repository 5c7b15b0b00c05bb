package eebus

import (
	"cmp"
	_ "embed"
	"fmt"
	"slices"
	"strings"
)

// NameDatagram is the root element of a SPINE message.
const NameDatagram = "datagram"

// SPINEToEEBus is ToEEBus for a SPINE message in plain JSON,
// {"datagram":{...}}, that also puts its elements in XSD sequence order
// (rule 1) whatever order plain has them in: JSON objects have no order,
// so a publisher's may be any, and a SPINE peer may read the EEBus form
// strictly in sequence.
//
// The order comes from a table of the SPINE schema (spineorder.txt): the
// datagram's envelope (header, the feature addresses, payload, cmd and
// its filter) and the data of the functions most use cases exchange. What
// the table does not know keeps the publisher's order: within an object
// of a known type such elements come after the known ones (within a cmd,
// a function's data the table does not name takes the place of the
// function data), and inside an element of unknown type nothing moves.
// Nothing is dropped or added. A root other than "datagram" is converted
// as ToEEBus converts it.
func SPINEToEEBus(plain []byte) ([]byte, error) {
	root, err := parseRoot(plain)
	if err != nil {
		return nil, err
	}
	orderSPINE(root)
	return rootToEEBus(root).appendTo(nil), nil
}

// orderSPINE puts the elements of a parsed SPINE message in sequence
// order.
func orderSPINE(root *node) {
	if m := root.members[0]; m.name == NameDatagram {
		spineTypes["DatagramType"].order(m.val)
	}
}

//go:embed spineorder.txt
var spineOrder string

// spineTypes is spineorder.txt, by type name.
var spineTypes = mustParseSchema(spineOrder)

// xsdType is a complex type of the schema table: where each of its
// elements goes, and the complex types of those that have one.
type xsdType struct {
	rank     map[string]int
	types    map[string]*xsdType
	patterns []pattern // tried in order for elements rank does not name
	last     int       // the rank of an element nothing matches
}

// pattern places every element whose name ends in suffix.
type pattern struct {
	suffix string
	rank   int
}

// position returns where the element name goes among t's elements.
func (t *xsdType) position(name string) int {
	if r, ok := t.rank[name]; ok {
		return r
	}
	for _, p := range t.patterns {
		if strings.HasSuffix(name, p.suffix) {
			return p.rank
		}
	}
	return t.last
}

// order sorts the members of n, a value of type t, by position, keeping
// the order of those in the same position, and orders their values in
// turn. An array is a repeated element: each item is a value of type t.
func (t *xsdType) order(n *node) {
	switch n.kind {
	case kindArray:
		for _, e := range n.elems {
			t.order(e)
		}
	case kindObject:
		slices.SortStableFunc(n.members, func(a, b member) int {
			return cmp.Compare(t.position(a.name), t.position(b.name))
		})
		for _, m := range n.members {
			if child := t.types[m.name]; child != nil {
				child.order(m.val)
			}
		}
	}
}

// mustParseSchema parses the embedded table; a mistake in it is a bug
// the tests catch.
func mustParseSchema(text string) map[string]*xsdType {
	types, err := parseSchema(text)
	if err != nil {
		panic("eebus: spineorder.txt: " + err.Error())
	}
	return types
}

// parseSchema reads a schema table in the format spineorder.txt
// describes.
func parseSchema(text string) (map[string]*xsdType, error) {
	// Join each definition's lines first.
	var defs []string
	for i, line := range strings.Split(text, "\n") {
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if len(defs) == 0 {
				return nil, fmt.Errorf("line %d: indented line outside a definition", i+1)
			}
			defs[len(defs)-1] += " " + line
		default:
			defs = append(defs, line)
		}
	}
	types := make(map[string]*xsdType)
	named := func(name string) *xsdType {
		t, ok := types[name]
		if !ok {
			t = &xsdType{}
			types[name] = t
		}
		return t
	}
	defined := make(map[string]bool)
	for _, def := range defs {
		name, body, ok := strings.Cut(def, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%q: not \"Type = elements\"", def)
		}
		if defined[name] {
			return nil, fmt.Errorf("%s defined twice", name)
		}
		defined[name] = true
		t := named(name)
		t.rank = make(map[string]int)
		t.types = make(map[string]*xsdType)
		elems := strings.Fields(body)
		for i, e := range elems {
			elem, typ, typed := strings.Cut(e, ":")
			switch {
			case elem == "" || (typed && typ == ""):
				return nil, fmt.Errorf("%s: element %q", name, e)
			case strings.HasPrefix(elem, "*"):
				if typed {
					return nil, fmt.Errorf("%s: pattern %q with a type", name, e)
				}
				t.patterns = append(t.patterns, pattern{suffix: elem[1:], rank: i})
				continue
			}
			if _, dup := t.rank[elem]; dup {
				return nil, fmt.Errorf("%s: element %s twice", name, elem)
			}
			t.rank[elem] = i
			if typed {
				t.types[elem] = named(typ)
			}
		}
		t.last = len(elems)
	}
	for name := range types {
		if !defined[name] {
			return nil, fmt.Errorf("type %s is used but not defined", name)
		}
	}
	return types, nil
}
