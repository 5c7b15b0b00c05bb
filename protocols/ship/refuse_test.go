package ship_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// TestShipRefusalIsLoggedAtInfo: a peer the local trust policy refuses
// gets an aborted hello and close 4452, and the log says so at info, with
// the peer's SKI and address: the close code alone does not tell a
// refusal from a peer that gave up.
func TestShipRefusalIsLoggedAtInfo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// rejectFirst: the user rejects the SKI before it connects.
		rejectFirst bool
		// hello is what the scripted client answers wsgate's pending hello
		// with; nil for the rejected SKI, which gets no pending hello.
		hello []byte
		// rejectPending: the user rejects the SKI while it waits.
		rejectPending bool
		why           string
	}{
		{name: "rejected SKI", rejectFirst: true, why: "rejected"},
		{name: "rejected while pending", hello: shiptest.HelloReady, rejectPending: true, why: "rejected"},
		// Section 6.2: a waiting below T_hello_prolong_min (1 s) leaves no
		// time for the user to approve.
		{name: "unknown SKI that cannot wait", hello: shiptest.Hello("ready", 500*time.Millisecond), why: "not approved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "A", nodeOptions{machine: quick}) // auto-accept off
			peer := newIdentity(t, "scripted")
			if tt.rejectFirst {
				if err := a.store.Reject(peer.SKI); err != nil {
					t.Fatal(err)
				}
			}
			w := dialWire(t, peer, a)
			w.send(shiptest.CMI)
			w.expect(shiptest.CMI)
			if tt.hello != nil {
				w.expect(shiptest.Hello("pending", machine.DefaultHelloInit))
				w.send(tt.hello)
			}
			if tt.rejectPending {
				a.waitPending(t, peer.SKI)
				if err := a.store.Reject(peer.SKI); err != nil {
					t.Fatal(err)
				}
			}
			w.expectClose([][]byte{shiptest.Aborted}, machine.CodeNodeRejected, machine.ReasonNodeRejected)
			r := a.waitLog(t, "SHIP peer refused by the trust policy", map[string]string{
				"ski": peer.SKI, "remote": w.ws.LocalAddr().String(), "why": tt.why,
			})
			if r.level != slog.LevelInfo {
				t.Errorf("logged at %s, want INFO: %s", r.level, r)
			}
		})
	}
}
