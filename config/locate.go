package config

import (
	"strconv"
	"strings"
)

// keyLines maps the keys of a TOML document to the lines they are defined
// on. BurntSushi/toml reports positions only for syntax errors, so this
// small scanner finds them for unknown keys and invalid values. Keys of
// arrays of tables carry their index ("listeners.1.path"); unindexed gives
// the same keys without indices, in document order.
type keyLines struct {
	indexed   map[string]int
	unindexed map[string][]int
}

func locateKeys(doc string) *keyLines {
	kl := &keyLines{indexed: map[string]int{}, unindexed: map[string][]int{}}
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
			path, ok := parseKey(strings.TrimPrefix(line, "[["), "]]")
			if !ok {
				continue
			}
			name := strings.Join(path, ".")
			if _, seen := arrays[name]; seen {
				arrays[name]++
			} else {
				arrays[name] = 0
			}
			plain, table = path, indexPath(path, arrays)
			kl.record(table, plain, lineNo)
		case line[0] == '[':
			path, ok := parseKey(line[1:], "]")
			if !ok {
				continue
			}
			plain, table = path, indexPath(path, arrays)
			kl.record(table, plain, lineNo)
		default:
			key, ok := parseKey(line, "=")
			if !ok {
				continue
			}
			kl.record(append(table[:len(table):len(table)], key...), append(plain[:len(plain):len(plain)], key...), lineNo)
			i = skipValue(lines, i, line[strings.IndexByte(line, '=')+1:])
		}
	}
	return kl
}

func (kl *keyLines) record(indexed, plain []string, line int) {
	k := strings.Join(indexed, ".")
	if _, ok := kl.indexed[k]; !ok {
		kl.indexed[k] = line
	}
	p := strings.Join(plain, ".")
	kl.unindexed[p] = append(kl.unindexed[p], line)
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

// takeUnindexed returns the line of the next occurrence of an unindexed key.
func (kl *keyLines) takeUnindexed(key string) int {
	lines := kl.unindexed[key]
	if len(lines) == 0 {
		return 0
	}
	kl.unindexed[key] = lines[1:]
	return lines[0]
}

// parseKey reads a dotted key of bare and quoted parts up to end.
func parseKey(s, end string) ([]string, bool) {
	var parts []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, false
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
				return nil, false
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
				return nil, false
			}
			part, s = s[:j], s[j:]
		}
		parts = append(parts, part)
		s = strings.TrimLeft(s, " \t")
		switch {
		case strings.HasPrefix(s, end):
			return parts, true
		case strings.HasPrefix(s, "."):
			s = s[1:]
		default:
			return nil, false
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
