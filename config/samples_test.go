package config

import (
	"strings"
	"testing"

	"github.com/wsgate/wsgate/devices/exec"
	"github.com/wsgate/wsgate/devices/gpio"
	"github.com/wsgate/wsgate/devices/serial"
	"github.com/wsgate/wsgate/devices/sysfs"
)

// TestDriverSamples keeps each driver's documented sample valid: it must
// parse strictly and validate as a whole config file.
func TestDriverSamples(t *testing.T) {
	t.Parallel()
	for name, sample := range map[string]string{
		"exec": exec.Sample, "gpio": gpio.Sample, "serial": serial.Sample, "sysfs": sysfs.Sample,
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse(name+"/sample.toml", sample)
			if err != nil {
				t.Fatalf("the sample does not parse:\n%v", err)
			}
			if len(cfg.Devices) == 0 {
				t.Fatal("the sample declares no device")
			}
			for _, d := range cfg.Devices {
				if d.Driver != name || d.Options == nil {
					t.Errorf("device %q: driver %q, options %v", d.ID, d.Driver, d.Options)
				}
			}
		})
	}
}

func TestDeviceOptionsDecodeStrictly(t *testing.T) {
	t.Parallel()
	doc := `
[[devices]]
id = "uart-display"
driver = "serial"
port = "/dev/ttyUSB0"
baud = 115200
parrity = "none"

[[devices]]
id = "cpu"
driver = "sysfs"
path = "/sys/class/thermal/thermal_zone0/temp"
parser = "thermal"
interval = "not a duration"
`
	_, err := Parse("devices.toml", doc)
	if err == nil {
		t.Fatal("accepted")
	}
	want := "devices.toml:7: devices[0].parrity: unknown key"
	if got := err.Error(); !strings.Contains(got, want) {
		t.Errorf("problems:\n%s\nwant a line %q", got, want)
	}
}
