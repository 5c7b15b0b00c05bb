package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecrets: a password comes from the file, a file of its own, or the
// environment, which wins; a secret file others can read is a warning.
// (Not parallel: it sets an environment variable.)
func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	if err := os.WriteFile(private, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	public := filepath.Join(dir, "public")
	if err := os.WriteFile(public, []byte("  from-a-public-file  \nsecond line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, doc, env string
		want           string // the password, or the problem
		warning        string
	}{
		{name: "inline", doc: `password = "inline"`, want: "inline"},
		{name: "file", doc: `password_file = "` + private + `"`, want: "from-the-file"},
		{name: "environment wins", doc: `password_file = "` + private + `"`, env: "from-env", want: "from-env"},
		{name: "readable by all", doc: `password_file = "` + public + `"`, want: "from-a-public-file", warning: "readable by every user"},
		{name: "both", doc: `password = "x"` + "\n" + `password_file = "` + private + `"`, want: "s.toml:4: mqtt.password_file: set password or password_file, not both"},
		{name: "missing", doc: `password_file = "` + filepath.Join(dir, "nope") + `"`, want: "mqtt.password_file: cannot read"},
		{name: "empty", doc: `password_file = "` + empty + `"`, want: "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WSGATE_MQTT_PASSWORD", tt.env)
			cfg, err := Parse("s.toml", "[mqtt]\nurl = \"tcp://broker:1883\"\n"+tt.doc+"\n")
			switch {
			case err != nil:
				if !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("problems %v, want %q", err, tt.want)
				}
			case cfg.MQTT.Password != tt.want:
				t.Errorf("password %q, want %q", cfg.MQTT.Password, tt.want)
			}
			if tt.warning != "" && (len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Msg, tt.warning)) {
				t.Errorf("warnings %v, want %q", cfg.Warnings, tt.warning)
			}
			if err != nil {
				return
			}
			for _, w := range cfg.Warnings {
				if strings.Contains(w.String(), tt.want) {
					t.Errorf("a warning shows the secret: %s", w)
				}
			}
		})
	}
}
