package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyLines maps the keys of a TOML document to the lines they are defined
// on. BurntSushi/toml reports positions only for syntax errors, so this
// small scanner finds them for unknown keys and invalid values. Keys of
// arrays of tables carry their index ("listeners.1.path"); unindexed gives
// the same keys without indices, in document order.
type keyLines struct {
	indexed   map[string]int
	unindexed map[string][]occurrence
}

// occurrence is one place an unindexed key is defined.
type occurrence struct {
	line    int
	indexed string // the key with its array indices
}

func locateKeys(doc string) *keyLines {
	kl := &keyLines{indexed: map[string]int{}, unindexed: map[string][]occurrence{}}
	arrays := map[string]int{} // unindexed array table path -> current index
	var table, plain []string  // current table, with and without indices
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		lineNo := i + 1
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "[["):
			path, _, ok := parseKey(strings.TrimPrefix(line, "[["), "]]")
			if !ok {
				continue
			}
			name := strings.Join(path, ".")
			if _, seen := arrays[name]; seen {
				arrays[name]++
			} else {
				arrays[name] = 0
			}
			// A new element starts its nested arrays of tables afresh.
			for nested := range arrays {
				if strings.HasPrefix(nested, name+".") {
					delete(arrays, nested)
				}
			}
			plain, table = path, indexPath(path, arrays)
			kl.record(table, plain, lineNo)
		case line[0] == '[':
			path, _, ok := parseKey(line[1:], "]")
			if !ok {
				continue
			}
			plain, table = path, indexPath(path, arrays)
			kl.record(table, plain, lineNo)
		default:
			key, value, ok := parseKey(line, "=")
			if !ok {
				continue
			}
			kl.record(append(table[:len(table):len(table)], key...), append(plain[:len(plain):len(plain)], key...), lineNo)
			i = skipValue(lines, i, value)
		}
	}
	return kl
}

// record notes a key defined on line. Keys are spelt as toml.Key.String
// does, quoting parts that are not bare ("tokens.\"garage door\""), so that
// the decoder's keys find them.
func (kl *keyLines) record(indexed, plain []string, line int) {
	k := toml.Key(indexed).String()
	if _, ok := kl.indexed[k]; !ok {
		kl.indexed[k] = line
	}
	p := toml.Key(plain).String()
	kl.unindexed[p] = append(kl.unindexed[p], occurrence{line: line, indexed: k})
}

// indexPath inserts the current index after every prefix that names an
// array of tables.
func indexPath(path []string, arrays map[string]int) []string {
	var out []string
	for i, seg := range path {
		out = append(out, seg)
		if idx, ok := arrays[strings.Join(path[:i+1], ".")]; ok {
			out = append(out, strconv.Itoa(idx))
		}
	}
	return out
}

// line returns the line of an indexed key, or of its nearest defined
// parent; 0 when none is in the document.
func (kl *keyLines) line(key string) int {
	for {
		if l, ok := kl.indexed[key]; ok {
			return l
		}
		dot := strings.LastIndexByte(key, '.')
		if dot < 0 {
			return 0
		}
		key = key[:dot]
	}
}

// takeUnindexed returns the line of the next occurrence of an unindexed key
// such as "listeners.path", and the key with its indices
// ("listeners.1.path"). A key the scanner did not see (inside an inline
// table) gets the line of its nearest parent; the line is 0, and the key
// unchanged, when none is in the document.
func (kl *keyLines) takeUnindexed(key string) (line int, indexed string) {
	if occ := kl.unindexed[key]; len(occ) > 0 {
		kl.unindexed[key] = occ[1:]
		return occ[0].line, occ[0].indexed
	}
	for parent := key; ; {
		dot := strings.LastIndexByte(parent, '.')
		if dot < 0 {
			return 0, key
		}
		parent = parent[:dot]
		if occ := kl.unindexed[parent]; len(occ) > 0 {
			return occ[0].line, occ[0].indexed + key[len(parent):]
		}
	}
}

// indexedAt returns the indexed form of an unindexed key defined on line,
// or key itself when no such definition is known.
func (kl *keyLines) indexedAt(key string, line int) string {
	for _, occ := range kl.unindexed[key] {
		if occ.line == line {
			return occ.indexed
		}
	}
	return key
}

// parseKey reads a dotted key of bare and quoted parts up to end, and
// returns the parts and what follows end.
func parseKey(s, end string) ([]string, string, bool) {
	var parts []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, "", false
		}
		var part string
		switch s[0] {
		case '"', '\'':
			q := s[0]
			j := 1
			for j < len(s) && s[j] != q {
				if q == '"' && s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, "", false
			}
			raw := s[:j+1]
			if q == '"' {
				if u, err := strconv.Unquote(raw); err == nil {
					part = u
				} else {
					part = raw[1 : len(raw)-1]
				}
			} else {
				part = raw[1 : len(raw)-1]
			}
			s = s[j+1:]
		default:
			j := 0
			for j < len(s) && isBareKeyChar(s[j]) {
				j++
			}
			if j == 0 {
				return nil, "", false
			}
			part, s = s[:j], s[j:]
		}
		parts = append(parts, part)
		s = strings.TrimLeft(s, " \t")
		switch {
		case strings.HasPrefix(s, end):
			return parts, s[len(end):], true
		case strings.HasPrefix(s, "."):
			s = s[1:]
		default:
			return nil, "", false
		}
	}
}

func isBareKeyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// skipValue returns the last line of a value that starts on line i: values
// go on over more lines in multi-line strings and open arrays or tables.
func skipValue(lines []string, i int, value string) int {
	depth := 0
	inString := byte(0) // the quote of a multi-line string we are in
	text := value
	for {
		for j := 0; j < len(text); j++ {
			c := text[j]
			if inString != 0 {
				if inString == '"' && c == '\\' {
					j++ // an escaped character, perhaps a quote
					continue
				}
				if strings.HasPrefix(text[j:], strings.Repeat(string(inString), 3)) {
					inString = 0
					j += 2
				}
				continue
			}
			switch {
			case c == '#':
				j = len(text)
			case strings.HasPrefix(text[j:], `"""`) || strings.HasPrefix(text[j:], `'''`):
				inString = c
				j += 2
			case c == '"' || c == '\'':
				k := j + 1
				for k < len(text) && text[k] != c {
					if c == '"' && text[k] == '\\' {
						k++
					}
					k++
				}
				j = k
			case c == '[' || c == '{':
				depth++
			case c == ']' || c == '}':
				depth--
			}
		}
		if (depth <= 0 && inString == 0) || i+1 >= len(lines) {
			return i
		}
		i++
		text = lines[i]
	}
}
