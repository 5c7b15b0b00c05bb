//go:build !noship

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols/ship/eebus"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// shipWait bounds every wait of the SHIP tests for something that should
// happen soon; the tests assert outcomes, not timing.
const shipWait = 10 * time.Second

// shipLeakCheck checks for leaked goroutines once everything the test
// registered after it has been cleaned up: the gateway, the MQTT
// subscriber, the SHIP peer.
func shipLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections() // the ship commands' admin API calls
		goleak.VerifyNone(t, opt)
	})
}

// shipCert runs `wsgate ship cert` and returns the SKI it prints.
func shipCert(t *testing.T, config string) (ski, output string) {
	t.Helper()
	var out bytes.Buffer
	if status := run(context.Background(), []string{"ship", "cert", "-config", config}, &out, &out); status != 0 {
		t.Fatalf("ship cert: status %d\n%s", status, out.String())
	}
	m := regexp.MustCompile(`(?m)^SKI:\s+([0-9a-f]{40})$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("ship cert printed no SKI:\n%s", out.String())
	}
	return m[1], out.String()
}

// shipTrace is the first trace of ship.md section 10: the client's data
// message as on the wire, and its SPINE datagram in plain JSON, compact.
func shipTrace(t *testing.T) (data, plain []byte) {
	t.Helper()
	dir := filepath.Join("..", "..", "protocols", "ship", "eebus", "testdata")
	for _, l := range shiptest.ReadTrace(t, filepath.Join(dir, "trace-autoaccept.txt")) {
		if l.Sender == "client" && eebus.MessageType(l.Msg[0]) == eebus.TypeData {
			data = l.Msg
		}
	}
	if data == nil {
		t.Fatal("trace: no data message of the client")
	}
	return data, shiptest.ReadPlainDatagram(t, filepath.Join(dir, "data-plain.json"))
}

// shipSetup is a test config with SHIP enabled, and where SHIP listens
// and keeps its files.
type shipSetup struct {
	testSetup
	shipURL, shipDir string
}

// testConfigShip is testConfig with SHIP enabled before done, and more
// keys for its [protocols.ship] table. SHIP runs on a free port, keeps its
// files in the test's directory and stays off mDNS.
func testConfigShip(t *testing.T, shipKeys, extra string) shipSetup {
	t.Helper()
	port := brokertest.FreePort(t)
	dir := t.TempDir()
	ts := shipSetup{testSetup: writeTestConfig(t, fmt.Sprintf(`[protocols]
order = ["ship", "done"]

[protocols.ship]
address = "127.0.0.1:%d"
dir = %q
announce = false
browse = false
%s
`, port, filepath.Join(dir, "ship"), shipKeys), extra)}
	ts.shipURL = fmt.Sprintf("wss://127.0.0.1:%d/ship/", port)
	ts.shipDir = filepath.Join(dir, "ship")
	return ts
}

// shipAdminToken is the admin API's token in the SHIP tests' gateways.
const shipAdminToken = "ship-test-admin-token"

// shipGateway is the gateway the SHIP tests run in process with the
// embedded broker: its setup, the SKI of its SHIP identity and an MQTT
// subscriber to wsgate/#.
type shipGateway struct {
	shipSetup
	ski string
	sub *brokertest.Subscriber
}

// startShipGateway checks the test for leaked goroutines, then runs the
// gateway with shipKeys in its [protocols.ship] table until the test ends.
func startShipGateway(t *testing.T, shipKeys string) shipGateway {
	t.Helper()
	shipLeakCheck(t)
	ts := testConfigShip(t, shipKeys, "")
	withAdminToken(t, ts.path, shipAdminToken) // the ship commands send it
	startInProcess(t, ts.path, ts.wsURL)
	ski, _ := shipCert(t, ts.path)
	return shipGateway{shipSetup: ts, ski: ski, sub: brokertest.Subscribe(t, ts.mqttURL, "wsgate/#")}
}

// shipPeer is a scripted SHIP client: a WebSocket over TLS with its own
// SHIP identity.
type shipPeer struct {
	t  *testing.T
	id *identity.Identity
	ws *websocket.Conn
}

// dialShipPeer connects a scripted SHIP client to url, which must present
// the gateway's key.
func dialShipPeer(t *testing.T, url, gatewaySKI, shipID string) *shipPeer {
	t.Helper()
	id, err := identity.LoadOrCreate(t.TempDir(), identity.Subject{CommonName: "peer", SHIPID: shipID})
	if err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{
		TLSClientConfig:  identity.ClientTLSConfig(id, identity.TLSOptions{ExpectedPeerSKI: gatewaySKI}),
		Subprotocols:     []string{"ship"},
		HandshakeTimeout: shipWait,
	}
	ws, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "ship" {
		t.Fatalf("subprotocol %q", got)
	}
	t.Cleanup(func() { ws.Close() })
	return &shipPeer{t: t, id: id, ws: ws}
}

func (p *shipPeer) send(msgs ...[]byte) {
	p.t.Helper()
	for _, m := range msgs {
		_ = p.ws.SetWriteDeadline(time.Now().Add(shipWait))
		if err := p.ws.WriteMessage(websocket.BinaryMessage, m); err != nil {
			p.t.Fatal(err)
		}
	}
}

func (p *shipPeer) next() []byte {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(shipWait))
	mt, msg, err := p.ws.ReadMessage()
	if err != nil || mt != websocket.BinaryMessage {
		p.t.Fatalf("read: type %d %q %v", mt, msg, err)
	}
	return msg
}

// expect reads the next message: the CMI for "cmi", else a message whose
// JSON root is name and that contains each of parts.
func (p *shipPeer) expect(name string, parts ...string) []byte {
	p.t.Helper()
	msg := p.next()
	if name == "cmi" {
		if !bytes.Equal(msg, shiptest.CMI) {
			p.t.Fatalf("got %q, want the CMI", msg)
		}
		return msg
	}
	_, body, err := eebus.Decode(msg)
	if err != nil {
		p.t.Fatalf("%q: %v", msg, err)
	}
	if root, err := eebus.Peek(body); err != nil || root != name {
		p.t.Fatalf("got %q, want %s", msg, name)
	}
	for _, part := range parts {
		if !bytes.Contains(body, []byte(part)) {
			p.t.Fatalf("got %q, want it to contain %s", msg, part)
		}
	}
	return msg
}

// expectClose reads until the gateway's close frame.
func (p *shipPeer) expectClose(code int, reason string) {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(shipWait))
	for {
		_, msg, err := p.ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != code || ce.Text != reason {
				p.t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, code, reason)
			}
			return
		}
		if err != nil {
			p.t.Fatalf("read until close: %v", err)
		}
		p.t.Logf("before the close: %q", msg)
	}
}

// hello sends the CMI and a ready hello and expects the gateway's CMI and
// its hello of phase.
func (p *shipPeer) hello(phase string) {
	p.t.Helper()
	p.send(shiptest.CMI, shiptest.HelloReady)
	p.expect("cmi")
	p.expect("connectionHello", strconv.Quote(phase))
}

// afterHello plays the rest of the handshake once both hellos said ready.
func (p *shipPeer) afterHello(shipID string) {
	p.t.Helper()
	p.send(shiptest.AnnounceMax, shiptest.Select, shiptest.PINNone, shiptest.AccessMethodsRequest,
		shiptest.AccessMethods(shipID))
	p.expect("messageProtocolHandshake", `"select"`)
	p.expect("connectionPinState", `"none"`)
	p.expect("accessMethodsRequest")
	p.expect("accessMethods")
}

// closeShip announces the close, as the trace's client does, and waits for
// the gateway's confirm and close.
func (p *shipPeer) closeShip() {
	p.t.Helper()
	p.send(shiptest.Announce(500*time.Millisecond, "removedConnection"))
	p.expect("connectionClose", `"confirm"`)
	p.expectClose(4001, "close")
}

// waitShipStatus waits for the device's status message with state.
func waitShipStatus(t *testing.T, sub *brokertest.Subscriber, device, state string) {
	t.Helper()
	m := sub.Next(t, "wsgate/"+device+"/status", shipWait)
	var st struct {
		State    string `json:"state"`
		Protocol string `json:"protocol"`
	}
	if err := json.Unmarshal(m.Payload, &st); err != nil || st.State != state || st.Protocol != "ship" {
		t.Fatalf("status %s, want state %s of protocol ship", m.Payload, state)
	}
}

// TestShipCertPrintsSKIOfCertOnDisk: `wsgate ship cert` makes the
// identity on first use and prints the SKI of the certificate it keeps,
// the same every time.
func TestShipCertPrintsSKIOfCertOnDisk(t *testing.T) {
	t.Parallel()
	ts := testConfigShip(t, `ship_id = "wsgate-test-1"`, "")
	ski, out := shipCert(t, ts.path)
	certPath := filepath.Join(ts.shipDir, identity.CertFile)
	doc, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatalf("ship cert made no certificate: %v", err)
	}
	block, _ := pem.Decode(doc)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s is not a PEM certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want, err := identity.SKIFromPublicKey(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if ski != want {
		t.Errorf("ship cert printed SKI %s; the certificate's key has %s", ski, want)
	}
	for _, line := range []string{"SHIP ID: wsgate-test-1", "cert:    " + certPath} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if again, _ := shipCert(t, ts.path); again != ski {
		t.Errorf("second ship cert printed %s, first %s", again, ski)
	}
}

// TestShipEndToEndMQTT runs the gateway with the embedded broker and
// auto_accept on: a scripted SHIP client pairs, its data message reaches
// an MQTT subscriber as plain JSON on wsgate/{shipid}/spine, a datagram
// published on wsgate/{shipid}/cmd/spine reaches it as the data message
// with the EEBus JSON of the trace, and the device's status goes online
// and offline.
func TestShipEndToEndMQTT(t *testing.T) {
	g := startShipGateway(t, "auto_accept = true\n[protocols.ship.timers]\nclose = \"100ms\"\n")
	data, plain := shipTrace(t)

	p := dialShipPeer(t, g.shipURL, g.ski, "peer-1")
	p.hello("ready")
	p.afterHello("peer-1")
	waitShipStatus(t, g.sub, "peer-1", "online")

	p.send(data)
	if m := g.sub.Next(t, "wsgate/peer-1/spine", shipWait); !bytes.Equal(m.Payload, plain) {
		t.Errorf("wsgate/peer-1/spine:\n %s\nwant\n %s", m.Payload, plain)
	}

	brokertest.Publish(t, g.mqttURL, "wsgate/peer-1/cmd/spine", plain, false)
	if got := p.next(); !bytes.Equal(got, data) {
		t.Errorf("the peer got\n %q\nwant\n %q", got, data)
	}
	m := g.sub.Next(t, "wsgate/peer-1/cmd/spine/result", shipWait)
	var r struct {
		ID string `json:"id"`
		OK bool   `json:"ok"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil || !r.OK || r.ID == "" {
		t.Errorf("result %s", m.Payload)
	}

	p.closeShip()
	waitShipStatus(t, g.sub, "peer-1", "offline")
}

// TestShipApproveCommandCompletesPendingHandshake: with auto_accept off an
// unknown SHIP client waits in hello pending and `wsgate ship peers` lists
// it; `wsgate ship approve` (through the admin API) makes the gateway say
// ready, and the handshake goes on to data exchange.
func TestShipApproveCommandCompletesPendingHandshake(t *testing.T) {
	g := startShipGateway(t, "[protocols.ship.timers]\nclose = \"100ms\"\n")

	p := dialShipPeer(t, g.shipURL, g.ski, "peer-2")
	p.hello("pending")

	var out bytes.Buffer
	if status := run(context.Background(), []string{"ship", "peers", "-config", g.path}, &out, &out); status != 0 ||
		!regexp.MustCompile(p.id.SKI+`\s+pending\s`).MatchString(out.String()) {
		t.Fatalf("ship peers: status %d, want the peer pending:\n%s", status, out.String())
	}
	out.Reset()
	// Flags after the SKI, as people type them; without -config the
	// token comes from the environment.
	t.Setenv("WSGATE_ADMIN_TOKEN", shipAdminToken)
	if status := run(context.Background(), []string{"ship", "approve", p.id.SKI, "-admin", g.adminAddr}, &out, &out); status != 0 ||
		strings.TrimSpace(out.String()) != p.id.SKI+": approved" {
		t.Fatalf("ship approve: status %d\n%s", status, out.String())
	}

	p.expect("connectionHello", `"ready"`)
	p.afterHello("peer-2")
	waitShipStatus(t, g.sub, "peer-2", "online")
	out.Reset()
	if status := run(context.Background(), []string{"ship", "peers", "-config", g.path}, &out, &out); status != 0 ||
		!regexp.MustCompile(p.id.SKI+`\s+trusted\s+peer-2\s`).MatchString(out.String()) {
		t.Errorf("ship peers: status %d, want the peer trusted with its SHIP ID:\n%s", status, out.String())
	}
	p.closeShip()
	waitShipStatus(t, g.sub, "peer-2", "offline")
}

// TestMDNSShipBesideListeners: SHIP announces _ship._tcp on the gateway's
// one mDNS responder, beside the listeners' _wsgate._tcp; the :8080-style
// listener does not offer SHIP, which runs over TLS only.
func TestMDNSShipBesideListeners(t *testing.T) {
	lo := loopbackMulticast(t)
	ship, wsgate := browseLoopback(t, lo, "_ship._tcp"), browseLoopback(t, lo, "_wsgate._tcp")
	instance := "wsgate ship " + rand.Text()[:8]
	port := brokertest.FreePort(t)
	dir := t.TempDir()
	ts := writeTestConfig(t, fmt.Sprintf(`[protocols]
order = ["ship", "done"]

[protocols.ship]
address = "127.0.0.1:%d"
dir = %q
browse = false
`, port, filepath.Join(dir, "ship")), fmt.Sprintf("[mdns]\ninstance = %q\ninterfaces = [%q]\n", instance, lo))
	ski, _ := shipCert(t, ts.path)
	stop := startInProcess(t, ts.path, ts.wsURL)

	svc := nextEvent(t, wsgate, instance, mdns.Added)
	if txt := mdns.TXTMap(svc.TXT); txt["protocols"] != "done" || txt["tls"] != "no" {
		t.Errorf("the ws:// listener announces %q, want protocols=done (not ship) and tls=no", svc.TXT)
	}
	shipID := "wsgate-" + ski[:16]
	found := nextEvent(t, ship, shipID, mdns.Added)
	if txt := mdns.TXTMap(found.TXT); txt["ski"] != ski || txt["path"] != "/ship/" || found.Port != port {
		t.Errorf("SHIP announced %+v, want SKI %s, path /ship/, port %d", found, ski, port)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	nextEvent(t, ship, shipID, mdns.Removed)
}
