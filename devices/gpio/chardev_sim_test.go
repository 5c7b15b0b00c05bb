//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le || sparc64)

package gpio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCharDevOnGPIOSim runs the ioctl layer against the kernel's simulated
// GPIO chip (gpio-sim, configured through configfs). It needs root and
// "modprobe gpio-sim"; elsewhere, CI included, it is skipped: there is no
// GPIO hardware to test on there.
func TestCharDevOnGPIOSim(t *testing.T) {
	const configfs = "/sys/kernel/config/gpio-sim"
	if _, err := os.Stat(configfs); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and the gpio-sim module (modprobe gpio-sim)")
	}
	dev := filepath.Join(configfs, "wsgate-test")
	bank := filepath.Join(dev, "bank0")
	line3 := filepath.Join(bank, "line3")
	for _, d := range []string{dev, bank, line3} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = os.WriteFile(filepath.Join(dev, "live"), []byte("0"), 0)
		for _, d := range []string{line3, bank, dev} {
			if err := os.Remove(d); err != nil {
				t.Error(err)
			}
		}
	})
	write := func(path, value string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	write(filepath.Join(bank, "num_lines"), "8")
	write(filepath.Join(line3, "name"), "SIM3")
	write(filepath.Join(dev, "live"), "1")
	chipName := read(filepath.Join(bank, "chip_name"))
	sim := filepath.Join("/sys/devices/platform", read(filepath.Join(dev, "dev_name")), chipName)

	ch, err := openChip("/dev/" + chipName)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if ch.Name() != chipName || ch.Lines() != 8 {
		t.Fatalf("chip %q with %d lines", ch.Name(), ch.Lines())
	}
	if off, err := ch.LineByName("SIM3"); err != nil || off != 3 {
		t.Fatalf("LineByName: %d, %v", off, err)
	}

	// An input: the simulator's pull is the outside world.
	write(filepath.Join(sim, "sim_gpio3", "pull"), "pull-down")
	in, err := ch.RequestInput(3, lineOptions{Consumer: "wsgate:test", Bias: BiasAsIs})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if v, err := in.Value(); err != nil || v {
		t.Fatalf("input value %v, %v; want 0", v, err)
	}
	if _, err := ch.RequestInput(3, lineOptions{Consumer: "other", Bias: BiasAsIs}); err == nil ||
		!strings.Contains(err.Error(), `line 3 is busy: used by "wsgate:test"`) {
		t.Fatalf("second request: %v", err)
	}
	edges := make(chan []edge, 1)
	go func() {
		buf := make([]edge, 4)
		n, err := in.ReadEdges(buf)
		if err != nil {
			close(edges)
			return
		}
		edges <- buf[:n]
	}()
	before := time.Now()
	write(filepath.Join(sim, "sim_gpio3", "pull"), "pull-up")
	select {
	case got, ok := <-edges:
		if !ok || len(got) == 0 || !got[0].Rising || got[0].Time.Before(before.Add(-time.Second)) {
			t.Fatalf("edges %+v", got)
		}
	case <-time.After(deadline):
		in.Close()
		t.Fatal("no edge")
	}
	if v, err := in.Value(); err != nil || !v {
		t.Fatalf("input value %v, %v; want 1", v, err)
	}

	// An active-low output requested active drives the pin low from the
	// start.
	out, err := ch.RequestOutput(5, lineOptions{Consumer: "wsgate:test", ActiveLow: true, Bias: BiasAsIs}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if got := read(filepath.Join(sim, "sim_gpio5", "value")); got != "0" {
		t.Fatalf("pin %s, want 0 (active low, active)", got)
	}
	if err := out.SetValue(false); err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(sim, "sim_gpio5", "value")); got != "1" {
		t.Fatalf("pin %s, want 1 (active low, inactive)", got)
	}
	if v, err := out.Value(); err != nil || v {
		t.Fatalf("output value %v, %v; want 0", v, err)
	}
}
