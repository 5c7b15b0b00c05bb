package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// verifyNoLeaks checks, once everything the test registered after it has
// been cleaned up (devices, gateway, MQTT subscriber), that no goroutine
// the test started is left.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// simulated is a `wsgate device` run in this process.
type simulated struct {
	stdout, stderr syncBuffer
	status         chan int
	stop           context.CancelFunc // as Ctrl-C
}

// startDevice runs `wsgate device args...` until the test ends or stop.
func startDevice(t *testing.T, stdin io.Reader, args ...string) *simulated {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &simulated{status: make(chan int, 1), stop: cancel}
	go func() { d.status <- deviceCommand(ctx, args, stdin, &d.stdout, &d.stderr) }()
	t.Cleanup(func() {
		cancel()
		d.wait(t)
	})
	return d
}

// wait returns the exit status, failing the test when the device does not
// end.
func (d *simulated) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-d.status:
		d.status <- code // for the next wait
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("wsgate device did not end; output:\n%s%s", d.stdout.String(), d.stderr.String())
		return -1
	}
}

// waitOutput waits until the device printed a line containing want.
func (d *simulated) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.stdout.String(), want) {
		select {
		case code := <-d.status:
			d.status <- code
			if !strings.Contains(d.stdout.String(), want) {
				t.Fatalf("wsgate device ended with %d before printing %q; output:\n%s%s", code, want, d.stdout.String(), d.stderr.String())
			}
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate device did not print %q; output:\n%s%s", want, d.stdout.String(), d.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type result struct {
	ID    string          `json:"id"`
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error string          `json:"error"`
}

func nextResult(t *testing.T, sub *brokertest.Subscriber, topic string) result {
	t.Helper()
	var r result
	m := sub.Next(t, topic, 10*time.Second)
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("result %s: %v", m.Payload, err)
	}
	return r
}

// TestDeviceSimulator: `wsgate device` publishes its readings, prints the
// commands it gets and answers them, and leaves cleanly on Ctrl-C.
func TestDeviceSimulator(t *testing.T) {
	verifyNoLeaks(t)
	ts := testConfig(t, "")
	startInProcess(t, ts.path, ts.wsURL)
	sub := brokertest.Subscribe(t, ts.mqttURL, "wsgate/#")

	d := startDevice(t, nil, "-url", ts.wsURL, "-id", "sim-1", "-pub", `telemetry={"t":21.5,"rh":40}`, "-pub", `state/door="open"`)
	if m := sub.Next(t, "wsgate/sim-1/status", 10*time.Second); !bytes.Contains(m.Payload, []byte(`"state":"online"`)) {
		t.Errorf("status %s", m.Payload)
	}
	if m := sub.Next(t, "wsgate/sim-1/telemetry", 10*time.Second); string(m.Payload) != `{"t":21.5,"rh":40}` {
		t.Errorf("telemetry %s, want the reading unchanged", m.Payload)
	}
	if m := sub.Next(t, "wsgate/sim-1/state/door", 10*time.Second); string(m.Payload) != `"open"` {
		t.Errorf("state/door %s", m.Payload)
	}
	d.waitOutput(t, `published telemetry {"t":21.5,"rh":40}`)
	d.waitOutput(t, `published state/door "open"`)

	brokertest.Publish(t, ts.mqttURL, "wsgate/sim-1/cmd/set-interval", []byte(`{"s":60}`), false)
	if r := nextResult(t, sub, "wsgate/sim-1/cmd/set-interval/result"); !r.OK || r.ID == "" || string(r.Data) != `{"s":60}` {
		t.Errorf("result %+v, want ok with the arguments as data", r)
	}
	d.waitOutput(t, `command set-interval {"s":60} (id `)
	brokertest.Publish(t, ts.mqttURL, "wsgate/sim-1/cmd/reboot", nil, false)
	if r := nextResult(t, sub, "wsgate/sim-1/cmd/reboot/result"); !r.OK || r.Data != nil {
		t.Errorf("result %+v, want ok without data", r)
	}
	d.waitOutput(t, "command reboot (no arguments)")

	d.stop() // Ctrl-C
	if code := d.wait(t); code != 0 {
		t.Fatalf("exit status %d after Ctrl-C; output:\n%s%s", code, d.stdout.String(), d.stderr.String())
	}
	if !strings.HasSuffix(d.stdout.String(), "disconnected\n") {
		t.Errorf("output:\n%s", d.stdout.String())
	}
	if m := sub.Next(t, "wsgate/sim-1/status", 10*time.Second); !bytes.Contains(m.Payload, []byte(`"state":"offline"`)) {
		t.Errorf("status after Ctrl-C %s, want offline", m.Payload)
	}
}

