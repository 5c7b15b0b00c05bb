package ocpp16

// The plugin as wsgate runs it: both binaries built from this checkout,
// wsgate with its embedded broker, and a charge point written here that
// speaks OCPP-J over a real WebSocket while an MQTT client watches.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// e2eWait bounds what should happen soon; generous for a loaded machine.
// Tests assert outcomes, never timing.
const e2eWait = 30 * time.Second

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wsgate and the plugin")
	}
	gw := startGateway(t)
	sub := brokertest.Subscribe(t, gw.mqttURL, "wsgate/CP1/#")
	cp := dialChargePoint(t, gw.wsURL+"CP1")

	// A charging session: each CALL answered, and published as it was sent
	// (StartTransaction with the id it got).
	boot := `{"chargePointVendor":"ACME","chargePointModel":"W1"}`
	var bootConf struct {
		Status      string `json:"status"`
		CurrentTime string `json:"currentTime"`
		Interval    int    `json:"interval"`
	}
	cp.call("BootNotification", boot, &bootConf)
	if bootConf.Status != "Accepted" || bootConf.Interval <= 0 || bootConf.CurrentTime == "" {
		t.Errorf("BootNotification answered %+v", bootConf)
	}
	expectPublished(t, sub, "wsgate/CP1/BootNotification", boot)

	authorize := `{"idTag":"TAG-0001"}`
	var authorizeConf struct{ IDTagInfo struct{ Status string } }
	cp.call("Authorize", authorize, &authorizeConf)
	if authorizeConf.IDTagInfo.Status != "Accepted" {
		t.Errorf("Authorize answered %+v", authorizeConf)
	}
	expectPublished(t, sub, "wsgate/CP1/Authorize", authorize)

	start := `{"connectorId":1,"idTag":"TAG-0001","meterStart":1000,"timestamp":"2026-03-01T12:00:00Z"}`
	var startConf struct {
		IDTagInfo     struct{ Status string }
		TransactionID int
	}
	cp.call("StartTransaction", start, &startConf)
	tx := startConf.TransactionID
	if tx <= 0 || startConf.IDTagInfo.Status != "Accepted" {
		t.Fatalf("StartTransaction answered %+v", startConf)
	}
	expectPublished(t, sub, "wsgate/CP1/StartTransaction", fmt.Sprintf(`%s,"transactionId":%d}`, strings.TrimSuffix(start, "}"), tx))

	meter := fmt.Sprintf(`{"connectorId":1,"transactionId":%d,"meterValue":[{"timestamp":"2026-03-01T12:15:00Z","sampledValue":[{"value":"2500","measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}`, tx)
	cp.call("MeterValues", meter, nil)
	expectPublished(t, sub, "wsgate/CP1/MeterValues", meter)

	stop := fmt.Sprintf(`{"idTag":"TAG-0001","meterStop":4000,"timestamp":"2026-03-01T12:30:00Z","transactionId":%d,"reason":"Local"}`, tx)
	var stopConf struct{ IDTagInfo struct{ Status string } }
	cp.call("StopTransaction", stop, &stopConf)
	if stopConf.IDTagInfo.Status != "Accepted" {
		t.Errorf("StopTransaction answered %+v", stopConf)
	}
	expectPublished(t, sub, "wsgate/CP1/StopTransaction", stop)

	// Commands from MQTT reach the charge point as CALLs, and its answers
	// MQTT as results.
	remoteStart := `{"connectorId":1,"idTag":"TAG-0002"}`
	brokertest.Publish(t, gw.mqttURL, "wsgate/CP1/cmd/RemoteStartTransaction", []byte(remoteStart), false)
	id := cp.expectCall("RemoteStartTransaction", remoteStart)
	cp.send(`[3,"` + id + `",{"status":"Accepted"}]`)
	expectPublished(t, sub, "wsgate/CP1/cmd/RemoteStartTransaction/result", `{"id":"`+id+`","ok":true,"data":{"status":"Accepted"}}`)

	brokertest.Publish(t, gw.mqttURL, "wsgate/CP1/cmd/Reset", []byte(`{"type":"Hard"}`), false)
	id = cp.expectCall("Reset", `{"type":"Hard"}`)
	cp.send(`[4,"` + id + `","NotSupported","Reset not supported",{}]`)
	expectPublished(t, sub, "wsgate/CP1/cmd/Reset/result",
		`{"id":"`+id+`","ok":false,"data":{"errorCode":"NotSupported","errorDescription":"Reset not supported","errorDetails":{}},"error":"NotSupported: Reset not supported"}`)

	// Two quick commands: the second CALL waits for the answer to the
	// first. A third command, refused by the plugin, marks the point by
	// which the plugin has handled the second: a CALL it sent for it then
	// would be on the wire before the answer to a Heartbeat sent after.
	availability := `{"connectorId":0,"type":"Inoperative"}`
	trigger := `{"requestedMessage":"StatusNotification","connectorId":1}`
	brokertest.Publish(t, gw.mqttURL, "wsgate/CP1/cmd/ChangeAvailability", []byte(availability), false)
	brokertest.Publish(t, gw.mqttURL, "wsgate/CP1/cmd/TriggerMessage", []byte(trigger), false)
	brokertest.Publish(t, gw.mqttURL, "wsgate/CP1/cmd/Reset", []byte(`{"type":"Warm"}`), false)
	refused := sub.Next(t, "wsgate/CP1/cmd/Reset/result", e2eWait)
	if !bytes.Contains(refused.Payload, []byte(`"ok":false`)) || !bytes.Contains(refused.Payload, []byte("Warm")) {
		t.Fatalf("a Reset to Warm: result %s, want a refusal that names the value", refused.Payload)
	}
	first := cp.expectCall("ChangeAvailability", availability)
	cp.send(`[2,"hb","Heartbeat",{}]`)
	if elems := cp.read(); string(elems[0]) != "3" || string(elems[1]) != `"hb"` {
		t.Fatalf("received %s while the first command was unanswered, want the Heartbeat's CALLRESULT", elems)
	}
	cp.send(`[3,"` + first + `",{"status":"Scheduled"}]`)
	second := cp.expectCall("TriggerMessage", trigger)
	cp.send(`[3,"` + second + `",{"status":"Accepted"}]`)
	expectPublished(t, sub, "wsgate/CP1/cmd/ChangeAvailability/result", `{"id":"`+first+`","ok":true,"data":{"status":"Scheduled"}}`)
	expectPublished(t, sub, "wsgate/CP1/cmd/TriggerMessage/result", `{"id":"`+second+`","ok":true,"data":{"status":"Accepted"}}`)
	status := `{"connectorId":1,"errorCode":"NoError","status":"Unavailable"}`
	cp.call("StatusNotification", status, nil)
	expectPublished(t, sub, "wsgate/CP1/StatusNotification", status)
}

