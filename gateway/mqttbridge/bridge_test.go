package mqttbridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/gateway/spool"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done"
)

// forEachBroker runs test as a parallel subtest per broker kind.
func forEachBroker(t *testing.T, test func(t *testing.T, b *testBroker)) {
	t.Helper()
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			test(t, startBroker(t, kind))
		})
	}
}

// A device's pub reaches a real subscriber on wsgate/<device>/<channel>
// with its data byte for byte, its QoS and its retain flag; QoS 1 pubs are
// acked, and the acked message is at the broker.
func TestUplink(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/up-1/#")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		d := connectDevice(t, g.addr, "up-1")

		for _, tc := range []struct {
			ch, data string
			qos      int
			retain   bool
			seq      uint64
		}{
			{"telemetry", `{"t":21.5,"rh":40}`, 1, false, 1},
			// Spacing, escapes and numbers beyond float64 survive unchanged.
			{"sensors/temp", `{ "t" : 21.50 , "unit":"\u00b0C", "big": 123456789012345678901234567890 }`, 1, false, 2},
			{"raw", `"just a string"`, 1, false, 3},
			{"list", `[1, 2, null, true, {"é":"ü"}]`, 1, false, 4},
			{"fire", `42`, 0, false, 5},
			{"unsequenced", `{"q":0}`, 0, false, 0},
			{"state", `{"on":true}`, 1, true, 6},
		} {
			d.pub(tc.ch, tc.data, tc.seq, tc.qos, tc.retain)
			if tc.qos == 1 {
				if m := d.settle(tc.seq); m.Op != "ack" {
					t.Fatalf("pub %d: %s, want an ack", tc.seq, m.raw)
				}
			}
			m := sub.Next(t, "wsgate/up-1/"+tc.ch, wait)
			if string(m.Payload) != tc.data {
				t.Errorf("%s: payload %q, want %q", tc.ch, m.Payload, tc.data)
			}
			if int(m.QoS) != tc.qos {
				t.Errorf("%s: QoS %d, want %d", tc.ch, m.QoS, tc.qos)
			}
			if m.Retained {
				t.Errorf("%s: a live message arrived with the retain flag", tc.ch)
			}
		}
		// The retained pub is kept by the broker for later subscribers.
		late := brokertest.Subscribe(t, b.ClientURL, "wsgate/up-1/state")
		if m := late.Next(t, "wsgate/up-1/state", wait); !m.Retained || string(m.Payload) != `{"on":true}` {
			t.Errorf("a later subscriber got %q retained=%v, want the retained state", m.Payload, m.Retained)
		}
		// A repeated seq is acked again without a second publish.
		d.pub("telemetry", `{"again":1}`, 1, 1, false)
		if m := d.settle(1); m.Op != "ack" {
			t.Fatalf("repeated seq: %s", m.raw)
		}
		if st := g.bridge.Stats(); st.Published != 5 || st.Spooled != 0 || st.QoS0Dropped != 0 {
			t.Errorf("stats %+v: want 5 published QoS 1 frames, nothing spooled or dropped", st)
		}
	})
}

// A frame with a QoS MQTT does not have (a plugin's, whose frames carry
// any number) is refused as invalid, before it reaches the broker
// connection: written as asked it made the broker drop the connection,
// and once spooled, drop it again at every replay. QoS 2 is MQTT's and
// passes.
func TestFrameQoSBeyondMQTT(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/qos-1/#")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		deliver := func(channel string, qos byte) error {
			acked := make(chan error, 1)
			f := protocols.Frame{Device: "qos-1", Channel: channel, Payload: []byte(`{}`), QoS: qos, Ack: func(err error) { acked <- err }}
			if err := g.bridge.Deliver(f); err != nil {
				return err
			}
			select {
			case err := <-acked:
				return err
			case <-time.After(wait):
				t.Fatalf("QoS %d: no ack", qos)
				return nil
			}
		}
		for _, qos := range []byte{3, 4, 255} {
			if err := deliver("bad", qos); !errors.Is(err, protocols.ErrInvalidFrame) {
				t.Errorf("QoS %d: %v, want ErrInvalidFrame", qos, err)
			}
		}
		for _, qos := range []byte{2, 1} {
			if err := deliver(fmt.Sprintf("q%d", qos), qos); err != nil {
				t.Fatalf("QoS %d: %v", qos, err)
			}
		}
		// In the order published: the refused frames would come first.
		for _, want := range []string{"wsgate/qos-1/q2", "wsgate/qos-1/q1"} {
			select {
			case m := <-sub.Messages:
				if m.Topic != want {
					t.Fatalf("got %s, want %s", m.Topic, want)
				}
			case <-time.After(wait):
				t.Fatalf("nothing on %s", want)
			}
		}
		if st := g.bridge.Stats(); !st.Connected || st.Spooled != 0 || st.Published != 2 {
			t.Errorf("stats %+v: want the connection kept, 2 frames published, none spooled", st)
		}
	})
}

// QoS 0 frames are fire-and-forget: while the broker is unreachable they
// are dropped and counted, never spooled or refused, and the device's
// connection goes on; once the broker is back they flow again, retained
// when asked.
func TestQoS0DuringOutage(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		sub := b.subscribe(t, "wsgate/q0-1/data")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		d := connectDevice(t, g.addr, "q0-1")

		b.down()
		g.waitConnected(t, false)
		for n := 1; n <= 3; n++ {
			d.pub("data", fmt.Sprintf(`{"n":%d}`, n), 0, 0, false)
		}
		d.pub("data", `{"n":"qos1"}`, 1, 1, false) // behind the QoS 0 frames on the connection
		if m := d.settle(1); m.Op != "ack" {
			t.Fatalf("QoS 1 pub during the outage: %s, want an ack (spooled)", m.raw)
		}
		if st := g.bridge.Stats(); st.QoS0Dropped != 3 || st.Spooled != 1 || st.Busy != 0 {
			t.Fatalf("stats %+v: want 3 QoS 0 frames dropped, the QoS 1 frame spooled", st)
		}

		b.up()
		g.waitConnected(t, true)
		if m := sub.Next(t, "wsgate/q0-1/data", wait); string(m.Payload) != `{"n":"qos1"}` {
			t.Fatalf("after the outage got %s first, want the spooled frame", m.Payload)
		}
		d.pub("data", `{"n":4}`, 0, 0, false)
		if m := sub.Next(t, "wsgate/q0-1/data", wait); string(m.Payload) != `{"n":4}` || m.QoS != 0 {
			t.Fatalf("after the outage got %s (QoS %d), want n=4 at QoS 0", m.Payload, m.QoS)
		}
		// The retain flag goes with a QoS 0 frame too.
		d.pub("state", `{"on":false}`, 0, 0, true)
		d.pub("data", `{"n":5}`, 0, 0, false) // behind it on the same connection
		if m := sub.Next(t, "wsgate/q0-1/data", wait); string(m.Payload) != `{"n":5}` {
			t.Fatalf("got %s, want n=5", m.Payload)
		}
		late := b.subscribe(t, "wsgate/q0-1/state")
		if m := late.Next(t, "wsgate/q0-1/state", wait); !m.Retained || string(m.Payload) != `{"on":false}` {
			t.Errorf("a later subscriber got %q retained=%v, want the retained QoS 0 state", m.Payload, m.Retained)
		}
		if st := g.bridge.Stats(); st.QoS0Dropped != 3 {
			t.Errorf("stats %+v: want still 3 QoS 0 frames dropped", st)
		}
	})
}

