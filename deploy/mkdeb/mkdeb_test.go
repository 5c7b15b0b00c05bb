package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// root is the module's root, seen from this package.
var root = filepath.Join("..", "..")

// testWait bounds what should happen soon; generous for a loaded machine.
// Tests assert outcomes, never timing.
const testWait = 30 * time.Second

// requireTool returns the path of program, which Debian's package debian
// holds. Without it the test is skipped, except in CI (CI=true), where its
// absence is a failure.
func requireTool(t *testing.T, program, debian string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (Debian package %s, installed by make test-deps): %v", program, debian, err)
		}
		t.Skipf("%s not installed (Debian package %s, installed by make test-deps)", program, debian)
	}
	return path
}

func TestDebianVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		describe string
		commits  int
		want     string
	}{
		{"v1.2.0", 0, "1.2.0"},
		{"1.2.0", 0, "1.2.0"},
		{"v1.2.0-rc1", 0, "1.2.0~rc1"},
		{"v1.2.0-rc.1", 0, "1.2.0~rc.1"},
		{"v1.2.0-beta-2", 0, "1.2.0~beta.2"},
		{"v1.2.0-3-g92aa0b7", 0, "1.2.0+3.g92aa0b7"},
		{"v1.2.0-rc1-3-g92aa0b7", 0, "1.2.0~rc1+3.g92aa0b7"},
		{"v1.2.0-dirty", 0, "1.2.0+dirty"},
		{"v1.2.0-3-g92aa0b7-dirty", 0, "1.2.0+3.g92aa0b7.dirty"},
		{"92aa0b7", 145, "0~145.g92aa0b7"},
		{"92aa0b7-dirty", 145, "0~145.g92aa0b7+dirty"},
		{"92aa0b7", 0, "0~g92aa0b7"},
	}
	for _, tt := range tests {
		got, err := debianVersion(tt.describe, tt.commits)
		if err != nil || got != tt.want {
			t.Errorf("debianVersion(%q, %d) = %q, %v; want %q", tt.describe, tt.commits, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "dev", "release-one", "v1.2.0_beta", "v1.2 beta"} {
		if got, err := debianVersion(bad, 0); err == nil {
			t.Errorf("debianVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDebianVersionOrder: dpkg sorts the versions of successive builds in
// the order they were made, so that apt upgrades from one to the next; a
// build from a modified tree sorts after the clean build of its commit.
func TestDebianVersionOrder(t *testing.T) {
	t.Parallel()
	dpkg := requireTool(t, "dpkg", "dpkg")
	type build struct {
		describe string
		commits  int
	}
	successive := []build{
		{"1a2b3c4", 9},
		{"92aa0b7", 145},
		{"v1.2.0-rc1", 0},
		{"v1.2.0-rc1-2-gabc1234", 0},
		{"v1.2.0-rc2", 0},
		{"v1.2.0", 0},
		{"v1.2.0-3-g92aa0b7", 0},
		{"v1.2.0-10-g1a2b3c4", 0},
		{"v1.2.1", 0},
		{"v1.10.0", 0},
	}
	var pairs [][2]build
	for i := 1; i < len(successive); i++ {
		pairs = append(pairs, [2]build{successive[i-1], successive[i]})
	}
	for _, clean := range []build{{"92aa0b7", 145}, {"v1.2.0", 0}, {"v1.2.0-3-g92aa0b7", 0}} {
		pairs = append(pairs, [2]build{clean, {clean.describe + "-dirty", clean.commits}})
	}
	for _, p := range pairs {
		older, err := debianVersion(p[0].describe, p[0].commits)
		if err != nil {
			t.Fatal(err)
		}
		newer, err := debianVersion(p[1].describe, p[1].commits)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(dpkg, "--compare-versions", older, "lt", newer).CombinedOutput(); err != nil {
			t.Errorf("dpkg does not sort %q (%s) before %q (%s): %v %s", older, p[0].describe, newer, p[1].describe, err, out)
		}
	}
}

func TestCheckBinary(t *testing.T) {
	t.Parallel()
	host, ok := debianArch[runtime.GOARCH]
	if !ok {
		t.Skipf("wsgate is not packaged for %s", runtime.GOARCH)
	}
	other := "arm64"
	if host == other {
		other = "amd64"
	}
	text := filepath.Join(t.TempDir(), "wsgate")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary is linked dynamically under -race: it can show the
	// architecture checks only. TestPackage packs a static binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	if sh, err = filepath.EvalSymlinks(sh); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, binary, arch, want string
	}{
		{"another architecture", self, other, "not for " + other},
		{"not packaged", self, "i386", "no wsgate package"},
		{"not ELF", text, host, "binary:"},
		{"dynamic", sh, host, "linked dynamically"},
	}
	for _, tt := range tests {
		err := checkBinary(tt.binary, tt.arch)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one saying %q", tt.name, err, tt.want)
		}
	}
}

// debianArch is the Debian architecture of a GOARCH that wsgate is
// packaged for.
var debianArch = map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armhf"}

// TestGatewayLeavesPackagerOut: nfpm builds packages; the gateway binary
// does not link it.
func TestGatewayLeavesPackagerOut(t *testing.T) {
	t.Parallel()
	list := exec.Command("go", "list", "-deps", "./cmd/wsgate")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.Lines(string(out)) {
		if strings.HasPrefix(dep, "github.com/goreleaser/") {
			t.Errorf("cmd/wsgate depends on %s", strings.TrimSpace(dep))
		}
	}
}

// goBuild builds the package pkg of the module into out, statically, with
// ldflags.
func goBuild(t *testing.T, out, pkg, ldflags string) {
	t.Helper()
	build := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
}

// TestPackage builds the package of this machine's architecture as
// `make deb` does (make deb builds amd64, arm64 and armhf alike), checks
// what dpkg-deb reads in it, unpacks it with dpkg -x, runs the unpacked
// gateway on the packaged configuration until it is ready, and has
// systemd-analyze check the unit.
func TestPackage(t *testing.T) {
	t.Parallel()
	dpkgDeb := requireTool(t, "dpkg-deb", "dpkg")
	dpkg := requireTool(t, "dpkg", "dpkg")
	arch, ok := debianArch[runtime.GOARCH]
	if !ok {
		t.Skipf("wsgate is not packaged for %s", runtime.GOARCH)
	}
	const describe = "v1.2.0-3-g92aa0b7"
	const version = "1.2.0+3.g92aa0b7"
	dir := t.TempDir()
	wsgate := filepath.Join(dir, "wsgate")
	mkdeb := filepath.Join(dir, "mkdeb")
	goBuild(t, wsgate, "./cmd/wsgate", "-X main.version="+describe)
	goBuild(t, mkdeb, "./deploy/mkdeb", "")

	// pack runs mkdeb as make deb does and returns the package's path.
	pack := func(out string) string {
		t.Helper()
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(mkdeb, "-spec", filepath.Join("..", "nfpm.yaml"), "-version", describe, "-out", out, arch+"="+wsgate)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1764806400")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.Output()
		if err != nil {
			t.Fatalf("mkdeb: %v\n%s", err, stderr.Bytes())
		}
		name := "wsgate_" + version + "_" + arch + ".deb"
		if got := strings.TrimSpace(string(stdout)); got != name {
			t.Fatalf("mkdeb printed %q, want %q", got, name)
		}
		return filepath.Join(out, name)
	}
	pkg := pack(filepath.Join(dir, "dist"))

	t.Run("reproducible", func(t *testing.T) {
		again := pack(filepath.Join(dir, "again"))
		a, err := os.ReadFile(pkg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Error("two packages of the same binary with the same SOURCE_DATE_EPOCH differ")
		}
	})

	t.Run("control", func(t *testing.T) {
		out, err := exec.Command(dpkgDeb, "-f", pkg).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f: %v", err)
		}
		fields := controlFields(t, out)
		want := map[string]string{
			"Package":      "wsgate",
			"Version":      version,
			"Architecture": arch,
			"Section":      "net",
			"Priority":     "optional",
			"Maintainer":   "wsgate maintainers <maintainers@wsgate.invalid>",
			"Depends":      "adduser",
			"Homepage":     "https://github.com/wsgate/wsgate",
		}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("%s: %q, want %q", k, fields[k], v)
			}
		}
		if synopsis, _, _ := strings.Cut(fields["Description"], "\n"); synopsis != "WebSocket to MQTT gateway for IoT devices" {
			t.Errorf("Description's synopsis: %q", synopsis)
		}
		st, err := os.Stat(wsgate)
		if err != nil {
			t.Fatal(err)
		}
		if size, err := strconv.ParseInt(fields["Installed-Size"], 10, 64); err != nil || size < st.Size()/1024 {
			t.Errorf("Installed-Size: %q KiB, the binary alone is %d bytes", fields["Installed-Size"], st.Size())
		}
	})

	t.Run("files", func(t *testing.T) {
		out, err := exec.Command(dpkgDeb, "-c", pkg).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -c: %v", err)
		}
		var got []string
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) < 6 {
				t.Fatalf("dpkg-deb -c: %q", line)
			}
			got = append(got, f[0]+" "+f[1]+" "+f[5])
		}
		want := []string{
			"drwxr-xr-x root/root ./etc/",
			"drwxr-xr-x root/root ./etc/wsgate/",
			"-rw-r----- root/root ./etc/wsgate/wsgate.toml",
			"drwxr-xr-x root/root ./usr/",
			"drwxr-xr-x root/root ./usr/bin/",
			"-rwxr-xr-x root/root ./usr/bin/wsgate",
			"drwxr-xr-x root/root ./usr/lib/",
			"drwxr-xr-x root/root ./usr/lib/systemd/",
			"drwxr-xr-x root/root ./usr/lib/systemd/system/",
			"-rw-r--r-- root/root ./usr/lib/systemd/system/wsgate.service",
			"drwxr-xr-x root/root ./usr/share/",
			"drwxr-xr-x root/root ./usr/share/doc/",
			"drwxr-xr-x root/root ./usr/share/doc/wsgate/",
			"-rw-r--r-- root/root ./usr/share/doc/wsgate/example.toml",
		}
		if !slices.Equal(got, want) {
			t.Errorf("dpkg-deb -c:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("maintainer scripts", func(t *testing.T) {
		control := filepath.Join(t.TempDir(), "DEBIAN")
		if out, err := exec.Command(dpkgDeb, "-e", pkg, control).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
		}
		if got := readFile(t, filepath.Join(control, "conffiles")); got != "/etc/wsgate/wsgate.toml\n" {
			t.Errorf("conffiles: %q", got)
		}
		entries, err := os.ReadDir(control)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := []string{"conffiles", "control", "md5sums", "postinst", "postrm", "prerm"}; !slices.Equal(names, want) {
			t.Errorf("control archive: %v, want %v", names, want)
		}
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			path := filepath.Join(control, script)
			if got, want := readFile(t, path), readFile(t, filepath.Join("..", "debian", script)); got != want {
				t.Errorf("%s differs from deploy/debian/%s", script, script)
			}
			if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("%s: mode %v, %v; want 0755", script, st.Mode(), err)
			}
			if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v\n%s", script, err, out)
			}
		}
	})

	installed := filepath.Join(dir, "root")
	if out, err := exec.Command(dpkg, "-x", pkg, installed).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -x: %v\n%s", err, out)
	}
	bin := filepath.Join(installed, "usr", "bin", "wsgate")
	conf := filepath.Join(installed, "etc", "wsgate", "wsgate.toml")
	unit := filepath.Join(installed, "usr", "lib", "systemd", "system", "wsgate.service")

	t.Run("installed files", func(t *testing.T) {
		for got, source := range map[string]string{
			bin:  wsgate,
			conf: filepath.Join("..", "wsgate.toml"),
			unit: filepath.Join("..", "wsgate.service"),
			filepath.Join(installed, "usr", "share", "doc", "wsgate", "example.toml"): filepath.Join(root, "config", "example.toml"),
		} {
			if readFile(t, got) != readFile(t, source) {
				t.Errorf("%s differs from %s", got, source)
			}
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != "wsgate "+describe {
			t.Errorf("wsgate version: %q, %v", got, err)
		}
		if out, err := exec.Command(bin, "check", "-config", conf).CombinedOutput(); err != nil {
			t.Errorf("wsgate check of the packaged configuration: %v\n%s", err, out)
		}
	})

	t.Run("service starts", func(t *testing.T) {
		runPackagedConfig(t, bin, conf)
	})

	t.Run("systemd-analyze", func(t *testing.T) {
		analyze := requireTool(t, "systemd-analyze", "systemd")
		// verify checks that the programs the unit runs exist, and the
		// package is unpacked here, not installed: the unit checked runs
		// the unpacked binary, the rest of it as packaged.
		text := readFile(t, unit)
		if n := strings.Count(text, "/usr/bin/wsgate "); n != 2 {
			t.Fatalf("the unit runs /usr/bin/wsgate %d times, want 2 (ExecStart, ExecReload)", n)
		}
		checked := filepath.Join(t.TempDir(), "wsgate.service")
		if err := os.WriteFile(checked, []byte(strings.ReplaceAll(text, "/usr/bin/wsgate ", bin+" ")), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", "--man=no", checked).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// The hardening: an exposure of 3.0 or less of systemd's 10
		// ("OK"; the unit scores 2.2 with systemd 252).
		out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=30", checked).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: %v\n%s", err, out)
		}
	})
}

