package config

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestLocateKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want map[string]int // indexed key -> line; keys absent from want are not checked
		none []string       // indexed keys that must not be found
	}{
		{
			name: "tables and keys",
			doc: `# comment
top = 1

[gateway]
id = "hub-1"   # trailing comment
  shutdown_grace = "10s"

[ log ]
level="info"
`,
			want: map[string]int{"top": 2, "gateway": 4, "gateway.id": 5, "gateway.shutdown_grace": 6, "log": 8, "log.level": 9},
		},
		{
			name: "dotted keys",
			doc: `websocket.ping_interval = "30s"
[protocols]
done.envelope = true
done . max_inflight = 5
"done".'command_timeout' = "1s"
`,
			want: map[string]int{
				"websocket.ping_interval":        1,
				"protocols":                      2,
				"protocols.done.envelope":        3,
				"protocols.done.max_inflight":    4,
				"protocols.done.command_timeout": 5,
			},
		},
		{
			name: "quoted keys",
			doc: `[protocols.done.tokens]
"garage door" = "a"
'lit.eral' = "b"
"esc\"aped" = "c"
"a=b" = "d"
"uni\u00e9" = "e"
bare-key_1 = "f"
[ "dotted.table" . inner ]
x = 1
`,
			want: map[string]int{
				"protocols.done.tokens":               1,
				`protocols.done.tokens."garage door"`: 2,
				`protocols.done.tokens."lit.eral"`:    3,
				`protocols.done.tokens."esc\"aped"`:   4,
				`protocols.done.tokens."a=b"`:         5,
				`protocols.done.tokens."unié"`:        6,
				"protocols.done.tokens.bare-key_1":    7,
				`"dotted.table".inner`:                8,
				`"dotted.table".inner.x`:              9,
			},
		},
		{
			name: "multi-line strings",
			doc: `a = """
b = 1
[not.a.table]
"""
c = '''
d = 2 '''
e = """one line"""
f = """ends "" with quotes"""""
g = """escaped \""" quote
h = 3
"""
i = 'x' # '''
j = "a = \" [b"
"k=v" = """
l = 4
"""
m = 5
`,
			want: map[string]int{"a": 1, "c": 5, "e": 7, "f": 8, "g": 9, "i": 12, "j": 13, `"k=v"`: 14, "m": 17},
			none: []string{"b", "not.a.table", "d", "h", "l"},
		},
		{
			name: "multi-line arrays",
			doc: `[protocols]
order = [
  "done", # a comment with ] and [
  "ship",
  [1, 2],
  "]",
  '[',
]
policy = "client"
allowed = [ { a = 1 },
  { b = [ 2 ] } ]
after = 1
`,
			want: map[string]int{"protocols.order": 2, "protocols.policy": 9, "protocols.allowed": 10, "protocols.after": 12},
			none: []string{"protocols.a", "protocols.b"},
		},
		{
			name: "inline tables",
			doc: `[protocols]
done = { envelope = true, tokens = { d1 = "x" } }
other = {
}
next = 1
`,
			want: map[string]int{"protocols.done": 2, "protocols.other": 3, "protocols.next": 5},
			none: []string{"protocols.done.envelope", "protocols.done.tokens"},
		},
		{
			name: "arrays of tables",
			doc: `[[listeners]]
address = ":8080"

[[listeners]]
address = ":9090"
path = "/ship"

[listeners.tls]
cert = "c"

[[ listeners ]]
path = "/third"

[protocols]
order = ["done"]
`,
			want: map[string]int{
				"listeners.0":          1,
				"listeners.0.address":  2,
				"listeners.1":          4,
				"listeners.1.address":  5,
				"listeners.1.path":     6,
				"listeners.1.tls":      8,
				"listeners.1.tls.cert": 9,
				"listeners.2":          11,
				"listeners.2.path":     12,
				"protocols.order":      15,
			},
			none: []string{"listeners.0.path", "listeners.2.address", "listeners.3"},
		},
		{
			name: "nested arrays of tables",
			doc: `[[a]]
x = 1
[[a.b]]
y = 1
[[a.b]]
y = 2
[[a]]
x = 2
[[a.b]]
y = 3
`,
			want: map[string]int{
				"a.0": 1, "a.0.x": 2, "a.0.b.0": 3, "a.0.b.0.y": 4, "a.0.b.1": 5, "a.0.b.1.y": 6,
				"a.1": 7, "a.1.x": 8, "a.1.b.0": 9, "a.1.b.0.y": 10,
			},
			none: []string{"a.1.b.2", "a.1.b.2.y"},
		},
		{
			name: "CRLF and tabs",
			doc:  "[log]\r\n\tlevel = \"info\"\r\nformat\t=\t\"text\"\r\n",
			want: map[string]int{"log": 1, "log.level": 2, "log.format": 3},
		},
		{
			name: "first definition wins",
			doc:  "[log]\nlevel = 1\nlevel = 2\n",
			want: map[string]int{"log.level": 2},
		},
		{
			name: "malformed lines are skipped",
			doc: `[unclosed
= 1
"open = 1
key
[[x]
ok = 1
`,
			want: map[string]int{"ok": 6},
			none: []string{"unclosed", "open", "key", "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kl := locateKeys(tt.doc)
			for key, want := range tt.want {
				if got, ok := kl.indexed[key]; !ok || got != want {
					t.Errorf("line of %q = %d (found %v), want %d", key, got, ok, want)
				}
			}
			for _, key := range tt.none {
				if line, ok := kl.indexed[key]; ok {
					t.Errorf("found %q on line %d, want nothing", key, line)
				}
			}
		})
	}
}