// A broker that stops reading slows a device down rather than costing its
// QoS 0 frames or the gateway's memory: the broker connection's buffer
// fills, the device's connection stops being read, and once the broker
// runs again (within the write timeout) every frame arrives, in order.
func TestQoS0WhileBrokerStalls(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/stall-1/data")
	g := startGateway(t, gatewayOptions{url: b.URL, keepAlive: time.Minute})
	t.Cleanup(b.mosquitto.Resume) // before the gateway closes, should the test fail while paused
	g.waitConnected(t, true)
	d := connectDevice(t, g.addr, "stall-1")

	// 29 MB in all: more than the sockets on the way and the bridge's
	// buffer hold together.
	const frames = 600
	pad := strings.Repeat("x", 48<<10)
	b.mosquitto.Pause()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for n := range frames {
			d.pub("data", fmt.Sprintf(`{"n":%d,"pad":%q}`, n, pad), 0, 0, false)
		}
	}()
	select {
	case <-sent:
		b.mosquitto.Resume()
		t.Fatal("the device sent everything while the broker read nothing: the gateway buffered it all")
	case <-time.After(time.Second):
	}
	b.mosquitto.Resume()
	select {
	case <-sent:
	case <-time.After(wait):
		t.Fatal("the device is still held back after the broker came back")
	}
	for n := range frames {
		m := sub.Next(t, "wsgate/stall-1/data", wait)
		var got struct{ N int }
		if err := json.Unmarshal(m.Payload, &got); err != nil || got.N != n {
			t.Fatalf("frame %d: got n=%d (%v)", n, got.N, err)
		}
	}
	if st := g.bridge.Stats(); st.QoS0Dropped != 0 {
		t.Errorf("stats %+v: want no QoS 0 frame dropped", st)
	}
}

// Invalid channels never reach the broker: done refuses them, and the
// device gets a nack.
func TestUplinkRefusesReservedChannels(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "embedded")
	sub := brokertest.Subscribe(t, b.ClientURL, "#")
	g := startGateway(t, gatewayOptions{url: b.URL})
	g.waitConnected(t, true)
	d := connectDevice(t, g.addr, "inj-1")
	for i, ch := range []string{"status", "cmd/reboot", "cmd/x/result", "+", "a/#", "$SYS/x", "a//b", "/x", "x/", "a\u0000b"} {
		seq := uint64(i + 1)
		d.pub(ch, `1`, seq, 1, false)
		if m := d.settle(seq); m.Op != "nack" || m.Code != done.CodeBadRequest {
			t.Errorf("channel %q: %s, want nack bad-request", ch, m.raw)
		}
	}
	d.pub("ok", `1`, 100, 1, false)
	d.settle(100)
	// Everything before the accepted pub: only the gateway's own topics.
	deadline := time.After(wait)
	for {
		select {
		case m := <-sub.Messages:
			switch {
			case m.Topic == "wsgate/inj-1/ok":
				return
			case m.Topic != "wsgate/inj-1/status" && m.Topic != "wsgate/$sync/status" && !strings.HasPrefix(m.Topic, "wsgate/$gateway/"):
				t.Errorf("a refused pub reached %q", m.Topic)
			}
		case <-deadline:
			t.Fatal("the accepted pub did not arrive")
		}
	}
}

// The ack waits for the broker: while Mosquitto is frozen (its connection
// still open) the pub is not acked; once it runs again the ack arrives and
// the subscriber has the message.
func TestAckWaitsForTheBroker(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/ack-1/data")
	g := startGateway(t, gatewayOptions{url: b.URL, publishTimeout: time.Minute, keepAlive: time.Minute})
	t.Cleanup(b.mosquitto.Resume) // before the gateway closes, should the test fail while paused
	g.waitConnected(t, true)
	d := connectDevice(t, g.addr, "ack-1")

	b.mosquitto.Pause()
	d.pub("data", `{"n":1}`, 1, 1, false)
	select {
	case m := <-d.in:
		b.mosquitto.Resume()
		t.Fatalf("got %s while the broker could not have acknowledged the pub", m.raw)
	case <-time.After(time.Second):
	}
	b.mosquitto.Resume()
	if m := d.settle(1); m.Op != "ack" {
		t.Fatalf("%s, want the ack", m.raw)
	}
	if m := sub.Next(t, "wsgate/ack-1/data", wait); string(m.Payload) != `{"n":1}` {
		t.Fatalf("subscriber got %q", m.Payload)
	}
	if st := g.bridge.Stats(); st.Published != 1 || st.Spooled != 0 {
		t.Errorf("stats %+v: want the frame published directly", st)
	}
}

type resultJSON struct {
	ID    string          `json:"id"`
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error string          `json:"error"`
}

func parseResult(t *testing.T, m brokertest.Message) resultJSON {
	t.Helper()
	var r resultJSON
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("result on %s is not JSON: %q", m.Topic, m.Payload)
	}
	return r
}

