package mqttbridge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// mochiBroker is a mochi broker with a plain TCP listener (for the test's
// subscriber), an MQTT-over-WebSocket one and a TLS one, on free loopback
// ports.
type mochiBroker struct {
	tcpURL, wsURL, sslURL string
	roots                 *x509.CertPool // trusts the TLS listener's certificate
}

func startMochiBroker(t *testing.T) mochiBroker {
	t.Helper()
	server := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	cert, roots := selfSignedCert(t)
	tcp := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	ssl := listeners.NewTCP(listeners.Config{ID: "ssl", Address: "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	wsAddr := freeAddr(t)
	for _, l := range []listeners.Listener{tcp, ssl, listeners.NewWebsocket(listeners.Config{ID: "ws", Address: wsAddr})} {
		if err := server.AddListener(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := server.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return mochiBroker{tcpURL: "tcp://" + tcp.Address(), wsURL: "ws://" + wsAddr + "/", sslURL: "ssl://" + ssl.Address(), roots: roots}
}

// selfSignedCert makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
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

// Both QoS levels arrive, in order per level, whichever way the bridge
// reaches the broker. Over tcp:// and ssl:// the bridge dials and QoS 0
// frames are written onto its coalescing connection (a plain socket, a TLS
// one); over ws:// paho dials and QoS 0 frames take paho's own Publish.
func TestUplinkPerBrokerScheme(t *testing.T) {
	t.Parallel()
	broker := startMochiBroker(t)
	for _, tc := range []struct {
		scheme     string
		url        string
		coalescing bool
	}{
		{"tcp", broker.tcpURL, true},
		{"ssl", broker.sslURL, true},
		{"ws", broker.wsURL, false},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			t.Parallel()
			device := "scheme-" + tc.scheme
			sub := brokertest.Subscribe(t, broker.tcpURL, "wsgate/"+device+"/+")
			g := startGateway(t, gatewayOptions{id: "gw-" + tc.scheme, url: tc.url, tls: &tls.Config{RootCAs: broker.roots}})
			g.waitConnected(t, true)
			if got := g.bridge.conn.Load() != nil; got != tc.coalescing {
				t.Fatalf("coalescing connection: %v, want %v", got, tc.coalescing)
			}
			d := connectDevice(t, g.addr, device)
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
					if m.Topic != "wsgate/"+device+"/status" {
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
				key := fmt.Sprintf("wsgate/%s/q%d@%d", device, qos, qos)
				if fmt.Sprint(got[key]) != fmt.Sprint(want) {
					t.Errorf("%s: got %v, want %v", key, got[key], want)
				}
			}
			if st := g.bridge.Stats(); st.QoS0Dropped != 0 || st.Published != 10 {
				t.Errorf("stats %+v: want 10 QoS 1 frames published, nothing dropped", st)
			}
		})
	}
}
