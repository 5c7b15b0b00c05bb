package config

import (
	"strings"
	"testing"
)

// TestWarnings: a configuration that works but leaves a door open loads,
// with a warning that points at the key.
func TestWarnings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      string // the warning, "" for none
	}{
		{"default: loopback", "", ""},
		{"open to the network, anonymous", "[mqtt.embedded]\naddress = \":1883\"\n",
			"w.toml:2: mqtt.embedded.address: warning: the embedded broker on :1883 is reachable from the network and takes anonymous clients"},
		{"open on an address, anonymous", "[mqtt.embedded]\naddress = \"192.168.1.2:1883\"\n",
			"w.toml:2: mqtt.embedded.address: warning: the embedded broker on 192.168.1.2:1883"},
		{"open with users", "[mqtt.embedded]\naddress = \":1883\"\n[mqtt.embedded.users]\nha = \"long-password\"\n", ""},
		{"localhost", "[mqtt.embedded]\naddress = \"localhost:1883\"\n", ""},
		{"IPv6 loopback", "[mqtt.embedded]\naddress = \"[::1]:1883\"\n", ""},
		{"external broker", "[mqtt]\nurl = \"tcp://broker:1883\"\n[mqtt.embedded]\naddress = \":1883\"\n", ""},
		// A plugin that cannot run: the gateway runs without it.
		{"plugin checksum", "[protocols]\norder = [\"ocpp1.6\", \"done\"]\n\n[[plugins]]\npath = \"testdata/tls/cert.pem\"\n" +
			"sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nprotocols = [\"ocpp1.6\"]\n",
			"w.toml:6: plugins[0].sha256: warning: does not match testdata/tls/cert.pem (its SHA-256 is dd9fc8a7b27babd21d5bca967f89ff25d7800bc985be643baccaf73c4ab03e9b); wsgate runs without this plugin"},
		{"plugin missing", "[[plugins]]\npath = \"testdata/no-such-plugin\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\nprotocols = [\"ocpp1.6\"]\n",
			`w.toml:2: plugins[0].path: warning: cannot read "testdata/no-such-plugin": no such file or directory; wsgate runs without this plugin`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("w.toml", tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.want == "" && len(cfg.Warnings) > 0:
				t.Errorf("warnings: %v", cfg.Warnings)
			case tt.want != "" && (len(cfg.Warnings) != 1 || !strings.HasPrefix(cfg.Warnings[0].String(), tt.want)):
				t.Errorf("warnings: %v, want %q", cfg.Warnings, tt.want)
			}
		})
	}
}

// TestEveryProblemInOneRun: a value of the wrong type stops the decoding
// of its own section only; the problems of the other sections are still
// reported, all in one run.
func TestEveryProblemInOneRun(t *testing.T) {
	t.Parallel()
	_, err := Parse("m.toml", `[gateway]
shutdown_grace = 10
[websocket]
max_message = "big"
[mqtt]
queue = "x"
[log]
level = "loud"
`)
	want := []string{
		`m.toml:2: gateway.shutdown_grace: must be a duration string such as "30s" (a bare number would be nanoseconds)`,
		`m.toml:4: websocket.max_message: must be an integer, not a string`,
		`m.toml:6: mqtt.queue: must be an integer, not a string`,
		`m.toml:8: log.level: "loud" is not one of debug, info, warn, error`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("problems:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}