// commandRoundTrip sends a command to device over MQTT, answers it from
// the device and returns the published result.
func commandRoundTrip(t *testing.T, b *testBroker, results *brokertest.Subscriber, d *device, name, args string) resultJSON {
	t.Helper()
	brokertest.Publish(t, b.ClientURL, "wsgate/"+d.id+"/cmd/"+name, []byte(args), false)
	cmd := d.next("cmd")
	if cmd.Name != name {
		t.Fatalf("device got command %q, want %q", cmd.Name, name)
	}
	d.send(map[string]any{"op": "res", "id": cmd.ID, "ok": true})
	r := parseResult(t, results.Next(t, "wsgate/"+d.id+"/cmd/"+name+"/result", wait))
	if r.ID != cmd.ID || !r.OK {
		t.Fatalf("result %+v, want ok for %s", r, cmd.ID)
	}
	return r
}

// A session that takes long to accept a command (busy with its device, or
// its plugin stalled) holds up only its own device's commands: neither the
// MQTT client nor other devices wait for it (their hellos wait for the
// broker's acknowledgements, their commands go straight through), and its
// own commands follow in order once it takes them, up to a bound past which
// they are answered busy.
func TestStuckSessionHoldsUpOnlyItsOwnCommands(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "embedded")
	results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
	g := startGateway(t, gatewayOptions{url: b.URL})
	g.waitConnected(t, true)
	slow := connectDevice(t, g.addr, "slow-1")
	stuck := make(chan struct{})
	release := sync.OnceFunc(func() { close(stuck) })
	defer release()
	g.commands.mu.Lock()
	g.commands.stuck, g.commands.stuckDevice = stuck, slow.id
	g.commands.mu.Unlock()
	brokertest.Publish(t, b.ClientURL, "wsgate/slow-1/cmd/first", []byte(`{}`), false)
	eventually(t, "the command to slow-1 taken", func() bool { return len(g.commands.forDevice(slow.id)) == 1 })
	// One client, so that the broker keeps the order.
	pub := brokertest.NewPublisher(t, b.ClientURL)
	for i := range maxQueuedDeviceCommands + 1 {
		pub.Publish(t, "wsgate/slow-1/cmd/next", fmt.Appendf(nil, `{"n":%d}`, i), false)
	}
	busy := parseResult(t, results.Next(t, "wsgate/slow-1/cmd/next/result", wait))
	if busy.OK || !strings.HasPrefix(busy.Error, "busy") {
		t.Fatalf("result of the command past the bound: %+v, want busy", busy)
	}

	// fast-4 shared slow-1's worker when commands went through four
	// workers by a hash of the device id.
	for _, id := range []string{"fast-4", "fast-1"} {
		d := connectDevice(t, g.addr, id)
		commandRoundTrip(t, b, results, d, "ping", `{}`)
	}
	if n := len(g.commands.forDevice(slow.id)); n != 1 {
		t.Fatalf("%d commands handed to slow-1's stuck session, want 1: its first", n)
	}

	release()
	if cmd := slow.next("cmd"); cmd.Name != "first" {
		t.Fatalf("slow-1 got %q first, want first", cmd.Name)
	}
	for i := range maxQueuedDeviceCommands {
		cmd := slow.next("cmd")
		if want := fmt.Sprintf(`{"n":%d}`, i); cmd.Name != "next" || string(cmd.Args) != want {
			t.Fatalf("slow-1's command %d: %s, want next with %s", i+1, cmd.raw, want)
		}
	}
}

// Commands published to wsgate/<device>/cmd/<name> reach the device; its
// res comes back on .../result.
func TestCommandRoundTrip(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
		results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		d := connectDevice(t, g.addr, "cmd-1")
		// Online is announced once the command subscription is in place.
		nextStatus(t, statuses, "wsgate/cmd-1/status", "online")

		// JSON arguments arrive unchanged; the answer's data is published.
		brokertest.Publish(t, b.ClientURL, "wsgate/cmd-1/cmd/set-interval", []byte(`{"s": 60}`), false)
		cmd := d.next("cmd")
		if cmd.Name != "set-interval" || string(cmd.Args) != `{"s": 60}` || cmd.ID == "" {
			t.Fatalf("device got %s", cmd.raw)
		}
		d.send(map[string]any{"op": "res", "id": cmd.ID, "ok": true, "data": map[string]int{"applied": 60}})
		r := parseResult(t, results.Next(t, "wsgate/cmd-1/cmd/set-interval/result", wait))
		if r.ID != cmd.ID || !r.OK || string(r.Data) != `{"applied":60}` || r.Error != "" {
			t.Fatalf("result %+v, want ok with the data for %s", r, cmd.ID)
		}

		// No payload: no args. A failure answer is published as such.
		brokertest.Publish(t, b.ClientURL, "wsgate/cmd-1/cmd/reboot", nil, false)
		cmd = d.next("cmd")
		if cmd.Name != "reboot" || cmd.Args != nil {
			t.Fatalf("device got %s, want reboot without args", cmd.raw)
		}
		d.send(map[string]any{"op": "res", "id": cmd.ID, "ok": false, "error": "not now"})
		r = parseResult(t, results.Next(t, "wsgate/cmd-1/cmd/reboot/result", wait))
		if r.ID != cmd.ID || r.OK || r.Error != "not now" {
			t.Fatalf("result %+v, want the failure of %s", r, cmd.ID)
		}

		// A payload that is not JSON is answered by the gateway; the device
		// never sees it.
		brokertest.Publish(t, b.ClientURL, "wsgate/cmd-1/cmd/set-interval", []byte("sixty"), false)
		r = parseResult(t, results.Next(t, "wsgate/cmd-1/cmd/set-interval/result", wait))
		if r.OK || !strings.HasPrefix(r.Error, "bad-request") || r.ID == "" {
			t.Fatalf("result of a malformed command: %+v, want ok:false with a bad-request error", r)
		}
		commandRoundTrip(t, b, results, d, "ping", `{}`) // the malformed one was not delivered before it

		// A command to a device that is not here is ignored: the gateway is
		// not even subscribed to it.
		brokertest.Publish(t, b.ClientURL, "wsgate/ghost/cmd/wake", []byte(`{}`), false)
		commandRoundTrip(t, b, results, d, "ping", `{}`)
		if seen := g.commands.forDevice("ghost"); len(seen) != 0 {
			t.Errorf("the bridge handled %d commands for an absent device", len(seen))
		}

		// After the device leaves, its commands no longer reach the gateway
		// (unsubscribed), and nothing answers them.
		before := len(g.commands.forDevice("cmd-1"))
		d.close()
		nextStatus(t, statuses, "wsgate/cmd-1/status", "offline")
		brokertest.Publish(t, b.ClientURL, "wsgate/cmd-1/cmd/late", []byte(`{}`), false)
		d2 := connectDevice(t, g.addr, "cmd-2")
		nextStatus(t, statuses, "wsgate/cmd-2/status", "online")
		commandRoundTrip(t, b, results, d2, "ping", `{}`)
		if after := len(g.commands.forDevice("cmd-1")); after != before {
			t.Errorf("the bridge still received %d commands for a device that left", after-before)
		}
		for len(results.Messages) > 0 {
			if m := <-results.Messages; strings.HasPrefix(m.Topic, "wsgate/ghost/") || strings.HasPrefix(m.Topic, "wsgate/cmd-1/cmd/late") {
				t.Errorf("unexpected result %s %q", m.Topic, m.Payload)
			}
		}
		if st := g.bridge.Stats(); st.CommandsFailed != 1 {
			t.Errorf("stats %+v: want 1 failed command (the malformed one)", st)
		}
	})
}

