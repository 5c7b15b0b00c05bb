package mqttbridge

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// startWebSocketBroker starts a mochi broker with a TCP listener (for the
// test's subscriber) and an MQTT-over-WebSocket one (for the gateway), on
// free loopback ports; it returns the tcp:// and ws:// URLs.
func startWebSocketBroker(t *testing.T) (tcpURL, wsURL string) {
	t.Helper()
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := server.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	wsAddr := freeAddr(t)
	if err := server.AddListener(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: wsAddr})); err != nil {
		t.Fatal(err)
	}
	if err := server.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return "tcp://" + tcp.Address(), "ws://" + wsAddr + "/"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Over a ws:// broker URL paho opens the connection itself, so QoS 0 frames
// take paho's own publish path rather than the coalescing connection's:
// both QoS levels still arrive, in order per level.
func TestUplinkOverWebSocketBroker(t *testing.T) {
	t.Parallel()
	tcpURL, wsURL := startWebSocketBroker(t)
	sub := brokertest.Subscribe(t, tcpURL, "wsgate/wsb-1/+")
	g := startGateway(t, gatewayOptions{url: wsURL})
	g.waitConnected(t, true)
	if g.bridge.conn.Load() != nil {
		t.Fatal("a ws:// broker connection went through the coalescing dialer")
	}
	d := connectDevice(t, g.addr, "wsb-1")
	for n := 1; n <= 20; n++ {
		qos := n % 2
		d.pub(fmt.Sprintf("q%d", qos), fmt.Sprintf(`{"n":%d}`, n), uint64(n), qos, false)
		if qos == 1 {
			if m := d.settle(uint64(n)); m.Op != "ack" {
				t.Fatalf("pub %d: %s, want an ack", n, m.raw)
			}
		}
	}
	got := map[string][]string{} // topic@QoS: payloads
	deadline := time.After(wait)
	for n := 0; n < 20; {
		select {
		case m := <-sub.Messages:
			if m.Topic != "wsgate/wsb-1/status" {
				key := fmt.Sprintf("%s@%d", m.Topic, m.QoS)
				got[key] = append(got[key], string(m.Payload))
				n++
			}
		case <-deadline:
			t.Fatalf("got %v, want 20 messages", got)
		}
	}
	for _, qos := range []int{0, 1} {
		var want []string
		for n := 2 - qos; n <= 20; n += 2 {
			want = append(want, fmt.Sprintf(`{"n":%d}`, n))
		}
		key := fmt.Sprintf("wsgate/wsb-1/q%d@%d", qos, qos)
		if fmt.Sprint(got[key]) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", key, got[key], want)
		}
	}
	if st := g.bridge.Stats(); st.QoS0Dropped != 0 || st.Published != 10 {
		t.Errorf("stats %+v: want 10 QoS 1 frames published, nothing dropped", st)
	}
}
