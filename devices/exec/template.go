package exec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wsgate/wsgate/protocols"
)

// A template is one argument of a oneshot command: literal text and
// placeholders. However a placeholder expands, the argument stays one
// argument: no shell ever sees it, so nothing in a command can inject
// another.
type template []piece

// piece is literal text, or a placeholder when kind is set.
type piece struct {
	text  string
	kind  placeholder
	field string // of {args.FIELD}
}

type placeholder int

const (
	literal     placeholder = iota
	phName                  // {name}: the command name
	phID                    // {id}: the command id
	phDevice                // {device}: the device id
	phArgs                  // {args}: the args, raw JSON
	phArgsField             // {args.FIELD}: a top-level field of the args object
)

const knownPlaceholders = "{name}, {id}, {device}, {args} and {args.FIELD}"

// parseTemplate parses an argument; {{ and }} are literal braces.
func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t = append(t, piece{text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && strings.HasPrefix(s[i:], "{{"), c == '}' && strings.HasPrefix(s[i:], "}}"):
			lit.WriteByte(c)
			i++
		case c == '}':
			return nil, errors.New(`a lone "}"; write "}}" for a literal one`)
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, errors.New(`a "{" without its "}"; write "{{" for a literal one`)
			}
			name := s[i+1 : i+end]
			p, err := parsePlaceholder(name)
			if err != nil {
				return nil, err
			}
			flush()
			t = append(t, p)
			i += end
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

func parsePlaceholder(name string) (piece, error) {
	switch name {
	case "name":
		return piece{kind: phName}, nil
	case "id":
		return piece{kind: phID}, nil
	case "device":
		return piece{kind: phDevice}, nil
	case "args":
		return piece{kind: phArgs}, nil
	}
	field, ok := strings.CutPrefix(name, "args.")
	switch {
	case !ok:
		return piece{}, fmt.Errorf("unknown placeholder {%s} (known: %s)", name, knownPlaceholders)
	case field == "":
		return piece{}, fmt.Errorf("{%s} names no field", name)
	case strings.ContainsAny(field, ".{"):
		return piece{}, fmt.Errorf("{%s}: only top-level fields of args can be used", name)
	}
	return piece{kind: phArgsField, field: field}, nil
}

// literal reports whether the template has no placeholders.
func (t template) literal() bool {
	for _, p := range t {
		if p.kind != literal {
			return false
		}
	}
	return true
}

// text is the argument of a template without placeholders.
func (t template) text() string {
	var b strings.Builder
	for _, p := range t {
		b.WriteString(p.text)
	}
	return b.String()
}

// argv expands the templates for one command.
func argv(templates []template, device string, cmd protocols.Command) ([]string, error) {
	var fields map[string]json.RawMessage // parsed on first use
	args := bytes.TrimSpace(cmd.Args)
	out := make([]string, len(templates))
	for i, t := range templates {
		var b strings.Builder
		for _, p := range t {
			switch p.kind {
			case literal:
				b.WriteString(p.text)
			case phName:
				b.WriteString(cmd.Name)
			case phID:
				b.WriteString(cmd.ID)
			case phDevice:
				b.WriteString(device)
			case phArgs:
				b.Write(args)
			case phArgsField:
				if fields == nil {
					if err := json.Unmarshal(args, &fields); err != nil || fields == nil {
						return nil, fmt.Errorf("{args.%s}: args are not a JSON object", p.field)
					}
				}
				v, ok := fields[p.field]
				if !ok {
					return nil, fmt.Errorf("{args.%s}: args have no field %q", p.field, p.field)
				}
				b.WriteString(jsonText(v))
			}
		}
		out[i] = b.String()
	}
	return out, nil
}

// jsonText is a JSON string's text, or other JSON as compact JSON text.
func jsonText(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return string(v)
	}
	return buf.String()
}