// With offline_results, commands to absent devices are answered
// {"ok":false,"error":"offline"}; present devices still get theirs.
func TestOfflineResults(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
		results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
		g := startGateway(t, gatewayOptions{url: b.URL, offlineResults: true})
		g.waitConnected(t, true)
		// The wildcard command subscription is in place before online
		// statuses are published (same connect sequence).
		d := connectDevice(t, g.addr, "off-1")
		nextStatus(t, statuses, "wsgate/off-1/status", "online")

		brokertest.Publish(t, b.ClientURL, "wsgate/ghost/cmd/wake", []byte(`{"x":1}`), false)
		r := parseResult(t, results.Next(t, "wsgate/ghost/cmd/wake/result", wait))
		if r.OK || r.Error != "offline" || r.ID == "" {
			t.Fatalf("result %+v, want {ok:false, error:offline}", r)
		}
		commandRoundTrip(t, b, results, d, "ping", `{}`)

		d.close()
		nextStatus(t, statuses, "wsgate/off-1/status", "offline")
		brokertest.Publish(t, b.ClientURL, "wsgate/off-1/cmd/ping", []byte(`{}`), false)
		if r := parseResult(t, results.Next(t, "wsgate/off-1/cmd/ping/result", wait)); r.OK || r.Error != "offline" {
			t.Fatalf("result after the device left: %+v, want offline", r)
		}
	})
}

// Device status is retained JSON: online on hello, offline after the
// close, and what a later subscriber sees. The gateway's own status is
// online while it runs and offline after Close.
func TestStatus(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/#")
		g := startGateway(t, gatewayOptions{url: b.URL, id: "gw-st"})
		gw, _ := nextStatus(t, sub, "wsgate/$gateway/gw-st/status", "online")
		if gw.Gateway != "gw-st" || gw.Version != "test" || gw.Since == "" {
			t.Errorf("gateway status %+v", gw)
		}

		before := time.Now().Add(-2 * time.Second)
		d := connectDevice(t, g.addr, "st-1")
		st, m := nextStatus(t, sub, "wsgate/st-1/status", "online")
		since, _ := time.Parse(time.RFC3339, st.Since)
		if st.Protocol != "done" || st.Gateway != "gw-st" || since.Before(before) || since.After(time.Now().Add(2*time.Second)) {
			t.Errorf("online status %s", m.Payload)
		}
		if m.QoS != 1 {
			t.Errorf("status QoS %d, want 1", m.QoS)
		}
		late := brokertest.Subscribe(t, b.ClientURL, "wsgate/st-1/status")
		if m := late.Next(t, "wsgate/st-1/status", wait); !m.Retained || parseStatus(t, m).State != "online" {
			t.Errorf("a later subscriber got %q retained=%v, want the retained online status", m.Payload, m.Retained)
		}

		d.close()
		st, m = nextStatus(t, sub, "wsgate/st-1/status", "offline")
		if st.Protocol != "done" || st.Gateway != "gw-st" || st.Since == "" {
			t.Errorf("offline status %s", m.Payload)
		}
		late = brokertest.Subscribe(t, b.ClientURL, "wsgate/st-1/status")
		if m := late.Next(t, "wsgate/st-1/status", wait); !m.Retained || parseStatus(t, m).State != "offline" {
			t.Errorf("a later subscriber got %q retained=%v, want the retained offline status", m.Payload, m.Retained)
		}

		// A device still online when the gateway shuts down goes offline,
		// and so does the gateway.
		connectDevice(t, g.addr, "st-2")
		nextStatus(t, sub, "wsgate/st-2/status", "online")
		g.close()
		nextStatus(t, sub, "wsgate/st-2/status", "offline")
		if gw, _ := nextStatus(t, sub, "wsgate/$gateway/gw-st/status", "offline"); gw.Gateway != "gw-st" {
			t.Errorf("gateway status %+v", gw)
		}
	})
}

// A retained "online" of ours for a device we do not have was left by a
// crash: the gateway marks it offline when it connects. Other gateways'
// devices are left alone.
func TestStaleStatusCleanup(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		since := time.Now().UTC().Format(time.RFC3339)
		brokertest.Publish(t, b.ClientURL, "wsgate/ghost-1/status",
			[]byte(`{"state":"online","protocol":"done","gateway":"gw-stale","since":"`+since+`"}`), true)
		brokertest.Publish(t, b.ClientURL, "wsgate/ghost-2/status",
			[]byte(`{"state":"online","protocol":"done","gateway":"gw-other","since":"`+since+`"}`), true)
		sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")

		g := startGateway(t, gatewayOptions{url: b.URL, id: "gw-stale"})
		st, _ := nextStatus(t, sub, "wsgate/ghost-1/status", "offline")
		if st.Gateway != "gw-stale" || st.Protocol != "done" {
			t.Errorf("cleaned status %+v", st)
		}
		// A device that is really here is not touched.
		connectDevice(t, g.addr, "real-1")
		nextStatus(t, sub, "wsgate/real-1/status", "online")

		late := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
		got := map[string]string{}
		deadline := time.After(wait)
		for len(got) < 3 {
			select {
			case m := <-late.Messages:
				got[m.Topic] = parseStatus(t, m).State + "@" + parseStatus(t, m).Gateway
			case <-deadline:
				t.Fatalf("retained statuses: %v", got)
			}
		}
		want := map[string]string{
			"wsgate/ghost-1/status": "offline@gw-stale",
			"wsgate/ghost-2/status": "online@gw-other",
			"wsgate/real-1/status":  "online@gw-stale",
		}
		for topic, w := range want {
			if got[topic] != w {
				t.Errorf("%s: %s, want %s", topic, got[topic], w)
			}
		}
	})
}

