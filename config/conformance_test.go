package config

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestConformanceConfig: the configuration docs/CONFORMANCE.md tells people
// to copy parses, serves echo on its own path with what Autobahn needs, and
// is the very file docs/conformance.toml.
func TestConformanceConfig(t *testing.T) {
	t.Parallel()
	const file = "../docs/conformance.toml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(file, string(data))
	if err != nil {
		t.Fatalf("%s does not parse:\n%v", file, err)
	}
	if !slices.Contains(cfg.Protocols.Order, "echo") {
		t.Errorf("protocols.order %q does not enable echo", cfg.Protocols.Order)
	}
	if cfg.WebSocket.MaxMessage < 16<<20 {
		t.Errorf("websocket.max_message %d is below Autobahn's 16 MiB messages", cfg.WebSocket.MaxMessage)
	}
	if cfg.WebSocket.PingInterval != 0 {
		t.Errorf("websocket.ping_interval %v: Autobahn counts our pings as unexpected events", cfg.WebSocket.PingInterval)
	}
	var echo *Listener
	for i, l := range cfg.Listeners {
		if l.Path == "/echo" {
			echo = &cfg.Listeners[i]
		}
	}
	switch {
	case echo == nil:
		t.Fatal("no listener on /echo")
	case !slices.Equal(echo.Protocols, []string{"echo"}) || echo.Fallback != "echo":
		t.Errorf("the /echo listener serves %q, fallback %q; want echo only", echo.Protocols, echo.Fallback)
	case !echo.Compression:
		t.Error("the /echo listener does not negotiate permessage-deflate")
	}

	doc, err := os.ReadFile("../docs/CONFORMANCE.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) != 1 {
		t.Fatalf("docs/CONFORMANCE.md has %d toml blocks, want the one copy of %s", len(blocks), file)
	}
	if string(blocks[0][1]) != string(data) {
		t.Errorf("the toml block of docs/CONFORMANCE.md differs from %s", file)
	}
}