// expectPublished waits for the next message on topic and checks its
// payload.
func expectPublished(t *testing.T, sub *brokertest.Subscriber, topic, payload string) {
	t.Helper()
	if m := sub.Next(t, topic, e2eWait); string(m.Payload) != payload {
		t.Errorf("%s: %s, want %s", topic, m.Payload, payload)
	}
}

// chargePointConn is the charge point side of OCPP-J, by hand.
type chargePointConn struct {
	t  *testing.T
	ws *websocket.Conn
	n  int
}

func dialChargePoint(t *testing.T, url string) *chargePointConn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"ocpp1.6"}, HandshakeTimeout: 5 * time.Second}
	deadline := time.Now().Add(e2eWait)
	for {
		// The listener may be up before the plugin is.
		ws, resp, err := d.Dial(url, nil)
		if err == nil {
			resp.Body.Close()
			if ws.Subprotocol() != "ocpp1.6" {
				t.Fatalf("negotiated %q", ws.Subprotocol())
			}
			t.Cleanup(func() { ws.Close() })
			return &chargePointConn{t: t, ws: ws}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (cp *chargePointConn) send(msg string) {
	cp.t.Helper()
	if err := cp.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		cp.t.Fatalf("send %s: %v", msg, err)
	}
}

func (cp *chargePointConn) read() []json.RawMessage {
	cp.t.Helper()
	_ = cp.ws.SetReadDeadline(time.Now().Add(e2eWait))
	_, msg, err := cp.ws.ReadMessage()
	if err != nil {
		cp.t.Fatalf("read: %v", err)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(msg, &elems); err != nil || len(elems) < 3 {
		cp.t.Fatalf("received %s, not OCPP-J", msg)
	}
	return elems
}

// call sends a CALL and decodes the CALLRESULT that must come next into
// conf (unless nil).
func (cp *chargePointConn) call(action, payload string, conf any) {
	cp.t.Helper()
	cp.n++
	id := fmt.Sprintf("cp-%d", cp.n)
	cp.send(fmt.Sprintf(`[2,%q,%q,%s]`, id, action, payload))
	elems := cp.read()
	if string(elems[0]) != "3" || string(elems[1]) != `"`+id+`"` {
		cp.t.Fatalf("%s %s answered [%s, %s, %s], want its CALLRESULT", action, id, elems[0], elems[1], elems[2])
	}
	if conf != nil {
		if err := json.Unmarshal(elems[2], conf); err != nil {
			cp.t.Fatalf("%s answered %s: %v", action, elems[2], err)
		}
	}
}

// expectCall reads the next message, which must be a CALL of action with
// payload, and returns its id.
func (cp *chargePointConn) expectCall(action, payload string) string {
	cp.t.Helper()
	elems := cp.read()
	var id string
	if len(elems) != 4 || string(elems[0]) != "2" || json.Unmarshal(elems[1], &id) != nil ||
		string(elems[2]) != `"`+action+`"` || string(elems[3]) != payload {
		cp.t.Fatalf("received %s, want a CALL %s %s", elems, action, payload)
	}
	return id
}

// gateway is a running wsgate with the plugin.
type gateway struct {
	wsURL   string // ws://127.0.0.1:port/ocpp/
	mqttURL string
}

var (
	buildOnce sync.Once
	binaries  struct {
		wsgate, plugin string
		err            error
	}
	binDir string // holds the binaries; TestMain removes it
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// build builds wsgate and the plugin from this checkout, once per test
// binary, into a directory TestMain removes.
func build(t *testing.T) (wsgate, plugin string) {
	t.Helper()
	buildOnce.Do(func() {
		b := &binaries
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			b.err = fmt.Errorf("go env GOMOD: %v", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(gomod)))
		dir, err := os.MkdirTemp("", "wsgate-ocpp16-e2e-")
		if err != nil {
			b.err = err
			return
		}
		binDir = dir
		b.wsgate, b.plugin = filepath.Join(dir, "wsgate"), filepath.Join(dir, "wsgate-ocpp16")
		for out, pkg := range map[string]string{b.wsgate: "./cmd/wsgate", b.plugin: "./plugins/examples/ocpp16/cmd/wsgate-ocpp16"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = root
			if msg, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.wsgate, binaries.plugin
}

// startGateway runs wsgate with the plugin on free loopback ports and waits
// until its listener accepts connections. It is killed when the test ends;
// its log is shown if the test failed.
func startGateway(t *testing.T) gateway {
	t.Helper()
	wsgate, plugin := build(t)
	sum, err := fileSHA256(plugin)
	if err != nil {
		t.Fatal(err)
	}
	ports := brokertest.FreePorts(t, 2)
	wsPort, mqttPort := ports[0], ports[1]
	config := fmt.Sprintf(`[gateway]
id = "e2e"
shutdown_grace = "1s"

[log]
level = "debug"

[websocket]
message_rate = 0

[[listeners]]
address = "127.0.0.1:%d"
path = "/ocpp/"

[protocols]
order = ["ocpp1.6"]

[mqtt.embedded]
address = "127.0.0.1:%d"

[spool]
dir = %q

[admin]
address = ""

[[plugins]]
path = %q
sha256 = %q
protocols = ["ocpp1.6"]
`, wsPort, mqttPort, t.TempDir(), plugin, sum)
	path := filepath.Join(t.TempDir(), "wsgate.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}

	var log bytes.Buffer
	var logMu sync.Mutex
	cmd := exec.Command(wsgate, "run", "-config", path)
	cmd.Stdout = lockedWriter{&logMu, &log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			logMu.Lock()
			defer logMu.Unlock()
			t.Logf("wsgate log:\n%s", log.String())
		}
	})

	deadline := time.Now().Add(e2eWait)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", wsPort), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("wsgate exited at start")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("wsgate does not listen on %d", wsPort)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return gateway{
		wsURL:   fmt.Sprintf("ws://127.0.0.1:%d/ocpp/", wsPort),
		mqttURL: fmt.Sprintf("tcp://127.0.0.1:%d", mqttPort),
	}
}

func fileSHA256(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
