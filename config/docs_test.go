package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDevicesDocExamples keeps the TOML of docs/DEVICES.md valid: the
// examples, taken together as one config (routes name devices declared in
// other examples), must parse and validate.
func TestDevicesDocExamples(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/DEVICES.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	for _, m := range regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		doc.WriteString(m[1] + "\n")
	}
	if doc.Len() == 0 {
		t.Fatal("no TOML examples found")
	}
	cfg, err := Parse("docs/DEVICES.md", doc.String())
	if err != nil {
		t.Fatalf("the examples do not parse together:\n%v\n%s", err, doc.String())
	}
	if len(cfg.Devices) < 4 || len(cfg.Routes) == 0 {
		t.Errorf("examples: %d devices, %d routes", len(cfg.Devices), len(cfg.Routes))
	}
}

// TestHomeAssistantDocExamples keeps the TOML of docs/HOMEASSISTANT.md
// valid: together they parse, and the local device has its entities.
func TestHomeAssistantDocExamples(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../docs/HOMEASSISTANT.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	for _, m := range regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(data), -1) {
		doc.WriteString(m[1] + "\n")
	}
	cfg, err := Parse("docs/HOMEASSISTANT.md", doc.String())
	if err != nil {
		t.Fatalf("the examples do not parse together:\n%v\n%s", err, doc.String())
	}
	if len(cfg.Devices) != 1 || cfg.Devices[0].Description() == nil || !cfg.HomeAssistant.Enabled {
		t.Errorf("examples: %+v", cfg.Devices)
	}
}