// With the broker down and a spool of 4 frames, "reject" acks what fits
// and nacks the rest busy; "drop-oldest" acks everything and drops (and
// counts) the oldest. Every frame still spooled reaches the subscriber
// when the broker returns.
func TestSpoolFullPolicy(t *testing.T) {
	t.Parallel()
	for _, policy := range []spool.Policy{spool.Reject, spool.DropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			forEachBroker(t, func(t *testing.T, b *testBroker) {
				sub := b.subscribe(t, "wsgate/pol-1/data")
				g := startGateway(t, gatewayOptions{url: b.URL, limits: spool.Limits{MaxRecords: 4}, policy: policy})
				g.waitConnected(t, true)
				d := connectDevice(t, g.addr, "pol-1")
				d.pub("data", `{"n":0}`, 100, 1, false)
				d.settle(100)
				sub.Next(t, "wsgate/pol-1/data", wait)

				b.down()
				g.waitConnected(t, false)
				var acked []int
				for n := 1; n <= 10; n++ {
					d.pub("data", fmt.Sprintf(`{"n":%d}`, n), uint64(100+n), 1, false)
					m := d.settle(uint64(100 + n))
					switch {
					case m.Op == "ack":
						acked = append(acked, n)
					case m.Code != done.CodeBusy:
						t.Fatalf("pub %d: %s, want ack or nack busy", n, m.raw)
					}
				}
				st := g.bridge.Stats()
				var wantDelivered []int
				switch policy {
				case spool.Reject:
					if fmt.Sprint(acked) != "[1 2 3 4]" || st.SpoolRejected != 6 || st.Spooled != 4 || st.SpoolDropped != 0 {
						t.Fatalf("acked %v, stats %+v: want 1-4 acked and spooled, 6 rejected", acked, st)
					}
					wantDelivered = []int{1, 2, 3, 4}
				case spool.DropOldest:
					if len(acked) != 10 || st.SpoolDropped != 6 || st.Spooled != 10 || st.SpoolRejected != 0 {
						t.Fatalf("acked %v, stats %+v: want all acked, 10 spooled, 6 dropped", acked, st)
					}
					wantDelivered = []int{7, 8, 9, 10}
				}
				if st.SpoolRecords != 4 || st.Connected {
					t.Fatalf("stats %+v: want 4 frames held while disconnected", st)
				}

				b.up()
				for _, n := range wantDelivered {
					m := sub.Next(t, "wsgate/pol-1/data", wait)
					if got := string(m.Payload); got != fmt.Sprintf(`{"n":%d}`, n) {
						t.Fatalf("after the outage got %s, want n=%d (in order)", got, n)
					}
				}
				// Drained, and switched back: the replay empties the
				// spool a moment before it ends spooling.
				eventually(t, "the spool to drain", func() bool {
					st := g.bridge.Stats()
					return st.SpoolRecords == 0 && st.Replayed == 4 && !st.Spooling
				})
				// Back to direct publishing, and nothing else was delivered.
				d.pub("data", `{"n":99}`, 199, 1, false)
				if m := d.settle(199); m.Op != "ack" {
					t.Fatalf("after the outage: %s", m.raw)
				}
				if m := sub.Next(t, "wsgate/pol-1/data", wait); string(m.Payload) != `{"n":99}` {
					t.Fatalf("got %s, want n=99", m.Payload)
				}
				if st := g.bridge.Stats(); st.Published != 2 {
					t.Errorf("stats %+v: want 2 frames published directly", st)
				}
			})
		})
	}
}

// With the broker down and the spool full (reject), a device flooding pubs
// gets nack busy for everything that does not fit; the bridge's queues and
// the number of goroutines stay bounded. Not parallel: it counts the
// process's goroutines.
func TestFloodWhileBrokerDownStaysBounded(t *testing.T) {
	for _, kind := range brokerKinds {
		t.Run(kind, func(t *testing.T) { testFlood(t, startBroker(t, kind)) })
	}
}

func testFlood(t *testing.T, b *testBroker) {
	{
		doneCfg := done.DefaultConfig()
		doneCfg.MaxInflight = 1 << 20 // let the bridge, not the session, push back
		g := startGateway(t, gatewayOptions{url: b.URL, limits: spool.Limits{MaxRecords: 8}, queue: 16, maxInflight: 8, done: &doneCfg})
		g.waitConnected(t, true)
		b.down()
		g.waitConnected(t, false)
		d := connectDevice(t, g.addr, "flood-1")

		const n = 20000
		baseline := runtime.NumGoroutine()
		var maxGoroutines, maxIn, maxPipeline atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				storeMax(&maxGoroutines, runtime.NumGoroutine())
				storeMax(&maxIn, len(g.bridge.in))
				storeMax(&maxPipeline, len(g.bridge.pipeline))
			}
		}()
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= n; seq++ {
				d.pub("flood", `{"x":1}`, seq, 1, false)
			}
		}()
		acks, nacks := 0, 0
		codes := map[string]int{}
		for acks+nacks < n {
			m := d.next("ack", "nack")
			if m.Op == "ack" {
				acks++
			} else {
				nacks++
				codes[m.Code]++
			}
		}
		close(stop)
		wg.Wait()
		st := g.bridge.Stats()
		t.Logf("%d pubs: %d acked, %d nacked %v; stats: busy %d, spool rejected %d; max goroutines %d (baseline %d), max queue %d/%d, max pipeline %d/%d",
			n, acks, nacks, codes, st.Busy, st.SpoolRejected, maxGoroutines.Load(), baseline, maxIn.Load(), cap(g.bridge.in), maxPipeline.Load(), cap(g.bridge.pipeline))
		if acks != 8 || codes[done.CodeBusy] != n-8 {
			t.Errorf("want 8 acked (the spool) and %d nacked busy", n-8)
		}
		if st.Busy+st.SpoolRejected != n-8 || st.SpoolRecords != 8 {
			t.Errorf("stats %+v: busy+rejected should count every nack", st)
		}
		if maxIn.Load() > int64(cap(g.bridge.in)) || cap(g.bridge.in) != 16 || cap(g.bridge.pipeline) != 8 {
			t.Errorf("queues beyond their bounds")
		}
		// A few come and go (reconnect attempts, the connection's writer);
		// a goroutine per frame would be thousands.
		if extra := maxGoroutines.Load() - int64(baseline); extra > 25 {
			t.Errorf("goroutines grew by %d during the flood", extra)
		}
	}
}

