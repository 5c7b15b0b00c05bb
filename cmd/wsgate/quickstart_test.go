//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// quickstartEnv is set for the test binary that runs the quick start
// inside namespaces of its own.
const quickstartEnv = "WSGATE_QUICKSTART_NAMESPACE"

// quickstartBlocks are the marked blocks of the README's quick start:
// four commands, each in a terminal of its own, and what two of them
// print.
var quickstartBlocks = []string{"gateway", "watch", "device", "command", "device-output", "watch-output"}

// readQuickStart returns the README's blocks marked <!-- quickstart:NAME -->,
// by name, as written.
func readQuickStart(t *testing.T) map[string]string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)<!-- quickstart:([a-z-]+) -->\n```[a-z]*\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		blocks[m[1]] = m[2]
	}
	for _, name := range quickstartBlocks {
		if blocks[name] == "" {
			t.Fatalf("README.md has no block marked <!-- quickstart:%s -->", name)
		}
	}
	for _, name := range quickstartBlocks[:4] {
		if lines := strings.Split(strings.TrimSpace(blocks[name]), "\n"); len(lines) != 1 {
			t.Fatalf("the quick start's %s block is %d lines; the test runs one command per terminal", name, len(lines))
		}
	}
	return blocks
}

// TestQuickStart runs the README's quick start as written: `make run` on
// a copy of the project (the first build included), mosquitto_sub,
// `./bin/wsgate device` and mosquitto_pub, each the command of its block,
// and checks that the command's result reaches MQTT and that the outputs
// the README shows are there.
//
// The quick start uses fixed ports (8080, 4711, 1883, 9180), and the
// gateway announces itself over mDNS. So it runs in a network namespace
// of its own, where the ports are free whatever runs on the machine and
// nothing reaches the network, and a UTS namespace whose host name is the
// README's "hub": the test binary runs itself again under unshare(1), as
// root or, otherwise, in a user namespace.
func TestQuickStart(t *testing.T) {
	blocks := readQuickStart(t)
	if os.Getenv(quickstartEnv) == "1" {
		runQuickStart(t, blocks)
		return
	}
	for _, tool := range []string{"unshare", "bash", "make", "go", "mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			needed(t, fmt.Sprintf("%s is not installed (make test-deps installs mosquitto-clients)", tool))
		}
	}
	args := []string{"--net", "--uts"}
	if os.Geteuid() != 0 {
		args = append(args, "--map-root-user")
	}
	if out, err := exec.Command("unshare", append(args, "true")...).CombinedOutput(); err != nil {
		needed(t, fmt.Sprintf("no network namespace for the quick start's fixed ports (unshare %s: %v %s); run as root or allow unprivileged user namespaces",
			strings.Join(args, " "), err, bytes.TrimSpace(out)))
	}
	args = append(args, "--", os.Args[0], "-test.run=^TestQuickStart$", "-test.count=1", "-test.v", "-test.timeout=15m")
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), quickstartEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestQuickStart")) {
		t.Fatalf("the quick start in its namespace: %v\n%s", err, out)
	}
	t.Logf("the quick start in its namespace:\n%s", out)
}

// needed skips the test outside CI and fails it in CI.
func needed(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// runQuickStart is the quick start, in the namespaces.
func runQuickStart(t *testing.T, blocks map[string]string) {
	enterNamespace(t)
	src := filepath.Join(t.TempDir(), "wsgate")
	copyProject(t, "../..", src)
	env := quickstartEnviron(filepath.Join(t.TempDir(), "state"))

	gateway := openTerminal(t, "gateway", src, env, blocks["gateway"])
	gateway.waitFor(t, "wsgate running", 10*time.Minute) // the first build
	if want := "the first build downloads and compiles the dependencies"; !strings.Contains(gateway.out.String(), want) {
		t.Errorf("make run said nothing of the first build (%q):\n%s", want, gateway.out.String())
	}

	watch := openTerminal(t, "watch", src, env, blocks["watch"])
	// mosquitto_sub says nothing when it has subscribed: publish until
	// what it prints shows it.
	probe := "wsgate/quickstart-probe " + rand.Text()
	topic, payload, _ := strings.Cut(probe, " ")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(watch.out.String(), probe); {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub shows nothing published:\n%s", watch.out.String())
		}
		brokertest.Publish(t, "tcp://127.0.0.1:1883", topic, []byte(payload), false)
		time.Sleep(200 * time.Millisecond)
	}

	device := openTerminal(t, "device", src, env, blocks["device"])
	device.waitFor(t, "published telemetry", 30*time.Second)
	// Online is published once the gateway has subscribed to the device's
	// commands: the command cannot overtake it.
	watch.waitFor(t, `wsgate/kitchen-sensor/status {"state":"online"`, 30*time.Second)

	command := exec.Command("bash", "-c", blocks["command"])
	command.Dir, command.Env = src, env
	if out, err := command.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.TrimSpace(blocks["command"]), err, out)
	}
	watch.waitFor(t, "wsgate/kitchen-sensor/cmd/set-interval/result", 30*time.Second)
	device.waitFor(t, "command set-interval", 30*time.Second)

	// What the README shows is what the terminals show, but for the
	// values that change from run to run.
	sameLines(t, "the device", blocks["device-output"], device.out.String())
	sameLines(t, "mosquitto_sub", blocks["watch-output"], watch.out.String())

	device.interrupt(t) // Ctrl-C
	if code := device.wait(t); code != 0 || !strings.Contains(device.out.String(), "disconnected") {
		t.Errorf("the device ended with %d after Ctrl-C:\n%s", code, device.out.String())
	}
	watch.waitFor(t, `wsgate/kitchen-sensor/status {"state":"offline"`, 30*time.Second)
	gateway.interrupt(t)
	gateway.wait(t)
	if !strings.Contains(gateway.out.String(), "msg=stopped") {
		t.Errorf("the gateway did not stop cleanly on Ctrl-C:\n%s", gateway.out.String())
	}
	t.Logf("make run printed:\n%s\nmosquitto_sub printed:\n%s", gateway.out.String(), watch.out.String())
}

// volatile are the parts of the outputs that change from run to run.
var volatile = regexp.MustCompile(`"(since|version|session)":"[^"]*"|session [0-9a-f]+\)`)

// sameLines checks that every line the README shows for a terminal is
// among the lines it printed, in any order (MQTT orders messages per
// topic only).
func sameLines(t *testing.T, terminal, readme, printed string) {
	t.Helper()
	normal := func(s string) []string {
		return strings.Split(strings.TrimSpace(volatile.ReplaceAllStringFunc(s, func(v string) string {
			if strings.HasPrefix(v, "session") {
				return "session …)"
			}
			k, _, _ := strings.Cut(v, ":")
			return k + `:"…"`
		})), "\n")
	}
	got := normal(printed)
	for _, want := range normal(readme) {
		if !slices.Contains(got, want) {
			t.Errorf("the README shows %s printing\n  %s\nbut it printed:\n%s", terminal, want, printed)
		}
	}
}

// enterNamespace brings up the loopback interface of the new network
// namespace (it starts down) and names the host "hub".
func enterNamespace(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatalf("flags of lo: %v", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatalf("bring lo up: %v", err)
	}
	if err := unix.Sethostname([]byte("hub")); err != nil {
		t.Fatalf("host name: %v", err)
	}
}

// copyProject copies the project's files, as a fresh checkout has them:
// no .git, no bin/ (so `make run` builds for the first time), no dist/.
func copyProject(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if rel == ".git" || rel == "bin" || rel == "dist" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(to, rel), data, info.Mode().Perm())
		}
		return nil // sockets, links: nothing a build needs
	})
	if err != nil {
		t.Fatalf("copy the project: %v", err)
	}
}