func TestKeyLinesLine(t *testing.T) {
	t.Parallel()
	kl := locateKeys(`[gateway]
id = "x"

[[listeners]]
address = ":8080"

[[listeners]]
path = "/ship"
`)
	tests := map[string]int{
		"gateway.id":             2,
		"gateway.shutdown_grace": 1, // not in the file: its table's line
		"gateway":                1,
		"listeners.0.address":    5,
		"listeners.1.address":    7, // not in that entry: the entry's line
		"listeners.1.path":       8,
		"listeners.5.path":       0, // no such entry, and "listeners" alone is not a key
		"log.level":              0,
		"":                       0,
		"...":                    0,
	}
	for key, want := range tests {
		if got := kl.line(key); got != want {
			t.Errorf("line(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestKeyLinesTakeUnindexed(t *testing.T) {
	t.Parallel()
	kl := locateKeys(`[[listeners]]
adress = ":8080"

[[listeners]]
adress = ":9090"
opts = { a = 1 }

[websocket]
pingg = 1
`)
	type take struct {
		key     string
		line    int
		indexed string
	}
	if got := kl.indexedAt("listeners.adress", 5); got != "listeners.1.adress" {
		t.Errorf("indexedAt = %q", got)
	}
	if got := kl.indexedAt("listeners.adress", 3); got != "listeners.adress" {
		t.Errorf("indexedAt unknown line = %q", got)
	}
	for _, tt := range []take{
		{"websocket.pingg.deeper", 9, "websocket.pingg.deeper"}, // not in the file: its parent's line
		{"listeners.adress", 2, "listeners.0.adress"},
		{"listeners.adress", 5, "listeners.1.adress"},
		{"listeners.adress", 1, "listeners.0.adress"}, // a third is not in the file: the first entry
		{"websocket.pingg", 9, "websocket.pingg"},
		{"listeners.opts.b", 6, "listeners.1.opts.b"}, // inside an inline table: the table's line
		{"nowhere.at.all", 0, "nowhere.at.all"},
	} {
		line, indexed := kl.takeUnindexed(tt.key)
		if line != tt.line || indexed != tt.indexed {
			t.Errorf("takeUnindexed(%q) = %d, %q; want %d, %q", tt.key, line, indexed, tt.line, tt.indexed)
		}
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, end string
		want    []string
		rest    string
		ok      bool
	}{
		{`a = 1`, "=", []string{"a"}, " 1", true},
		{`a.b.c=1`, "=", []string{"a", "b", "c"}, "1", true},
		{` a . "b.c" . 'd' = x`, "=", []string{"a", "b.c", "d"}, " x", true},
		{`"a\"b" = 1`, "=", []string{`a"b`}, " 1", true},
		{`"a=b" = 1`, "=", []string{"a=b"}, " 1", true},
		{`listeners]] # c`, "]]", []string{"listeners"}, " # c", true},
		{`a.b]`, "]", []string{"a", "b"}, "", true},
		{`"unterminated = 1`, "=", nil, "", false},
		{`"a\`, "=", nil, "", false},
		{`a b = 1`, "=", nil, "", false},
		{`a. = 1`, "=", nil, "", false},
		{`= 1`, "=", nil, "", false},
		{``, "=", nil, "", false},
		{`a`, "=", nil, "", false},
		{`é = 1`, "=", nil, "", false},
	}
	for _, tt := range tests {
		got, rest, ok := parseKey(tt.in, tt.end)
		if ok != tt.ok || strings.Join(got, "|") != strings.Join(tt.want, "|") || rest != tt.rest {
			t.Errorf("parseKey(%q, %q) = %q, %q, %v; want %q, %q, %v", tt.in, tt.end, got, rest, ok, tt.want, tt.rest, tt.ok)
		}
	}
}

// FuzzLocateKeys: the scanner never panics, every line it reports is in the
// document, and for a document that is valid TOML it reports only keys the
// TOML decoder sees too (it is never fooled by strings, arrays or comments
// into finding keys that are not there).
func FuzzLocateKeys(f *testing.F) {
	f.Add(Example)
	f.Add("[a]\nb = \"\"\"\nc = 1\n\"\"\"\nd = [\n1,\n]\n[[e]]\nf = { g = 1 }\n[[e]]\n'h.i'.j = 2\n")
	f.Add("a = '''\n[x]\n'''\nb.c = \"\\\"\"\n[[t]]\n[[t.u]]\nv = 1\n[[t]]\n[[t.u]]\nv = 2\n")
	f.Add("k = \"\"\"a\\\"\"\"\"\nz = 1\n")
	f.Add("x = [ # [\n ']', \"[\" ]\ny = { a = [1, { b = 2 }] }\n")
	f.Fuzz(func(t *testing.T, doc string) {
		kl := locateKeys(doc)
		n := strings.Count(doc, "\n") + 1
		for key, line := range kl.indexed {
			if line < 1 || line > n {
				t.Fatalf("key %q on line %d of %d", key, line, n)
			}
			_ = kl.line(key + ".x")
		}
		var decoded map[string]bool
		var m map[string]any
		if md, err := toml.Decode(doc, &m); err == nil {
			decoded = map[string]bool{}
			for _, k := range md.Keys() {
				decoded[k.String()] = true
			}
		}
		for key, occ := range kl.unindexed {
			for _, o := range occ {
				if o.line < 1 || o.line > n || kl.indexed[o.indexed] < 1 {
					t.Fatalf("key %q at %+v", key, o)
				}
			}
			if decoded != nil && !decoded[key] {
				t.Fatalf("scanner found key %q that the decoder does not have (%v)", key, decoded)
			}
		}
		for _, key := range []string{"", ".", "a", "a.b", "listeners.path"} {
			kl.takeUnindexed(key)
			kl.line(key)
		}
	})
}