func storeMax(m *atomic.Int64, v int) {
	for {
		cur := m.Load()
		if int64(v) <= cur || m.CompareAndSwap(cur, int64(v)) {
			return
		}
	}
}

// A broker that stops answering (frozen, connection open) costs each
// in-flight frame at most the publish timeout counted from its publish,
// not one timeout after another: 100 frames in flight with a 1 s timeout
// are all spooled and acked well within the test's wait. Once the broker
// runs again everything is delivered.
func TestStalledBrokerSpoolsWithinPublishTimeout(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/stall-1/data")
	g := startGateway(t, gatewayOptions{url: b.URL, publishTimeout: time.Second, keepAlive: 5 * time.Minute})
	t.Cleanup(b.mosquitto.Resume)
	g.waitConnected(t, true)
	d := connectDevice(t, g.addr, "stall-1")

	b.mosquitto.Pause()
	const n = 100
	for seq := uint64(1); seq <= n; seq++ {
		d.pub("data", fmt.Sprintf(`{"n":%d}`, seq), seq, 1, false)
	}
	deadline := time.Now().Add(wait) // one PublishTimeout per frame would be 100 s
	for range n {
		if m := d.nextBefore(deadline, "ack", "nack"); m.Op != "ack" {
			b.mosquitto.Resume()
			t.Fatalf("%s, want every frame acked from the spool", m.raw)
		}
	}
	st := g.bridge.Stats()
	b.mosquitto.Resume()
	if st.Spooled != n || st.Published != 0 {
		t.Errorf("stats %+v: want all %d frames spooled after their timeout", st, n)
	}
	// One more frame wakes the replay (see the report on replays that
	// time out without a reconnect).
	d.pub("data", `{"n":0}`, n+1, 1, false)
	d.settle(n + 1)
	seen := map[string]bool{}
	for len(seen) < n+1 {
		seen[string(sub.Next(t, "wsgate/stall-1/data", wait).Payload)] = true
	}
	eventually(t, "the spool to drain", func() bool { return g.bridge.Stats().SpoolRecords == 0 })
}

// After Bridge.Close (and the gateway, broker and clients around it) no
// goroutine is left: nothing is ignored, paho's and mochi's included.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	for _, kind := range brokerKinds {
		ignore := goleak.IgnoreCurrent()
		t.Run(kind, func(t *testing.T) {
			b := startBroker(t, kind)
			results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
			statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
			// Two QoS 0 lanes: their reconnect loops must end too.
			g := startGateway(t, gatewayOptions{url: b.URL, qos0Conns: 3})
			g.waitConnected(t, true)
			d := connectDevice(t, g.addr, "leak-1")
			nextStatus(t, statuses, "wsgate/leak-1/status", "online")
			d.pub("fire", `0`, 0, 0, false)
			d.pub("data", `1`, 1, 1, false)
			d.settle(1)
			commandRoundTrip(t, b, results, d, "ping", `{}`)
			b.down()
			g.waitConnected(t, false)
			d.pub("data", `2`, 2, 1, false)
			d.settle(2)
			b.up()
			eventually(t, "the spool to drain", func() bool { return g.bridge.Stats().SpoolRecords == 0 })
			d.close()
			// The broker goes down for good before the bridge closes: Close
			// must not wait for it, nor leave its reconnect loop behind.
			b.down()
			g.close()
		})
		if !t.Failed() {
			goleak.VerifyNone(t, ignore)
		}
	}
}

// subscribedAtBroker reports whether the bridge holds device's command
// subscription on its current connection.
func (g *testGateway) subscribedAtBroker(device string) bool {
	g.bridge.presence.mu.Lock()
	defer g.bridge.presence.mu.Unlock()
	e := g.bridge.presence.devices[device]
	return e != nil && e.subscribed && !e.dirty
}

// Command subscriptions and statuses are renewed on every connection: a
// device attached before an outage, and one that connected during it, both
// get their commands once the broker is back.
func TestCommandsAfterBrokerOutage(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		results := b.subscribe(t, "wsgate/+/cmd/+/result")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		before := connectDevice(t, g.addr, "out-1")
		eventually(t, "out-1 subscribed", func() bool { return g.subscribedAtBroker("out-1") })

		b.down()
		g.waitConnected(t, false)
		during := connectDevice(t, g.addr, "out-2")
		b.up()
		g.waitConnected(t, true)
		eventually(t, "subscriptions renewed", func() bool {
			return g.subscribedAtBroker("out-1") && g.subscribedAtBroker("out-2")
		})
		commandRoundTrip(t, b, results, before, "ping", `{}`)
		commandRoundTrip(t, b, results, during, "ping", `{}`)

		late := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
		got := map[string]string{}
		deadline := time.After(wait)
		for len(got) < 2 {
			select {
			case m := <-late.Messages:
				got[m.Topic] = parseStatus(t, m).State
			case <-deadline:
				t.Fatalf("retained statuses %v", got)
			}
		}
		if got["wsgate/out-1/status"] != "online" || got["wsgate/out-2/status"] != "online" {
			t.Errorf("statuses after the outage: %v", got)
		}
	})
}