// TestDeviceOptions runs the device's other ways of publishing and
// answering against one gateway.
func TestDeviceOptions(t *testing.T) {
	verifyNoLeaks(t)
	ts := testConfig(t, tokenEntry(t, "locked", "l-token"))
	doc, err := os.ReadFile(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	// A second listener that wants tokens, for the -token-file case.
	lockedPort := brokertest.FreePort(t)
	doc = append(doc, []byte("\n[[listeners]]\naddress = \"127.0.0.1:"+strconv.Itoa(lockedPort)+"\"\nauth = \"token\"\n")...)
	if err := os.WriteFile(ts.path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	lockedURL := "ws://127.0.0.1:" + strconv.Itoa(lockedPort) + "/"
	startInProcess(t, ts.path, ts.wsURL)
	sub := brokertest.Subscribe(t, ts.mqttURL, "wsgate/#")
	tokenFile := filepath.Join(t.TempDir(), "locked.token")
	if err := os.WriteFile(tokenFile, []byte("l-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongToken := filepath.Join(t.TempDir(), "wrong.token")
	if err := os.WriteFile(wrongToken, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("once from stdin", func(t *testing.T) {
		stdin := strings.NewReader("load=0.5\n\nnot a reading\nload=0.75\n")
		d := startDevice(t, stdin, "-url", ts.wsURL, "-id", "sim-stdin", "-stdin", "-once")
		if code := d.wait(t); code != 0 {
			t.Fatalf("exit status %d; output:\n%s%s", code, d.stdout.String(), d.stderr.String())
		}
		for _, want := range []string{"0.5", "0.75"} {
			if m := sub.Next(t, "wsgate/sim-stdin/load", 10*time.Second); string(m.Payload) != want {
				t.Errorf("load %s, want %s", m.Payload, want)
			}
		}
		if !strings.Contains(d.stderr.String(), `"not a reading" is not CH=JSON`) {
			t.Errorf("stderr:\n%s", d.stderr.String())
		}
	})
	t.Run("once, a reading refused", func(t *testing.T) {
		d := startDevice(t, nil, "-url", ts.wsURL, "-id", "sim-bad", "-pub", "ok=1", "-pub", "cmd/x=1", "-once")
		if code := d.wait(t); code != 1 {
			t.Fatalf("exit status %d, want 1; output:\n%s%s", code, d.stdout.String(), d.stderr.String())
		}
		if out := d.stdout.String(); !strings.Contains(out, "published ok 1") || !strings.Contains(out, "refused cmd/x 1: bad-request") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("every", func(t *testing.T) {
		startDevice(t, nil, "-url", ts.wsURL, "-id", "sim-every", "-pub", "beat=1", "-every", "10ms")
		for range 3 {
			sub.Next(t, "wsgate/sim-every/beat", 10*time.Second)
		}
	})
	t.Run("answer error", func(t *testing.T) {
		d := startDevice(t, nil, "-url", ts.wsURL, "-id", "sim-err", "-answer", "error")
		d.waitOutput(t, "connected to")
		brokertest.Publish(t, ts.mqttURL, "wsgate/sim-err/cmd/open", []byte(`{}`), false)
		if r := nextResult(t, sub, "wsgate/sim-err/cmd/open/result"); r.OK || r.Error == "" {
			t.Errorf("result %+v, want a failure", r)
		}
		d.waitOutput(t, "command open {} (id m1): answered with an error")
	})
	t.Run("token", func(t *testing.T) {
		d := startDevice(t, nil, "-url", lockedURL, "-id", "locked", "-token-file", tokenFile, "-pub", "t=1", "-once")
		if code := d.wait(t); code != 0 {
			t.Fatalf("exit status %d; output:\n%s%s", code, d.stdout.String(), d.stderr.String())
		}
		d = startDevice(t, nil, "-url", lockedURL, "-id", "locked", "-token-file", wrongToken, "-pub", "t=1", "-once")
		if code := d.wait(t); code != 1 || !strings.Contains(d.stderr.String(), "unauthorized") {
			t.Errorf("wrong token: exit status %d; stderr:\n%s", code, d.stderr.String())
		}
	})
	t.Run("no gateway", func(t *testing.T) {
		d := startDevice(t, nil, "-url", "ws://127.0.0.1:"+strconv.Itoa(brokertest.FreePort(t))+"/", "-id", "x")
		if code := d.wait(t); code != 1 || !strings.Contains(d.stderr.String(), "is the gateway running?") {
			t.Errorf("exit status %d; stderr:\n%s", code, d.stderr.String())
		}
	})
}

// TestDeviceUsage: wrong flags are refused with the usage and status 2,
// before anything connects.
func TestDeviceUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-pub", "telemetry"}, "is not CH=JSON"},
		{[]string{"-pub", "t={oops}"}, "the value is not JSON"},
		{[]string{"-pub", "msg=hello"}, "a string needs quotes"},
		{[]string{"-qos", "2"}, "-qos 2: 0 or 1"},
		{[]string{"-answer", "maybe"}, "ok, error or none"},
		{[]string{"-every", "5s"}, "-every needs"},
		{[]string{"-pub", "t=1", "-every", "5s", "-once"}, "exclude each other"},
		{[]string{"-once"}, "-once needs readings"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-frobnicate"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if code := deviceCommand(t.Context(), tt.args, nil, &out, &out); code != 2 || !strings.Contains(out.String(), tt.want) || !strings.Contains(out.String(), "usage: wsgate device") {
			t.Errorf("%q: status %d, output:\n%s\nwant status 2, %q and the usage", tt.args, code, out.String(), tt.want)
		}
	}
	var out bytes.Buffer
	if code := run(t.Context(), []string{"device", "-help"}, &out, &out); code != 0 || !strings.Contains(out.String(), "-answer ok|error|none") {
		t.Errorf("device -help: %d\n%s", code, out.String())
	}
}
