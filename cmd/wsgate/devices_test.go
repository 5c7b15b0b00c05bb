package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// TestLocalDevicesEndToEnd runs the gateway with a serial device on a real
// pseudo-terminal pair and a sysfs sensor, and checks the whole path: a
// route from a WebSocket done device to the serial device, the serial
// device's lines and the sensor's readings to MQTT, and an MQTT command
// written to the serial device.
func TestLocalDevicesEndToEnd(t *testing.T) {
	socat := brokertest.Require(t, "socat")
	dir := t.TempDir()
	port, devEnd := filepath.Join(dir, "ttyGW"), filepath.Join(dir, "ttyDEV")
	tty := exec.Command(socat, "pty,raw,echo=0,link="+port, "pty,raw,echo=0,link="+devEnd)
	if err := tty.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tty.Process.Signal(syscall.SIGTERM); _ = tty.Wait() }()
	waitForFile(t, devEnd)
	sensor := filepath.Join(dir, "temp")
	if err := os.WriteFile(sensor, []byte("48312\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ts := testConfig(t, `
[[devices]]
id = "uart"
driver = "serial"
port = "`+port+`"
baud = 115200

[[devices]]
id = "pi-cpu"
driver = "sysfs"
path = "`+sensor+`"
parser = "thermal"
interval = "200ms"

[[routes]]
devices = ["kitchen-*"]
channels = ["sensors/+"]
to = ["mqtt", "device:uart"]
pick = "t"
`)
	startInProcess(t, ts.path, ts.wsURL)
	sub := brokertest.Subscribe(t, ts.mqttURL, "wsgate/#")
	device, err := os.OpenFile(devEnd, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer device.Close()
	lines := bufio.NewReader(device)

	// The serial device is online (a retained status, delivered first);
	// the sysfs sensor publishes on its own, every interval.
	if m := sub.Next(t, "wsgate/uart/status", 20*time.Second); !strings.Contains(string(m.Payload), `"protocol":"driver:serial"`) {
		t.Errorf("serial device status %s", m.Payload)
	}
	if m := sub.Next(t, "wsgate/pi-cpu/value", 20*time.Second); string(m.Payload) != `{"celsius":48.312}` {
		t.Errorf("sensor reading %s", m.Payload)
	}

	// A WebSocket device's reading is routed to MQTT and to the serial line.
	ws := dialDone(t, ts.wsURL, "kitchen-1")
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"sensors/temp","data":{"t":21.5,"rh":40},"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != `{"op":"ack","seq":1}` {
		t.Fatalf("ack: %s %v", msg, err)
	}
	if m := sub.Next(t, "wsgate/kitchen-1/sensors/temp", 20*time.Second); string(m.Payload) != "21.5" {
		t.Errorf("routed to MQTT: %s", m.Payload)
	}
	if got := readLine(t, device, lines); got != "21.5" {
		t.Errorf("serial line got %q, want 21.5", got)
	}

	// What the serial device says is published.
	if _, err := device.WriteString("hello from uart\n"); err != nil {
		t.Fatal(err)
	}
	if m := sub.Next(t, "wsgate/uart/rx", 20*time.Second); string(m.Payload) != `"hello from uart"` {
		t.Errorf("serial frame %s", m.Payload)
	}

	// An MQTT command is written to the serial device; its result comes back.
	brokertest.Publish(t, ts.mqttURL, "wsgate/uart/cmd/write", []byte(`"LED ON"`), false)
	if got := readLine(t, device, lines); got != "LED ON" {
		t.Errorf("command on the serial line: %q", got)
	}
	if m := sub.Next(t, "wsgate/uart/cmd/write/result", 20*time.Second); !strings.Contains(string(m.Payload), `"ok":true`) {
		t.Errorf("command result %s", m.Payload)
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readLine(t *testing.T, f *os.File, r *bufio.Reader) string {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("serial device read: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

// TestRouteToDeviceThatCannotStart: a local device that cannot start (its
// GPIO chip is missing) is logged and left out; the gateway runs, a route
// to it answers that the device is offline, and the device's retries of
// the same seq publish to MQTT once.
func TestRouteToDeviceThatCannotStart(t *testing.T) {
	t.Parallel()
	ts := testConfig(t, `
[[devices]]
id = "relay"
driver = "gpio"
chip = "/dev/gpiochip-that-does-not-exist"
line = 27
direction = "output"

[[routes]]
devices = ["panel"]
channels = ["relay"]
to = ["mqtt", "device:relay"]
`)
	startInProcess(t, ts.path, ts.wsURL)
	sub := brokertest.Subscribe(t, ts.mqttURL, "wsgate/panel/#")
	c := dialDone(t, ts.wsURL, "panel")
	defer c.Close()
	exchange := func(pub string) string {
		t.Helper()
		if err := c.WriteMessage(websocket.TextMessage, []byte(pub)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	for attempt := range 3 {
		msg := exchange(`{"op":"pub","ch":"relay","data":1,"seq":1}`)
		if !strings.Contains(msg, `"op":"nack"`) || !strings.Contains(msg, `"code":"busy"`) || !strings.Contains(msg, "device:relay: local device relay: device offline") {
			t.Fatalf("attempt %d: a pub routed to a device that did not start: %s", attempt, msg)
		}
	}
	if msg := exchange(`{"op":"pub","ch":"other","data":2,"seq":2}`); msg != `{"op":"ack","seq":2}` {
		t.Fatalf("a pub that no route takes: %s", msg)
	}
	// The device's QoS 1 messages reach the broker in order: once "other"
	// is there, every copy of seq 1 that was published is too.
	copies := 0
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case m := <-sub.Messages:
			if m.Topic == "wsgate/panel/relay" {
				copies++
			}
			done = m.Topic == "wsgate/panel/other"
		case <-deadline:
			t.Fatal("wsgate/panel/other never reached MQTT")
		}
	}
	if copies != 1 {
		t.Errorf("MQTT got seq 1 %d times, want once", copies)
	}
}
