package ship_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// These tests run two wsgate nodes against each other over a real TLS
// WebSocket: A is the SHIP server (its gateway's SHIP listener), B the
// SHIP client (its gateway's Dial, with the protocol and TLS configuration
// of ForPeer).

// exchangeData sends a spine command to from's router for to's device and
// checks that it arrives at to's router as the same plain JSON, published
// by to's session of from's device, and that from's router gets the
// command's result.
func exchangeData(t *testing.T, from, to *node, id string) {
	t.Helper()
	payload := []byte(`{"datagram":{"header":{"specificationVersion":"1.3.0","msgCounter":` + id + `,"cmdClassifier":"read"},"payload":{"cmd":[{"nodeManagementDetailedDiscoveryData":{}}]}}}`)
	cmd := protocols.Command{Device: to.id.SHIPID, ID: "cmd-" + id, Name: "spine", Args: payload}
	if err := from.rt.Command(cmd); err != nil {
		t.Fatalf("%s: spine command: %v", from.name, err)
	}
	got := to.frames.wait(t, to.name+" receiving datagram "+id, func(f protocols.Frame) bool {
		return f.Device == from.id.SHIPID && f.Channel == "spine" && bytes.Contains(f.Payload, []byte(`"msgCounter":`+id+`,`))
	})
	if !bytes.Equal(got.Payload, payload) {
		t.Errorf("%s's router got\n %s\nwant\n %s", to.name, got.Payload, payload)
	}
	res := from.frames.wait(t, from.name+" receiving the result of cmd-"+id, func(f protocols.Frame) bool {
		return f.Device == to.id.SHIPID && f.Channel == protocols.ResultChannel("spine") && bytes.Contains(f.Payload, []byte(`"cmd-`+id+`"`))
	})
	if want := `{"id":"cmd-` + id + `","ok":true}`; string(res.Payload) != want {
		t.Errorf("result %s, want %s", res.Payload, want)
	}
}

// TestShipPairDataBothWaysAndClose: B dials A, both reach data exchange
// and attach each other under the peer's SHIP ID; datagrams go both ways
// as spine commands and arrive as plain JSON on channel spine; the user
// removing B at A makes A announce the close, B confirm and A close with
// 4001 "close".
func TestShipPairDataBothWaysAndClose(t *testing.T) {
	t.Parallel()
	a := startNode(t, "A", nodeOptions{shipID: "wsgate-A", autoAccept: true, machine: quick})
	// B lingers long after its confirm, so that A's close on the confirm
	// is what ends the connection.
	b := startNode(t, "B", nodeOptions{shipID: "wsgate-B", machine: machine.Config{CloseWait: testWait}})
	a.runPeers(t)
	d := b.dial(t, a.url, a.id.SKI, "wsgate-A")
	a.waitAttached(t, "wsgate-B")
	b.waitAttached(t, "wsgate-A")
	if !a.p.Connected(b.id.SKI) || !b.p.Connected(a.id.SKI) {
		t.Fatal("not connected after attaching")
	}
	if e, _ := a.store.Get(b.id.SKI); e.State != trust.Trusted || !e.AutoAccepted || e.SHIPID != "wsgate-B" {
		t.Errorf("A's entry of B %+v", e)
	}

	exchangeData(t, a, b, "1")
	exchangeData(t, b, a, "2")
	exchangeData(t, a, b, "3")

	if err := a.store.Remove(b.id.SKI); err != nil {
		t.Fatal(err)
	}
	a.waitLog(t, "closing SHIP connection", map[string]string{"code": "4001", "reason": "close"})
	b.waitLog(t, "SHIP connection ended", map[string]string{"err": "close 4001: close"})
	if err := d.wait(t); err != nil {
		t.Errorf("Dial: %v", err)
	}
	a.waitDetached(t, "wsgate-B")
	b.waitDetached(t, "wsgate-A")
	a.waitEnded(t, b.id.SKI)
	for _, n := range []*node{a, b} {
		if s := n.p.Stats(); s.Complete != 1 || s.DatagramsOut < 1 || s.DatagramsIn < 1 || s.Connected != 0 || s.Dropped != 0 {
			t.Errorf("%s: stats %+v", n.name, s)
		}
	}
}

// TestShipPairPendingProlongationApprove: A does not know B and waits in
// hello pending; B, which says waiting 1 s, would give up after that, but
// A asks for prolongation before it runs out and B grants it, again and
// again. The user approves A's pending entry when B's first waiting is
// long over, and the handshake goes on to data exchange. The sleep only
// places the approval past B's first waiting; the test asserts the
// outcome, not a duration.
func TestShipPairPendingProlongationApprove(t *testing.T) {
	t.Parallel()
	const (
		bWaits = time.Second            // B's HelloInit: its waiting
		gap    = 600 * time.Millisecond // A asks bWaits-gap = 400 ms after B's hello
	)
	a := startNode(t, "A", nodeOptions{shipID: "wsgate-A", machine: machine.Config{
		HelloProlongThrInc: bWaits, HelloProlongWaitingGap: gap, CloseWait: quick.CloseWait,
	}})
	b := startNode(t, "B", nodeOptions{shipID: "wsgate-B", machine: machine.Config{HelloInit: bWaits}})
	b.dial(t, a.url, a.id.SKI, "")
	a.waitPending(t, b.id.SKI)
	time.Sleep(bWaits + bWaits/2)
	if e, _ := a.store.Get(b.id.SKI); e.State != trust.Pending {
		t.Fatalf("A's entry of B %+v, want still pending", e)
	}
	if _, ok := b.logs.find(func(r logRecord) bool { return r.msg == "closing SHIP connection" }); ok {
		t.Fatal("B gave up waiting: no prolongation")
	}
	if err := a.store.Approve(b.id.SKI); err != nil {
		t.Fatal(err)
	}
	a.waitAttached(t, "wsgate-B")
	b.waitAttached(t, "wsgate-A")
	exchangeData(t, b, a, "1")
	exchangeData(t, a, b, "2")
}
