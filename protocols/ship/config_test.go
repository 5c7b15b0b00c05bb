package ship_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/protocols/module"
	"github.com/wsgate/wsgate/protocols/ship"
)

// TestConfigProblems: the [protocols.ship] table is decoded and validated
// by the ship module, and its problems read file:line: key: message like
// every other part of the configuration (testdata/config/*.toml, with the
// problems `wsgate check` prints in *.want).
func TestConfigProblems(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/config/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test configs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			want, err := os.ReadFile(file + ".want")
			if err != nil {
				t.Fatal(err)
			}
			_, err = config.Load(file)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := err.Error() + "\n"; got != string(want) {
				t.Errorf("problems:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestConfigSample: the documented table is the defaults, valid, and it
// brings SHIP's listener on 4711 over TLS, serving every enabled protocol.
func TestConfigSample(t *testing.T) {
	t.Parallel()
	m, ok := module.Lookup(ship.Name)
	if !ok {
		t.Fatal("ship is not registered")
	}
	cfg, err := config.Parse("sample.toml", m.Sample)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Protocols.Modules[ship.Name].(*ship.Config)
	ls := c.Listeners()
	if len(ls) != 2 || ls[0].Address != ":4711" || ls[0].Path != "/ship/" || ls[1].Path != "/" ||
		!ls[0].TLS || len(ls[0].Protocols) != 0 || ls[0].Fallback != ship.Name {
		t.Errorf("listeners %+v", ls)
	}
	if !strings.Contains(config.Example, m.Sample) {
		t.Error("config/example.toml does not hold the sample")
	}
}