// The same device connecting twice to one gateway: the newer session wins,
// the older is closed, the status never goes offline, and commands reach
// the newer session.
func TestSameDeviceTwiceOnOneGateway(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/twice-1/status")
		results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		old := connectDevice(t, g.addr, "twice-1")
		nextStatus(t, statuses, "wsgate/twice-1/status", "online")
		newer := connectDevice(t, g.addr, "twice-1")
		select {
		case _, open := <-old.in:
			for open {
				_, open = <-old.in
			}
		case <-time.After(wait):
			t.Fatal("the older session was not closed")
		}
		commandRoundTrip(t, b, results, newer, "ping", `{}`)
		for len(statuses.Messages) > 0 {
			if m := <-statuses.Messages; parseStatus(t, m).State != "online" {
				t.Errorf("status %s while the device stayed connected", m.Payload)
			}
		}
	})
}

// Gateways on one broker: a device that reconnects through another
// gateway is online there, its old session is closed, its status never
// shows offline, and its commands are delivered once, by the new gateway.
// With three, the device also comes back to a gateway that let it go: its
// new claim must outrank the claims the others made meanwhile.
//
// Mosquitto only: a fleet shares an external broker, while the embedded
// one lives inside a single gateway. (Two bridges on one embedded broker
// also trip a data race inside mochi v2.7.9: a wildcard SUBSCRIBE reads
// the retained index while another client's retained PUBLISH writes it.)
func TestDeviceMovesToAnotherGateway(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		route []int // the gateways the device connects through, in order
		fleet int
	}{
		{"a to b", []int{0, 1}, 2},
		{"a to b to c and back to a", []int{0, 1, 2, 0}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testRoaming(t, startBroker(t, "mosquitto"), tc.route, tc.fleet)
		})
	}
}

func testRoaming(t *testing.T, b *testBroker, route []int, fleet int) {
	statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/roam-1/status")
	results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
	gws := make([]*testGateway, fleet)
	for i := range gws {
		gws[i] = startGateway(t, gatewayOptions{url: b.URL, id: fmt.Sprintf("gw-%c", 'a'+i)})
	}
	for _, g := range gws {
		g.waitSynced(t)
	}
	var prev *device
	for hop, at := range route {
		g := gws[at]
		d := connectDevice(t, g.addr, "roam-1")
		if prev == nil {
			if st, _ := nextStatus(t, statuses, "wsgate/roam-1/status", "online"); st.Gateway != g.id {
				t.Fatalf("online at %s, want %s", st.Gateway, g.id)
			}
		} else {
			// A later session, as after a reconnect through the load
			// balancer: usually within the same second.
			select {
			case _, open := <-prev.in:
				for open {
					_, open = <-prev.in
				}
			case <-time.After(wait):
				t.Fatalf("hop %d: %s did not close the older session", hop, gws[route[hop-1]].id)
			}
			left := gws[route[hop-1]]
			eventually(t, left.id+" to let the device go", func() bool {
				_, attached := left.router.Attached("roam-1")
				return !attached && !left.subscribedAtBroker("roam-1")
			})
		}
		before := make([]int, fleet)
		for i, other := range gws {
			before[i] = len(other.commands.forDevice("roam-1"))
		}
		commandRoundTrip(t, b, results, d, "ping", fmt.Sprintf(`{"hop":%d}`, hop))
		for i, other := range gws {
			if n := len(other.commands.forDevice("roam-1")) - before[i]; i != at && n != 0 {
				t.Errorf("hop %d: %s handled %d commands while the device was at %s", hop, other.id, n, g.id)
			}
		}
		prev = d
	}
	for len(statuses.Messages) > 0 {
		if m := <-statuses.Messages; parseStatus(t, m).State != "online" {
			t.Errorf("status %s while the device was connected", m.Payload)
		}
	}
	last := gws[route[len(route)-1]]
	late := brokertest.Subscribe(t, b.ClientURL, "wsgate/roam-1/status")
	if st, _ := nextStatus(t, late, "wsgate/roam-1/status", "online"); st.Gateway != last.id {
		t.Errorf("retained status at %s, want %s", st.Gateway, last.id)
	}
}

// Close never waits for, nor leaves behind, a connection attempt to a
// broker that does not answer: unreachable (nothing listens), or hung in
// the middle of the MQTT handshake (Mosquitto frozen after the TCP accept).
// Frames accepted meanwhile are spooled and acked, and survive in the
// spool for the next start.
func TestCloseWithoutBroker(t *testing.T) {
	for _, tc := range []string{"unreachable", "hung"} {
		t.Run(tc, func(t *testing.T) {
			url := fmt.Sprintf("tcp://127.0.0.1:%d", brokertest.FreePort(t))
			if tc == "hung" {
				b := startBroker(t, "mosquitto")
				b.mosquitto.Pause()
				t.Cleanup(b.mosquitto.Resume)
				url = b.URL
			}
			ignore := goleak.IgnoreCurrent() // the broker's own helpers
			dir := t.TempDir()
			g := startGateway(t, gatewayOptions{url: url, spoolDir: dir, connectTimeout: time.Second})
			d := connectDevice(t, g.addr, "nb-1")
			for seq := uint64(1); seq <= 3; seq++ {
				d.pub("data", `1`, seq, 1, false)
				if m := d.settle(seq); m.Op != "ack" {
					t.Fatalf("%s, want acked from the spool", m.raw)
				}
			}
			d.close()
			g.close()
			goleak.VerifyNone(t, ignore) // the broker still does not answer
			sp, err := spool.Open(dir+"/spool.db", spool.Limits{}, spool.Reject)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if sp.Len() != 3 {
				t.Errorf("spool holds %d frames after Close, want 3", sp.Len())
			}
		})
	}
}

// gatewayCommands answers "echo" with its arguments and fails anything else.
type gatewayCommands struct{}

func (gatewayCommands) GatewayCommand(name string, args json.RawMessage) (any, error) {
	if name != "echo" {
		return nil, errors.New("unknown command " + name)
	}
	return args, nil
}

// nextWithin returns the next message on the subscription, if one comes in
// time.
func nextWithin(s *brokertest.Subscriber, d time.Duration) (brokertest.Message, bool) {
	select {
	case m := <-s.Messages:
		return m, true
	case <-time.After(d):
		return brokertest.Message{}, false
	}
}

