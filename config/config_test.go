package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wsgate/wsgate/protocols/done"
)

var update = flag.Bool("update", false, "rewrite the golden .want files of testdata/broken")

// normalize clears empty slices and maps, so that `protocols = []` in a file
// and a nil default compare equal.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				normalize(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
			return
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
			return
		}
		for _, k := range v.MapKeys() { // protocols' configurations are pointers
			if e := v.MapIndex(k); e.Kind() == reflect.Interface && e.Elem().Kind() == reflect.Pointer {
				normalize(e.Elem().Elem())
			}
		}
	}
}

// diff lists the paths of the fields where a and b differ.
func diff(a, b reflect.Value, path string) []string {
	if a.Kind() == reflect.Struct {
		var out []string
		for i := range a.NumField() {
			out = append(out, diff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)...)
		}
		return out
	}
	if a.Kind() == reflect.Map && a.Type().Elem().Kind() == reflect.Interface && a.Len() == b.Len() {
		var out []string
		for _, k := range a.MapKeys() {
			x, y := a.MapIndex(k), b.MapIndex(k)
			if !y.IsValid() || x.Elem().Kind() != reflect.Pointer || x.Elem().Type() != y.Elem().Type() {
				return []string{fmt.Sprintf("%s: %#v, want %#v", path, a.Interface(), b.Interface())}
			}
			out = append(out, diff(x.Elem().Elem(), y.Elem().Elem(), fmt.Sprintf("%s[%v]", path, k))...)
		}
		return out
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		return []string{fmt.Sprintf("%s: %#v, want %#v", path, a.Interface(), b.Interface())}
	}
	return nil
}

func wantSameConfig(t *testing.T, got, want Config) {
	t.Helper()
	normalize(reflect.ValueOf(&got).Elem())
	normalize(reflect.ValueOf(&want).Elem())
	for _, d := range diff(reflect.ValueOf(got), reflect.ValueOf(want), "Config") {
		t.Error(d)
	}
}

// TestExampleIsDefault keeps the documented defaults honest: example.toml
// parses, and says exactly what Default() does.
func TestExampleIsDefault(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("example.toml", Example)
	if err != nil {
		t.Fatalf("example.toml does not parse:\n%v", err)
	}
	wantSameConfig(t, cfg, Default())
}

// TestExampleSetsEveryKey decodes example.toml over a zero Config: every key
// that has a default must be written out in the example (only gateway.id,
// which defaults to the host name, is left commented).
func TestExampleSetsEveryKey(t *testing.T) {
	t.Parallel()
	cfg := Config{Protocols: Protocols{Modules: zeroModules()}}
	md, err := toml.Decode(Example, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if errs, _, stray := cfg.decodeProtocols(&md); len(errs) > 0 || len(stray) > 0 {
		t.Fatal(errs, stray)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Errorf("example.toml has unknown keys %v", u)
	}
	if cfg.Gateway.ID != "" {
		t.Errorf("example.toml sets gateway.id = %q; it should stay commented (the default is the host name)", cfg.Gateway.ID)
	}
	if !strings.Contains(Example, `# id = "`) {
		t.Error("example.toml does not show gateway.id, commented")
	}
	cfg.Gateway.ID = Default().Gateway.ID
	wantSameConfig(t, cfg, Default())
}

func TestExampleFileIsEmbedded(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != Example {
		t.Error("Example differs from example.toml")
	}
	if _, err := Load("example.toml"); err != nil {
		t.Errorf("Load(example.toml): %v", err)
	}
}

func TestParseEmpty(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"", "\n", "# only a comment\n", "[gateway]\n[log]\n"} {
		cfg, err := Parse("empty.toml", doc)
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		wantSameConfig(t, cfg, Default())
	}
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c Config)
	}{
		{"listeners replace the default", `
[[listeners]]
address = "127.0.0.1:9000"
path = "/ws"
[[listeners]]
address = "127.0.0.1:9000"
`, func(t *testing.T, c Config) {
			want := []Listener{{Address: "127.0.0.1:9000", Path: "/ws", CompressMin: 256, Auth: AuthNone, DeviceID: "cn"}, {Address: "127.0.0.1:9000", Path: "/", CompressMin: 256, Auth: AuthNone, DeviceID: "cn"}}
			if !reflect.DeepEqual(c.Listeners, want) {
				t.Errorf("listeners = %+v, want %+v", c.Listeners, want)
			}
		}},
		{"dotted keys and inline tables", `
websocket.ping_interval = "0s"
protocols.done = { envelope = true, max_pending_commands = 7 }
protocols.policy = "server"
`, func(t *testing.T, c Config) {
			if c.WebSocket.PingInterval != 0 || !doneOf(c).Envelope || c.Protocols.Policy != "server" {
				t.Errorf("config = %+v", c)
			}
			if doneOf(c).MaxPendingCommands != 7 {
				t.Errorf("max_pending_commands = %v", doneOf(c).MaxPendingCommands)
			}
			// Keys the file does not set keep their defaults.
			if doneOf(c).MaxInflight != done.DefaultConfig().MaxInflight || c.WebSocket.PongTimeout != 10*time.Second {
				t.Errorf("defaults lost: %+v", c)
			}
		}},
		{"tls with both files", `
[[listeners]]
address = ":8443"
tls_cert = "testdata/tls/cert.pem"
tls_key = "testdata/tls/key.pem"
fallback = "done"
protocols = ["done"]
`, func(t *testing.T, c Config) {
			if l := c.Listeners[0]; l.TLSCert == "" || l.Fallback != "done" || l.Path != "/" {
				t.Errorf("listener = %+v", l)
			}
		}},
		{"log and durations", `
[gateway]
id = "hub-1"
shutdown_grace = "1m30s"
command_timeout = "500ms"
[log]
level = "debug"
format = "json"
`, func(t *testing.T, c Config) {
			if c.Gateway.ID != "hub-1" || c.Gateway.ShutdownGrace != 90*time.Second || c.Log != (Log{"debug", "json"}) || c.Gateway.CommandTimeout != 500*time.Millisecond {
				t.Errorf("config = %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse(tt.name, tt.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

// TestBroken parses each testdata/broken/*.toml and compares every problem
// (file, line, key, message) with the golden NAME.toml.want, which holds
// what `wsgate check` prints. Run with -update to rewrite the goldens after
// a deliberate change, and read the diff.
func TestBroken(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/broken/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no broken configs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(file)
			if err == nil {
				t.Fatalf("Load accepted it: %+v", cfg)
			}
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("Load error %v is not Problems", err)
			}
			for _, p := range ps {
				if p.File != file || p.Line < 1 || p.Key == "" || p.Msg == "" {
					t.Errorf("problem without file, line, key or message: %+v", p)
				}
			}
			got := ps.Error() + "\n"
			golden := file + ".want"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("problems:\n%s\nwant (%s):\n%s", got, golden, want)
			}
		})
	}
	// Every golden belongs to a config.
	wants, _ := filepath.Glob("testdata/broken/*.want")
	for _, w := range wants {
		if !slices.Contains(files, strings.TrimSuffix(w, ".want")) {
			t.Errorf("%s has no config", w)
		}
	}
}

