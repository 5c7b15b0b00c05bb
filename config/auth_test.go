package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wsgate/wsgate/gateway/auth"
)

// TestAuthSection: token rules with the hash inline or in a file, and
// access rules where a list left out allows everything of its kind and an
// empty one nothing.
func TestAuthSection(t *testing.T) {
	t.Parallel()
	h1, err := auth.Hash("one")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := auth.Hash("two")
	if err != nil {
		t.Fatal(err)
	}
	hashFile := filepath.Join(t.TempDir(), "garage.hash")
	if err := os.WriteFile(hashFile, []byte(h2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("a.toml", `
[[listeners]]
address = ":8080"
auth = "token"

[[auth.tokens]]
devices = "kitchen"
hash = "`+h1+`"

[[auth.tokens]]
devices = "garage"
hash_file = "`+hashFile+`"

[[auth.acl]]
devices = "esp32-*"
publish = ["telemetry"]

[[auth.acl]]
devices = "mute"
publish = []
commands = []
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Auth.TokenRules(); len(got) != 2 || got[0].Hash != h1 || got[1].Hash != h2 || got[1].Devices != "garage" {
		t.Errorf("token rules %+v", got)
	}
	acl := cfg.Auth.ACLRules()
	if !slices.Equal(acl[0].Publish, []string{"telemetry"}) || !slices.Equal(acl[0].Commands, []string{"*"}) ||
		len(acl[1].Publish) != 0 || len(acl[1].Commands) != 0 {
		t.Errorf("access rules %+v", acl)
	}
	if cfg.Listeners[0].Auth != AuthToken || len(cfg.Warnings) != 0 {
		t.Errorf("listener %+v, warnings %v", cfg.Listeners[0], cfg.Warnings)
	}
	if _, err := auth.NewACL(acl); err != nil {
		t.Errorf("the rules do not make an ACL: %v", err)
	}
}