// quickstartEnviron is the environment of a user's terminal: this one's
// without what `make test` adds (its make's flags), the gateway's state in
// state, and no Go toolchain download (the namespace has no network).
func quickstartEnviron(state string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == quickstartEnv || k == "STATE_DIRECTORY" || k == "MAKEFLAGS" || k == "MFLAGS" || k == "MAKELEVEL"
	})
	return append(env, "XDG_STATE_HOME="+state, "GOTOOLCHAIN=local")
}

// terminal is one command of the quick start running as in a terminal of
// its own: run by bash (which runs a simple command in its own process),
// in a process group, which Ctrl-C signals as a whole.
type terminal struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	code int
}

func openTerminal(t *testing.T, name, dir string, env []string, line string) *terminal {
	t.Helper()
	tm := &terminal{name: name, done: make(chan struct{})}
	tm.cmd = exec.Command("bash", "-c", line)
	tm.cmd.Dir, tm.cmd.Env = dir, env
	tm.cmd.Stdout, tm.cmd.Stderr = &tm.out, &tm.out
	tm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := tm.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		_ = tm.cmd.Wait()
		tm.code = tm.cmd.ProcessState.ExitCode()
		close(tm.done)
	}()
	t.Cleanup(func() {
		select {
		case <-tm.done:
		default:
			_ = syscall.Kill(-tm.cmd.Process.Pid, syscall.SIGKILL)
			<-tm.done
		}
	})
	return tm
}

// waitFor waits until the terminal shows want, failing when it does not
// within timeout or its command ends first.
func (tm *terminal) waitFor(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(tm.out.String(), want) {
		select {
		case <-tm.done:
			if strings.Contains(tm.out.String(), want) {
				return
			}
			t.Fatalf("%s ended (status %d) without showing %q:\n%s", tm.name, tm.code, want, tm.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not show %q within %s:\n%s", tm.name, want, timeout, tm.out.String())
		}
	}
}

// interrupt is Ctrl-C.
func (tm *terminal) interrupt(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-tm.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatalf("interrupt %s: %v", tm.name, err)
	}
}

// wait returns the command's exit status once it ended.
func (tm *terminal) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-tm.done:
		return tm.code
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not end:\n%s", tm.name, tm.out.String())
		return -1
	}
}