func TestGatewayCommands(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		results := brokertest.Subscribe(t, b.ClientURL, "wsgate/$gateway/+/cmd/+/result")
		g := startGateway(t, gatewayOptions{id: "gw-cmds", url: b.URL, gatewayCmds: gatewayCommands{}})
		g.waitConnected(t, true)
		// The bridge subscribes just after connecting: publish until the
		// first command is answered.
		eventually(t, "an answer to the first gateway command", func() bool {
			brokertest.Publish(t, b.ClientURL, "wsgate/$gateway/gw-cmds/cmd/echo", []byte(`0`), false)
			_, ok := nextWithin(results, 200*time.Millisecond)
			return ok
		})
		for len(results.Messages) > 0 {
			<-results.Messages
		}
		for _, tc := range []struct {
			name, payload string
			ok            bool
			data, err     string
		}{
			{"echo", `{"ski":"ab"}`, true, `{"ski":"ab"}`, ""},
			{"echo", `not json`, false, "", "bad-request: the payload must be JSON"},
			{"reboot", `{}`, false, "", "unknown command reboot"},
		} {
			brokertest.Publish(t, b.ClientURL, "wsgate/$gateway/gw-cmds/cmd/"+tc.name, []byte(tc.payload), false)
			r := parseResult(t, results.Next(t, "wsgate/$gateway/gw-cmds/cmd/"+tc.name+"/result", wait))
			if r.OK != tc.ok || string(r.Data) != tc.data || r.Error != tc.err || r.ID == "" {
				t.Errorf("%s %s: result %+v, want ok=%v data=%s error=%q", tc.name, tc.payload, r, tc.ok, tc.data, tc.err)
			}
		}
		// Another gateway's command topic is not ours.
		brokertest.Publish(t, b.ClientURL, "wsgate/$gateway/other/cmd/echo", []byte(`1`), false)
		if m, ok := nextWithin(results, 300*time.Millisecond); ok {
			t.Fatalf("answered another gateway's command: %s %s", m.Topic, m.Payload)
		}
	})
}

// TestOnlineBeforeFirstFrame: a device's online status reaches MQTT before
// anything it publishes, at QoS 0 and 1, however fast it publishes after
// its hello, and its command subscription is in place by then.
func TestOnlineBeforeFirstFrame(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		sub := brokertest.Subscribe(t, b.ClientURL, "wsgate/#")
		g := startGateway(t, gatewayOptions{url: b.URL})
		g.waitConnected(t, true)
		const devices = 40
		// All at once, each with its reading right behind its hello, not
		// waiting for the welcome, as hasty devices after a power cut do.
		conns := make([]*websocket.Conn, devices)
		for i := range devices {
			dialer := websocket.Dialer{Subprotocols: []string{done.Name}, HandshakeTimeout: wait}
			ws, _, err := dialer.Dial("ws://"+g.addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			conns[i] = ws
		}
		var wg sync.WaitGroup
		for i, ws := range conns {
			wg.Go(func() {
				hello := fmt.Sprintf(`{"op":"hello","id":"fresh-%d"}`, i)
				pub := fmt.Sprintf(`{"op":"pub","ch":"t","data":1,"qos":%d,"seq":1}`, i%2)
				for _, m := range []string{hello, pub} {
					if err := ws.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		seen := map[string]bool{} // devices whose online status arrived
		readings := 0
		deadline := time.Now().Add(wait)
		for readings < devices {
			select {
			case m := <-sub.Messages:
				parts := strings.Split(m.Topic, "/")
				if len(parts) != 3 || !strings.HasPrefix(parts[1], "fresh-") {
					continue
				}
				switch parts[2] {
				case "status":
					seen[parts[1]] = strings.Contains(string(m.Payload), `"online"`)
				case "t":
					readings++
					if !seen[parts[1]] {
						t.Errorf("%s's reading came before its online status", parts[1])
					}
				}
			case <-time.After(time.Until(deadline)):
				t.Fatalf("%d of %d readings arrived", readings, devices)
			}
		}
	})
}

// With mqtt.qos0_connections, QoS 0 frames are spread over that many
// broker connections and still arrive in order per device; the extra
// connections come back after the broker restarts.
func TestQoS0Lanes(t *testing.T) {
	t.Parallel()
	forEachBroker(t, func(t *testing.T, b *testBroker) {
		g := startGateway(t, gatewayOptions{url: b.URL, qos0Conns: 3})
		g.waitConnected(t, true)
		lanes := func(want int) {
			t.Helper()
			eventually(t, fmt.Sprintf("%d QoS 0 lanes connected", want), func() bool { return g.bridge.Stats().QoS0Lanes == want })
		}
		lanes(2)
		const devices, frames = 12, 200
		run := func(round int) {
			t.Helper()
			sub := b.subscribe(t, "wsgate/+/seq")
			defer sub.Close()
			ds := make([]*device, devices)
			for i := range ds {
				ds[i] = connectDevice(t, g.addr, fmt.Sprintf("lane-%d-%d", round, i))
			}
			for n := range frames {
				for _, d := range ds {
					d.pub("seq", fmt.Sprintf(`{"n":%d}`, n), 0, 0, false)
				}
			}
			next := make(map[string]int)
			for range devices * frames {
				var m brokertest.Message
				select {
				case m = <-sub.Messages:
				case <-time.After(wait):
					t.Fatalf("%d devices' frames in order so far, then nothing for %s", len(next), wait)
				}
				var got struct{ N int }
				if err := json.Unmarshal(m.Payload, &got); err != nil {
					t.Fatalf("%s: %q: %v", m.Topic, m.Payload, err)
				}
				if got.N != next[m.Topic] {
					t.Fatalf("%s: frame %d arrived where %d was due", m.Topic, got.N, next[m.Topic])
				}
				next[m.Topic]++
			}
			if len(next) != devices {
				t.Fatalf("frames of %d devices arrived, want %d", len(next), devices)
			}
			for _, d := range ds {
				d.close()
			}
		}
		run(1)
		b.down()
		g.waitConnected(t, false)
		lanes(0)
		b.up()
		g.waitConnected(t, true)
		lanes(2)
		run(2)
		if st := g.bridge.Stats(); st.QoS0Dropped != 0 {
			t.Errorf("stats %+v: want no QoS 0 frame dropped", st)
		}
	})
}
