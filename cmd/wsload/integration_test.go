package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// testGateway is a real wsgate process with its embedded broker on free
// loopback ports.
type testGateway struct {
	wsURL, brokerURL, metricsURL string
	pid                          int
}

// startGateway builds cmd/wsgate and runs it until the test ends.
func startGateway(t *testing.T) *testGateway {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the gateway")
	}
	dir := t.TempDir()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		t.Fatalf("go env GOMOD: %q, %v", gomod, err)
	}
	bin := filepath.Join(dir, "wsgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/wsgate")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wsgate: %v\n%s", err, out)
	}

	ports := brokertest.FreePorts(t, 3)
	wsPort, mqttPort, adminPort := ports[0], ports[1], ports[2]
	conf := fmt.Sprintf(`
[gateway]
id = "wsload-test"
shutdown_grace = "2s"

[log]
level = "warn"

[[listeners]]
address = "127.0.0.1:%d"

[mqtt.embedded]
address = "127.0.0.1:%d"

[spool]
dir = %q

[admin]
address = "127.0.0.1:%d"

[protocols]
order = ["done"]

[websocket]
# Load runs send as fast as they can, from one address.
message_rate = 0
max_connections_per_address = 0
`, wsPort, mqttPort, filepath.Join(dir, "spool"), adminPort)
	confPath := filepath.Join(dir, "wsgate.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	var log syncBuffer
	cmd := exec.Command(bin, "run", "-config", confPath)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("wsgate did not stop on SIGTERM; log:\n%s", log.String())
		}
	})

	gw := &testGateway{
		wsURL:      fmt.Sprintf("ws://127.0.0.1:%d/", wsPort),
		brokerURL:  fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort),
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort),
		pid:        cmd.Process.Pid,
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ready(gw.wsURL, mqttPort) {
			return gw
		}
		select {
		case err := <-exited:
			t.Fatalf("wsgate exited: %v; log:\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate is not ready; log:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports whether the gateway takes WebSocket and MQTT connections.
func ready(wsURL string, mqttPort int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", mqttPort), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	d := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: time.Second}
	ws, _, err := d.Dial(wsURL, nil)
	if err != nil {
		return false
	}
	ws.Close()
	return true
}

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

// testConfig is a small, bounded run against gw.
func (gw *testGateway) config(t *testing.T, args ...string) *config {
	t.Helper()
	base := []string{"-url", gw.wsURL, "-broker", gw.brokerURL, "-devices", "2", "-count", "200",
		"-duration", "30s", "-drain", "5s"}
	cfg, err := parseFlags(append(base, args...), io.Discard)
	if err != nil {
		t.Fatalf("flags %v: %v", args, err)
	}
	return cfg
}

// fields parses a summary line into its keys and values, checking that
// every key appears once.
func fields(t *testing.T, line string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for f := range strings.FieldsSeq(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			t.Fatalf("summary field %q is not key=value: %s", f, line)
		}
		if _, dup := out[k]; dup {
			t.Fatalf("summary key %s twice: %s", k, line)
		}
		out[k] = v
	}
	return out
}

// want checks summary values.
func want(t *testing.T, got map[string]string, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		if got[kv[i]] != kv[i+1] {
			t.Errorf("%s=%s, want %s", kv[i], got[kv[i]], kv[i+1])
		}
	}
}

// positive checks that summary values are numbers above zero.
func positive(t *testing.T, got map[string]string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, err := strconv.ParseFloat(got[k], 64); err != nil || v <= 0 {
			t.Errorf("%s=%s, want a positive number", k, got[k])
		}
	}
}

func TestAgainstGateway(t *testing.T) {
	gw := startGateway(t)
	ctx := context.Background()

	t.Run("throughput qos0", func(t *testing.T) {
		sum, err := runMessages(ctx, gw.config(t, "-mode", "throughput", "-qos", "0"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		got := fields(t, sum.String())
		want(t, got, "mode", "throughput", "devices", "2", "connected", "2", "qos", "0", "size", "200",
			"sent", "400", "acked", "0", "errors", "0", "received", "400", "lost", "0", "dup", "0", "invalid", "0", "dropped", "0")
		positive(t, got, "msgs_per_s", "max_ms", "elapsed_s")
		if runtime.GOOS == "linux" {
			positive(t, got, "load_cpu_us_per_msg")
		}
	})

	t.Run("throughput qos1", func(t *testing.T) {
		sum, err := runMessages(ctx, gw.config(t, "-mode", "throughput", "-qos", "1", "-inflight", "8"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		got := fields(t, sum.String())
		want(t, got, "sent", "400", "acked", "400", "nacked", "0", "received", "400", "lost", "0", "dup", "0")
		positive(t, got, "p50_ms", "p99_ms", "max_ms", "ack_p50_ms", "ack_p99_ms")
	})

	t.Run("devices that do not wait for acks", func(t *testing.T) {
		// A window as large as the run: the gateway's own window of unacked
		// pubs (max_inflight 128) holds them back, with no nack.
		sum, err := runMessages(ctx, gw.config(t, "-mode", "throughput", "-qos", "1", "-count", "2000", "-inflight", "2000",
			"-pid", strconv.Itoa(gw.pid)), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		got := fields(t, sum.String())
		want(t, got, "sent", "4000", "acked", "4000", "nacked", "0", "received", "4000", "lost", "0", "dup", "0")
		positive(t, got, "ack_p50_ms", "rss_peak_kib")
	})

	t.Run("latency", func(t *testing.T) {
		sum, err := runMessages(ctx, gw.config(t, "-mode", "latency", "-qos", "1", "-rate", "2000", "-count", "50", "-warmup", "5ms"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want(t, fields(t, sum.String()), "mode", "latency", "rate", "2000", "sent", "100", "acked", "100", "received", "100", "lost", "0")
	})

	t.Run("direct", func(t *testing.T) {
		sum, err := runMessages(ctx, gw.config(t, "-mode", "direct", "-qos", "1"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		want(t, fields(t, sum.String()), "mode", "direct", "sent", "400", "acked", "400", "received", "400", "lost", "0", "dup", "0")
	})

	t.Run("idle", func(t *testing.T) {
		cfg := gw.config(t, "-mode", "idle", "-devices", "3", "-duration", "1s",
			"-pid", strconv.Itoa(gw.pid), "-metrics", gw.metricsURL)
		sum, err := runIdle(ctx, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		got := fields(t, sum.String())
		want(t, got, "mode", "idle", "devices", "3", "connected", "3", "failed", "0", "dropped", "0")
		positive(t, got, "rss_before_kib", "rss_after_kib", "goroutines_before", "goroutines_after", "fds_after", "nofile")
	})

	t.Run("churn", func(t *testing.T) {
		cfg := gw.config(t, "-mode", "churn", "-cycles", "10", "-concurrency", "2", "-qos", "1", "-metrics", gw.metricsURL)
		sum, err := runChurn(ctx, cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		got := fields(t, sum.String())
		want(t, got, "mode", "churn", "cycles", "10", "errors", "0", "sent", "10", "received", "10", "lost", "0", "dup", "0")
		positive(t, got, "goroutines_before", "goroutines_after", "rss_after_kib")
	})

	t.Run("command line", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"-url", gw.wsURL, "-broker", gw.brokerURL, "-devices", "2", "-count", "20", "-duration", "30s"}
		if code := run(ctx, args, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
		}
		if n := strings.Count(stdout.String(), "\n"); n != 1 {
			t.Fatalf("%d lines on stdout, want exactly one summary: %q", n, stdout.String())
		}
		want(t, fields(t, stdout.String()), "mode", "throughput", "received", "40", "lost", "0")
	})
}