// runPackagedConfig runs the unpacked gateway on the packaged
// configuration, its state directory and addresses moved to the test's,
// until it is ready (the embedded broker runs and the bridge is connected
// to it), reloads it with SIGHUP as systemctl reload does, and stops it
// with SIGTERM as systemctl stop does.
func runPackagedConfig(t *testing.T, bin, packaged string) {
	state := t.TempDir()
	ports := brokertest.FreePorts(t, 4)
	ws, ship, mqtt, admin := ports[0], ports[1], ports[2], ports[3]
	conf := readFile(t, packaged)
	for _, r := range []struct {
		old, new string
		n        int
	}{
		{`"/var/lib/wsgate`, `"` + state, 2}, // the spool and SHIP's directory
		{`address = ":8080"`, fmt.Sprintf(`address = "127.0.0.1:%d"`, ws), 1},
		{`address = ":4711"`, fmt.Sprintf(`address = "127.0.0.1:%d"`, ship), 1},
		{`address = "127.0.0.1:1883"`, fmt.Sprintf(`address = "127.0.0.1:%d"`, mqtt), 1},
		{`address = "127.0.0.1:9180"`, fmt.Sprintf(`address = "127.0.0.1:%d"`, admin), 1},
		// Test traffic stays on loopback: no mDNS.
		{"[protocols.ship]\n", "[protocols.ship]\nannounce = false\nbrowse = false\n", 1},
	} {
		if n := strings.Count(conf, r.old); n != r.n {
			t.Fatalf("the packaged configuration has %q %d times, want %d", r.old, n, r.n)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	path := filepath.Join(t.TempDir(), "wsgate.toml")
	if err := os.WriteFile(path, []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "-config", path)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	// until polls cond until it holds, failing when the gateway exits or
	// testWait passes first.
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(testWait)
		for !cond() {
			select {
			case <-exited:
				t.Fatalf("wsgate exited (%v) before %s:\n%s", waitErr, what, log.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("not %s after %v:\n%s", what, testWait, log.String())
			}
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	until("ready", func() bool {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	for _, f := range []string{"spool.db", filepath.Join("ship", "ship-key.pem"), filepath.Join("ship", "ship-cert.pem")} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Errorf("state: %v", err)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	until("reloaded", func() bool { return strings.Contains(log.String(), "configuration reloaded") })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(testWait):
		t.Fatalf("wsgate still runs %v after SIGTERM:\n%s", testWait, log.String())
	}
	if waitErr != nil {
		t.Errorf("wsgate exited with %v after SIGTERM:\n%s", waitErr, log.String())
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", log.String())
	}
}

// controlFields parses the output of dpkg-deb -f: a field's continuation
// lines start with a space and join its value with newlines.
func controlFields(t *testing.T, out []byte) map[string]string {
	t.Helper()
	fields := map[string]string{}
	var last string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + strings.TrimPrefix(line, " ")
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("dpkg-deb -f: %q", line)
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	return fields
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
