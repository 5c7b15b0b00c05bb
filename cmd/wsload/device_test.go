package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeGateway speaks just enough done to test the device side without MQTT:
// it welcomes every hello and acks QoS 1 pubs, nacking the first copy of
// every third seq as busy. It records every pub it accepted.
type fakeGateway struct {
	mu       sync.Mutex
	accepted map[string][]uint64 // device id: seqs accepted, in order
	hellos   int
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{Subprotocols: []string{"done"}}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	var id string
	nacked := make(map[uint64]bool)
	for {
		_, raw, err := c.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			Op   string          `json:"op"`
			ID   string          `json:"id"`
			Seq  uint64          `json:"seq"`
			QoS  int             `json:"qos"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return
		}
		switch m.Op {
		case "hello":
			id = m.ID
			g.mu.Lock()
			g.hellos++
			g.mu.Unlock()
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"welcome","session":"s","heartbeat":0,"max":65536}`))
		case "pub":
			if m.QoS == 1 && m.Seq%3 == 0 && !nacked[m.Seq] {
				nacked[m.Seq] = true
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"nack","seq":`+itoa(m.Seq)+`,"code":"busy","reason":"full"}`))
				continue
			}
			g.mu.Lock()
			g.accepted[id] = append(g.accepted[id], m.Seq)
			g.mu.Unlock()
			if m.QoS == 1 {
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{"op":"ack","seq":`+itoa(m.Seq)+`}`))
			}
		case "bye":
			_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
			return
		}
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func startFakeGateway(t *testing.T) (*fakeGateway, string) {
	t.Helper()
	g := &fakeGateway{accepted: make(map[string][]uint64)}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
}

func TestDeviceRetriesBusyWithinItsWindow(t *testing.T) {
	t.Parallel()
	g, url := startFakeGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := dialDevice(ctx, dialOptions{url: url, subprotocol: "done"}, "dev-1", netipNone, 4)
	if err != nil {
		t.Fatal(err)
	}
	d.run(ctx, plan{count: 30, qos: 1, size: 100, inflight: 4})
	d.close(time.Now().Add(5 * time.Second))
	if s, a, n := d.sent.Load(), d.acked.Load(), d.nacked.Load(); s != 30 || a != 30 || n != 10 {
		t.Errorf("sent %d acked %d nacked %d; want 30, 30, 10", s, a, n)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	got := g.accepted["dev-1"]
	seen := make(map[uint64]bool)
	for _, s := range got {
		seen[s] = true
	}
	if len(got) != 30 || len(seen) != 30 {
		t.Errorf("the gateway accepted %d pubs (%d distinct), want 30: %v", len(got), len(seen), got)
	}
}

func TestDeviceQoS0IsNotAcked(t *testing.T) {
	t.Parallel()
	g, url := startFakeGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := dialDevice(ctx, dialOptions{url: url, subprotocol: "done", small: true}, "dev-0", netipNone, 4)
	if err != nil {
		t.Fatal(err)
	}
	d.run(ctx, plan{first: 5, count: 10, qos: 0, size: 50, inflight: 4})
	d.close(time.Now().Add(5 * time.Second))
	if d.sent.Load() != 10 || d.acked.Load() != 0 {
		t.Errorf("sent %d acked %d; want 10, 0", d.sent.Load(), d.acked.Load())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if got := g.accepted["dev-0"]; len(got) != 10 || got[0] != 5 || got[9] != 14 {
		t.Errorf("accepted seqs %v, want 5..14", got)
	}
}

func TestDeviceStopsAtTheDeadline(t *testing.T) {
	t.Parallel()
	_, url := startFakeGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := dialDevice(ctx, dialOptions{url: url, subprotocol: "done"}, "dev-2", netipNone, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close(time.Now().Add(5 * time.Second))
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	// One message an hour: only the first is due before the deadline.
	d.run(short, plan{count: 1000, qos: 0, size: 50, inflight: 4, interval: time.Hour, start: time.Now()})
	if d.sent.Load() != 1 {
		t.Errorf("sent %d before the deadline, want 1", d.sent.Load())
	}
}

func TestDialRefusesAnotherSubprotocol(t *testing.T) {
	t.Parallel()
	_, url := startFakeGateway(t)
	_, err := dialDevice(context.Background(), dialOptions{url: url, subprotocol: "ship"}, "dev-3", netipNone, 4)
	if err == nil {
		t.Fatal("dial succeeded although the gateway does not speak ship")
	}
}

var netipNone netip.Addr

// TestDeviceOverTLS: with -ca naming the gateway's certificate, devices
// connect over wss; without it the unknown certificate is refused.
func TestDeviceOverTLS(t *testing.T) {
	t.Parallel()
	g := &fakeGateway{accepted: make(map[string][]uint64)}
	srv := httptest.NewTLSServer(g)
	t.Cleanup(srv.Close)
	url := "wss" + strings.TrimPrefix(srv.URL, "https") + "/"
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		args   []string
		wantOK bool
	}{
		{"trusted with -ca", []string{"-ca", caFile}, true},
		{"unknown certificate", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseFlags(append([]string{"-url", url, "-broker", ""}, tt.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			d, err := dialDevice(context.Background(), dialOptions{url: url, subprotocol: "done", tls: cfg.tls}, "dev-tls", netipNone, 4)
			if (err == nil) != tt.wantOK {
				t.Fatalf("dial over TLS: %v, want success %v", err, tt.wantOK)
			}
			if d != nil {
				d.conn.Close()
			}
		})
	}
	if _, err := parseFlags([]string{"-ca", filepath.Join(t.TempDir(), "missing.pem")}, io.Discard); err == nil {
		t.Error("-ca with a missing file accepted")
	}
}
