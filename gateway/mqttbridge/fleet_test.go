package mqttbridge

// Several gateways on one broker: which session of a device wins, statuses
// that stay right, and commands that follow the device. Mosquitto only: a
// fleet shares an external broker (see TestDeviceMovesToAnotherGateway).

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/protocols"
)

// waitClaim waits for the status announcing d's session online.
func waitClaim(t *testing.T, sub *brokertest.Subscriber, d *device) statusJSON {
	t.Helper()
	topic := "wsgate/" + d.id + "/status"
	deadline := time.Now().Add(wait)
	for {
		st := parseStatus(t, sub.Next(t, topic, time.Until(deadline)))
		if st.State == "online" && st.Session == d.session {
			return st
		}
	}
}

// retainedStatus is what a new subscriber gets for the device's status.
func retainedStatus(t *testing.T, b *testBroker, device string) statusJSON {
	t.Helper()
	late := brokertest.Subscribe(t, b.ClientURL, "wsgate/"+device+"/status")
	return parseStatus(t, late.Next(t, "wsgate/"+device+"/status", wait))
}

// A gateway whose clock is ten minutes behind takes a device over from
// one whose clock is right, and back, and again: the newest session wins
// every time, the one it replaced is closed with 4000, the stamps grow,
// and only the newest session gets commands. Its statuses say an earlier
// time than those it supersedes: an order by timestamps would have kept
// the older session.
//
// On a three-node NATS cluster each gateway is attached to its own node.
func TestClockSkewedGatewayTakesOver(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"mosquitto", "nats"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			testClockSkewedGatewayTakesOver(t, startBroker(t, kind))
		})
	}
}

func testClockSkewedGatewayTakesOver(t *testing.T, b *testBroker) {
	statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/skew-1/status")
	results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
	behind := func() time.Time { return time.Now().Add(-10 * time.Minute) }
	urlA, fallbackA := b.node(1)
	urlB, fallbackB := b.node(2)
	ga := startGateway(t, gatewayOptions{url: urlA, fallbacks: fallbackA, id: "gw-a", clock: behind})
	gb := startGateway(t, gatewayOptions{url: urlB, fallbacks: fallbackB, id: "gw-b"})
	ga.waitSynced(t)
	gb.waitSynced(t)

	var last statusJSON
	var old *device
	for i, g := range []*testGateway{gb, ga, gb, ga} {
		d := connectDevice(t, g.addr, "skew-1")
		st := waitClaim(t, statuses, d)
		if st.Gateway != g.id || st.Stamp <= last.Stamp {
			t.Fatalf("move %d to %s: status %+v after %+v", i, g.id, st, last)
		}
		if g == ga && i > 0 && st.Since >= last.Since {
			t.Fatalf("the skewed clock dates the takeover %s, after %s: the test does not skew", st.Since, last.Since)
		}
		if old != nil {
			if code := old.waitClosed(); code != protocols.CloseReplaced {
				t.Errorf("move %d: the replaced session closed with %d, want %d", i, code, protocols.CloseReplaced)
			}
		}
		commandRoundTrip(t, b, results, d, "ping", `{}`)
		old, last = d, st
	}
	if st := retainedStatus(t, b, "skew-1"); st.State != "online" || st.Gateway != "gw-a" || st.Stamp != last.Stamp {
		t.Errorf("retained status %+v, want online at gw-a with stamp %d", st, last.Stamp)
	}
	if n := ga.bridge.Stats().Takeovers + gb.bridge.Stats().Takeovers; n != 3 {
		t.Errorf("%d takeovers counted, want 3", n)
	}
}

// A stale status published over the device's claim (an older session's
// offline that reached the broker late) is answered at once with the claim
// again: the retained status ends up right.
func TestStaleStatusIsRepaired(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/rep-1/status")
	g := startGateway(t, gatewayOptions{url: b.URL, id: "gw-a"})
	g.waitConnected(t, true)
	d := connectDevice(t, g.addr, "rep-1")
	claim := waitClaim(t, statuses, d)

	stale, _ := json.Marshal(statusJSON{State: "offline", Gateway: "gw-old", Session: "s-old", Stamp: claim.Stamp - 1,
		Since: time.Now().UTC().Format(time.RFC3339)})
	brokertest.Publish(t, b.ClientURL, "wsgate/rep-1/status", stale, true)
	if st := waitClaim(t, statuses, d); st.Stamp != claim.Stamp || st.Gateway != "gw-a" {
		t.Errorf("repaired status %+v, want the claim %+v", st, claim)
	}
	if st := retainedStatus(t, b, "rep-1"); st.State != "online" || st.Stamp != claim.Stamp {
		t.Errorf("retained status %+v", st)
	}
}

// A gateway restarted with no memory learns the device's stamp from the
// broker before it claims: its claim supersedes the retained one.
func TestRestartedGatewayClaimsAboveTheRetainedStamp(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	old, _ := json.Marshal(statusJSON{State: "offline", Gateway: "gw-b", Session: "s-b", Stamp: 41,
		Since: time.Now().UTC().Format(time.RFC3339)})
	brokertest.Publish(t, b.ClientURL, "wsgate/learn-1/status", old, true)
	statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/learn-1/status")
	g := startGateway(t, gatewayOptions{url: b.URL, id: "gw-a"})
	d := connectDevice(t, g.addr, "learn-1") // may come before the bridge is connected
	if st := waitClaim(t, statuses, d); st.Stamp != 42 {
		t.Errorf("claim %+v, want stamp 42", st)
	}
}

