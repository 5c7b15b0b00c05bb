package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/auth"
	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// tokenEntry is an [[auth.tokens]] entry with the hash of token.
func tokenEntry(t *testing.T, device, token string) string {
	t.Helper()
	h, err := auth.Hash(token)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("[[auth.tokens]]\ndevices = %q\nhash = %q\n\n", device, h)
}

// helloToken connects a done device with a token and returns the
// connection and the gateway's answer to its hello.
func helloToken(t *testing.T, wsURL, device, token string) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hello := fmt.Sprintf(`{"op":"hello","id":%q,"token":%q}`, device, token)
	if err := c.WriteMessage(websocket.TextMessage, []byte(hello)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return c, string(msg)
}

// TestDeviceTokensAndReload: a listener with auth = "token" takes done
// devices with the hashed token of their id; a reload with a new token set
// keeps the good sessions, closes the revoked device with 1008, and lets
// the new tokens in.
func TestDeviceTokensAndReload(t *testing.T) {
	kitchenEntry, garageEntry := tokenEntry(t, "kitchen", "k-token"), tokenEntry(t, "garage", "g-token")
	ts := testConfig(t, kitchenEntry+garageEntry)
	doc, err := os.ReadFile(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte("[[listeners]]\n"), []byte("[[listeners]]\nauth = \"token\"\n"), 1)
	if err := os.WriteFile(ts.path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	// The listener wants tokens: the test's own readiness probe (a done
	// connection without a hello) still gets through.
	startInProcess(t, ts.path, ts.wsURL)

	kitchen, welcome := helloToken(t, ts.wsURL, "kitchen", "k-token")
	if !strings.Contains(welcome, `"op":"welcome"`) {
		t.Fatalf("kitchen: %s", welcome)
	}
	garage, welcome := helloToken(t, ts.wsURL, "garage", "g-token")
	if !strings.Contains(welcome, `"op":"welcome"`) {
		t.Fatalf("garage: %s", welcome)
	}
	if _, answer := helloToken(t, ts.wsURL, "garage", "k-token"); !strings.Contains(answer, `"code":"unauthorized"`) {
		t.Errorf("another device's token: %s", answer)
	}

	// The new set: garage revoked, cellar added.
	next := bytes.Replace(doc, []byte(garageEntry), []byte(tokenEntry(t, "cellar", "c-token")), 1)
	if err := os.WriteFile(ts.path, next, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if status := run(t.Context(), []string{"reload", "-config", ts.path}, &out, &out); status != 0 {
		t.Fatalf("reload: %d\n%s", status, out.String())
	}
	wantClosed(t, garage, 1008)
	if err := kitchen.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"t","data":1,"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	_ = kitchen.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := kitchen.ReadMessage(); err != nil || string(msg) != `{"op":"ack","seq":1}` {
		t.Errorf("the device whose token stays: %s %v", msg, err)
	}
	if _, welcome := helloToken(t, ts.wsURL, "cellar", "c-token"); !strings.Contains(welcome, `"op":"welcome"`) {
		t.Errorf("the new token: %s", welcome)
	}
}

// TestAccessRulesEndToEnd: through MQTT, a done device refused a channel
// gets nack unauthorized, a command the rules refuse is answered with a
// result saying so, and an allowed one reaches the device.
func TestAccessRulesEndToEnd(t *testing.T) {
	ts := testConfig(t, `
[[auth.acl]]
devices = "esp32-*"
publish = ["telemetry"]
commands = ["set-*"]
`)
	startInProcess(t, ts.path, ts.wsURL)
	sub := brokertest.Subscribe(t, ts.mqttURL, "wsgate/esp32-1/#")
	dev := dialDone(t, ts.wsURL, "esp32-1")
	defer dev.Close()
	exchange := func(msg string) string {
		t.Helper()
		if err := dev.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = dev.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, answer, err := dev.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(answer)
	}
	if got := exchange(`{"op":"pub","ch":"telemetry","data":1,"seq":1}`); got != `{"op":"ack","seq":1}` {
		t.Errorf("allowed channel: %s", got)
	}
	if got := exchange(`{"op":"pub","ch":"debug","data":1,"seq":2}`); !strings.Contains(got, `"code":"unauthorized"`) {
		t.Errorf("refused channel: %s", got)
	}
	brokertest.Publish(t, ts.mqttURL, "wsgate/esp32-1/cmd/reboot", []byte(`{}`), false)
	if m := sub.Next(t, "wsgate/esp32-1/cmd/reboot/result", 10*time.Second); !strings.Contains(string(m.Payload), `"ok":false`) || !strings.Contains(string(m.Payload), "forbidden") {
		t.Errorf("refused command's result: %s", m.Payload)
	}
	brokertest.Publish(t, ts.mqttURL, "wsgate/esp32-1/cmd/set-interval", []byte(`{"s":60}`), false)
	_ = dev.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := dev.ReadMessage(); err != nil || !strings.Contains(string(msg), `"name":"set-interval"`) {
		t.Errorf("allowed command: %s %v", msg, err)
	}
}

// wantClosed reads c until its close frame, which must have code.
func wantClosed(t *testing.T, c *websocket.Conn, code int) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != code {
				t.Errorf("closed with %d %q, want %d", ce.Code, ce.Text, code)
			}
			return
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
	}
}
