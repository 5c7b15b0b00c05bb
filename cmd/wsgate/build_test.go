package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// goList runs `go list` in the module root with args and returns its
// output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestProtocolsAreModules keeps the layering the protocol registry rests
// on: the config and the gateway import no concrete protocol, and only
// protocols/all (and each protocol's own packages) import one.
func TestProtocolsAreModules(t *testing.T) {
	t.Parallel()
	const mod = "github.com/wsgate/wsgate/"
	concrete := func(path string) bool {
		for _, p := range []string{"done", "echo", "ship"} {
			if path == mod+"protocols/"+p || strings.HasPrefix(path, mod+"protocols/"+p+"/") {
				return true
			}
		}
		return false
	}
	for _, dep := range goList(t, "-deps", "./config", "./gateway/...") {
		if concrete(dep) {
			t.Errorf("config or gateway depends on %s", dep)
		}
	}
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...") {
		pkg, imports, _ := strings.Cut(line, " ")
		if pkg == mod+"protocols/all" || concrete(pkg) {
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if concrete(imp) {
				t.Errorf("%s imports %s; only protocols/all registers built-in protocols", pkg, imp)
			}
		}
	}
}

// TestNoShipBuild: `go build -tags noship` leaves SHIP out (mDNS stays:
// the gateway announces its own listeners), and the binary serves done.
func TestNoShipBuild(t *testing.T) {
	t.Parallel()
	for _, dep := range goList(t, "-deps", "-tags", "noship", "./cmd/wsgate") {
		if strings.Contains(dep, "/protocols/ship") {
			t.Errorf("the noship build depends on %s", dep)
		}
	}
	bin := filepath.Join(t.TempDir(), "wsgate-noship")
	build := exec.Command("go", "build", "-tags", "noship", "-o", bin, "./cmd/wsgate")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags noship: %v\n%s", err, out)
	}

	out, err := exec.Command(bin, "protocols").CombinedOutput()
	if err != nil {
		t.Fatalf("protocols: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "1     done  builtin  enabled") || strings.Contains(string(out), "ship") {
		t.Errorf("protocols of the noship build:\n%s", out)
	}
	if out, err := exec.Command(bin, "ship", "cert").CombinedOutput(); err == nil || !strings.Contains(string(out), `unknown command "ship"`) {
		t.Errorf("ship cert in the noship build: %v\n%s", err, out)
	}

	dir := t.TempDir()
	ports := brokertest.FreePorts(t, 2)
	wsPort, mqttPort := ports[0], ports[1]
	path := filepath.Join(dir, "wsgate.toml")
	doc := fmt.Sprintf(`
[log]
level = "warn"
[[listeners]]
address = "127.0.0.1:%d"
[mqtt.embedded]
address = "127.0.0.1:%d"
[spool]
dir = %q
[admin]
address = ""
`, wsPort, mqttPort, dir)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cmd := exec.Command(bin, "run", "-config", path)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // after a failure; harmless once it has exited
	status := make(chan int, 1)
	go func() {
		_ = cmd.Wait()
		status <- cmd.ProcessState.ExitCode()
	}()
	wsURL := fmt.Sprintf("ws://127.0.0.1:%d/", wsPort)
	waitListening(t, wsURL, status, &log)
	dialDone(t, wsURL, "noship-sensor").Close()

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case code := <-status:
		if code != 0 {
			t.Errorf("wsgate exited with %d:\n%s", code, log.String())
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("wsgate did not stop on SIGTERM:\n%s", log.String())
	}
}