// A gateway that dies leaves its devices online at the broker; when its
// Last Will arrives, the fleet's leader (the lowest live gateway id)
// marks them offline, once, keeping their stamp; devices of live gateways
// are left alone.
func TestDevicesOfADeadGatewayGoOffline(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	now := time.Now().UTC().Format(time.RFC3339)
	publish := func(topic string, v any) {
		payload, _ := json.Marshal(v)
		brokertest.Publish(t, b.ClientURL, topic, payload, true)
	}
	publish("wsgate/$gateway/gw-dead/status", gatewayStatus{State: "online", Gateway: "gw-dead"})
	publish("wsgate/$gateway/gw-live/status", gatewayStatus{State: "online", Gateway: "gw-live"})
	publish("wsgate/orphan-1/status", statusJSON{State: "online", Protocol: "done", Gateway: "gw-dead", Session: "s1", Stamp: 7, Since: now})
	publish("wsgate/kept-1/status", statusJSON{State: "online", Protocol: "done", Gateway: "gw-live", Session: "s2", Stamp: 3, Since: now})
	statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
	for len(statuses.Messages) < 2 { // the retained ones
		time.Sleep(10 * time.Millisecond)
	}
	for len(statuses.Messages) > 0 {
		<-statuses.Messages
	}
	leader := startGateway(t, gatewayOptions{url: b.URL, id: "gw-a"})
	other := startGateway(t, gatewayOptions{url: b.URL, id: "gw-b"})
	leader.waitSynced(t)
	other.waitSynced(t)

	publish("wsgate/$gateway/gw-dead/status", gatewayStatus{State: "offline", Gateway: "gw-dead"}) // its Last Will
	st, m := nextStatus(t, statuses, "wsgate/orphan-1/status", "offline")
	if st.Gateway != "gw-dead" || st.Stamp != 7 || st.Session != "s1" || st.Protocol != "done" {
		t.Errorf("offline status %s", m.Payload)
	}
	// The gateways' sync markers share the filter; they are not statuses.
	for m, ok := nextWithin(statuses, 500*time.Millisecond); ok; m, ok = nextWithin(statuses, 500*time.Millisecond) {
		if m.Topic != "wsgate/$sync/status" {
			t.Errorf("another status after the cleanup: %s %s", m.Topic, m.Payload)
			break
		}
	}
	if st := retainedStatus(t, b, "kept-1"); st.State != "online" || st.Gateway != "gw-live" {
		t.Errorf("a live gateway's device: %+v", st)
	}
}

// With a share group, each command reaches one gateway of the fleet, which
// forwards it to the gateway holding the device: every command is
// delivered once, and so is its result; a command sent again with the same
// id is not delivered again.
func TestSharedCommandsAreForwarded(t *testing.T) {
	t.Parallel()
	b := startBroker(t, "mosquitto")
	statuses := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/status")
	results := brokertest.Subscribe(t, b.ClientURL, "wsgate/+/cmd/+/result")
	ga := startGateway(t, gatewayOptions{url: b.URL, id: "gw-a", shareGroup: "fleet"})
	gb := startGateway(t, gatewayOptions{url: b.URL, id: "gw-b", shareGroup: "fleet"})
	ga.waitConnected(t, true)
	gb.waitConnected(t, true)
	d := connectDevice(t, gb.addr, "shared-1")
	waitClaim(t, statuses, d)

	const n = 40
	pub := brokertest.NewPublisher(t, b.ClientURL)
	for i := range n {
		pub.Publish(t, fmt.Sprintf("wsgate/shared-1/cmd/set/c%d", i), fmt.Appendf(nil, `{"n":%d}`, i), false)
	}
	pub.Publish(t, "wsgate/shared-1/cmd/set/c0", []byte(`{"n":0}`), false) // again
	seen := map[string]int{}
	for range n {
		cmd := d.next("cmd")
		seen[cmd.ID]++
		d.send(map[string]any{"op": "res", "id": cmd.ID, "ok": true})
	}
	for i := range n {
		if id := fmt.Sprintf("c%d", i); seen[id] != 1 {
			t.Errorf("command %s delivered %d times", id, seen[id])
		}
	}
	got := map[string]int{}
	for range n {
		got[parseResult(t, results.Next(t, "wsgate/shared-1/cmd/set/result", wait)).ID]++
	}
	if m, ok := receive(d.in, 500*time.Millisecond); ok {
		t.Errorf("the device got more: %s", m.raw)
	}
	if m, ok := receive(results.Messages, 200*time.Millisecond); ok {
		t.Errorf("another result: %s", m.Payload)
	}
	for id, k := range got {
		if k != 1 {
			t.Errorf("result of %s published %d times", id, k)
		}
	}
	sa, sb := ga.bridge.Stats(), gb.bridge.Stats()
	if sa.Forwarded == 0 || sb.Forwarded != 0 {
		t.Errorf("forwarded by gw-a %d, by gw-b %d: the broker did not share the commands", sa.Forwarded, sb.Forwarded)
	}
	if sa.Duplicates+sb.Duplicates != 1 {
		t.Errorf("%d duplicates counted, want 1", sa.Duplicates+sb.Duplicates)
	}
}

// receive returns what comes on ch within d.
func receive[T any](ch <-chan T, d time.Duration) (T, bool) {
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(d):
		var zero T
		return zero, false
	}
}
