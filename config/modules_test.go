package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	_ "github.com/wsgate/wsgate/protocols/all" // the built-in protocols, as in the binary
	"github.com/wsgate/wsgate/protocols/done"
	"github.com/wsgate/wsgate/protocols/module"
)

// doneOf is the done protocol's configuration in c.
func doneOf(c Config) *done.Config { return c.Protocols.Modules[done.Name].(*done.Config) }

// zeroModules is every registered protocol's configuration with all its
// fields zero, for decoding a file without defaults.
func zeroModules() map[string]module.Config {
	configs := map[string]module.Config{}
	for _, m := range module.All() {
		configs[m.Name] = reflect.New(reflect.TypeOf(m.NewConfig()).Elem()).Interface().(module.Config)
	}
	return configs
}

// TestModuleSamples keeps each built-in protocol's documented table honest:
// config/example.toml holds it verbatim, and on its own it parses strictly
// into exactly the protocol's defaults.
func TestModuleSamples(t *testing.T) {
	t.Parallel()
	all := module.All()
	if len(all) < 3 {
		t.Fatalf("only %d built-in protocols registered", len(all))
	}
	for _, m := range all {
		t.Run(m.Name, func(t *testing.T) {
			t.Parallel()
			if !strings.HasPrefix(m.Sample, "[protocols."+m.Name+"]\n") {
				t.Errorf("the sample does not start with its table [protocols.%s]", m.Name)
			}
			if !strings.Contains(Example, m.Sample) {
				t.Errorf("config/example.toml does not hold the sample of %s verbatim; paste its sample.toml into it", m.Name)
			}
			cfg, err := Parse(m.Name+"/sample.toml", m.Sample)
			if err != nil {
				t.Fatalf("the sample does not parse:\n%v", err)
			}
			want := Default()
			wantSameConfig(t, cfg, want)
		})
	}
}

// TestProtocolTableProblems: a protocol's table is decoded by its module,
// and its problems still name the file, line and key. A decoding error in
// one table does not hide those of another.
func TestProtocolTableProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"type errors in two tables", `[protocols]
order = ["done", "ship"]

[protocols.done]
max_inflight = "many"

[protocols.ship]
ping_interval = 30

[protocols.ship.timers]
cmi = "soon"
`, []string{
			`p.toml:5: protocols.done.max_inflight: must be an integer, not a string`,
			`p.toml:8: protocols.ship.ping_interval: must be a duration string such as "30s" (a bare number would be nanoseconds)`,
			`p.toml:11: protocols.ship.timers.cmi: "soon" is not a duration such as "500ms", "10s" or "5m"`,
		}},
		{"unknown and invalid keys", `[protocols.ship]
adress = ":4712"
path = "ship"

[[protocols.ship.peers]]
ski = "nope"
`, []string{
			`p.toml:2: protocols.ship.adress: unknown key`,
			`p.toml:3: protocols.ship.path: "ship" must start with / and be at most 32 bytes (it is announced over mDNS)`,
			`p.toml:6: protocols.ship.peers[0].ski: "nope" is not an SKI (40 hex digits)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("p.toml", tt.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestExampleCommentedTables: the commented [[devices]], [[routes]],
// [[auth.tokens]] and [[auth.acl]] examples of example.toml, uncommented
// together, parse and validate.
func TestExampleCommentedTables(t *testing.T) {
	t.Parallel()
	var doc strings.Builder
	for _, header := range []string{"# [[devices]]", "# [[routes]]", "# [[auth.acl]]"} {
		_, rest, ok := strings.Cut(Example, "\n"+header+"\n")
		if !ok {
			t.Fatalf("example.toml has no %q example", header)
		}
		block, _, _ := strings.Cut(rest, "\n\n")
		doc.WriteString(strings.TrimPrefix(header, "# ") + "\n")
		for line := range strings.SplitSeq(block, "\n") {
			doc.WriteString(strings.TrimPrefix(line, "# ") + "\n")
		}
	}
	cfg, err := Parse("example.toml (uncommented)", doc.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, doc.String())
	}
	if len(cfg.Devices) != 1 || len(cfg.Routes) != 1 || len(cfg.Auth.ACL) != 1 {
		t.Errorf("devices %d, routes %d, acl %d", len(cfg.Devices), len(cfg.Routes), len(cfg.Auth.ACL))
	}
}