// TestBrokenStructured spells out a few problems field by field, so that the
// goldens are not the only statement of what a Problem holds.
func TestBrokenStructured(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file string
		want Problems
	}{
		{"unknown-key-second-listener.toml", Problems{{Line: 8, Key: "listeners[1].protocol", Msg: "unknown key"}}},
		{"syntax-error.toml", Problems{{Line: 3, Key: "log.format", Msg: `expected value but found "text" instead`}}},
		{"wrong-type.toml", Problems{{Line: 3, Key: "websocket.max_message", Msg: "must be an integer, not a string"}}},
		{"done-plain-tokens.toml", Problems{{Line: 4, Key: "protocols.done.tokens", Msg: "plain-text tokens are no longer accepted: hash each with `wsgate token hash`, " +
			`list the hashes under [[auth.tokens]], and set auth = "token" on the listeners (docs/SECURITY.md)`}}},
		{"several-problems.toml", Problems{
			{Line: 3, Key: "gateway.shutdown_grace", Msg: `must be a positive duration such as "10s"`},
			{Line: 6, Key: "log.level", Msg: `"loud" is not one of debug, info, warn, error`},
			{Line: 7, Key: "log.colour", Msg: "unknown key"},
			{Line: 10, Key: "websocket.max_message", Msg: "10 is outside 128 to 67108864 bytes"},
			{Line: 17, Key: "listeners[1].address", Msg: `"nowhere" is not host:port (e.g. ":8080" or "127.0.0.1:8080")`},
			{Line: 18, Key: "listeners[1].path", Msg: `"ship" must start with /`},
			{Line: 19, Key: "listeners[1].fallback", Msg: `"ship" is not enabled in protocols.order`},
			{Line: 20, Key: "listeners[1].tls", Msg: "unknown key"},
			{Line: 23, Key: "protocols.order", Msg: `protocol "done" is listed twice`},
			{Line: 24, Key: "protocols.policy", Msg: `"mine" is not client or server`},
		}},
	}
	for _, tt := range tests {
		file := filepath.Join("testdata", "broken", tt.file)
		_, err := Load(file)
		var ps Problems
		if !errors.As(err, &ps) {
			t.Errorf("%s: %v", file, err)
			continue
		}
		for i := range tt.want {
			tt.want[i].File = file
		}
		if !slices.Equal(ps, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", file, ps, tt.want)
		}
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.toml", Line: 3, Key: "log.level", Msg: "bad"}, "a.toml:3: log.level: bad"},
		{Problem{File: "a.toml", Key: "gateway.id", Msg: "bad"}, "a.toml: gateway.id: bad"},
		{Problem{File: "a.toml", Msg: "toml: something"}, "a.toml: toml: something"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	ps := Problems{tests[0].p, tests[1].p}
	if got := ps.Error(); got != "a.toml:3: log.level: bad\na.toml: gateway.id: bad" {
		t.Errorf("Error() = %q", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	var ps Problems
	if err == nil || errors.As(err, &ps) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a read error", err)
	}
}

func TestProblemsWithoutLine(t *testing.T) {
	t.Parallel()
	// The default listener is not in the file: a problem about it has no
	// line, and comes after those that have one.
	_, err := Parse("x.toml", "[protocols]\norder = [\"nope\"]\n")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatal(err)
	}
	if ps[0].Line != 2 || ps[0].Key != "protocols.order" {
		t.Errorf("problems = %+v", ps)
	}
}
