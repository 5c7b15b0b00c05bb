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
	_ = garage.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := garage.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != 1008 {
				t.Errorf("the revoked device was closed with %d %q, want 1008", ce.Code, ce.Text)
			}
			break
		}
		if err != nil {
			t.Fatalf("the revoked device: %v", err)
		}
	}
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
