package ship_test

import (
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/protocols/ship"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// unpairings are the two ways a user unpairs a peer.
var unpairings = []struct {
	name   string
	unpair func(*trust.Store, string) error
}{
	{"remove", (*trust.Store).Remove},
	{"reject", (*trust.Store).Reject},
}

// TestShipUnpairDialledPeer: when the user removes or rejects a peer that
// wsgate dials, wsgate announces the close with reason removedConnection
// (section 6.7), every time. The same change of the trust store stops the
// peer's dial loop, whose going away would announce a plain close; which
// of the two reaches the session first is up to the scheduler, so each
// way of unpairing runs many rounds.
func TestShipUnpairDialledPeer(t *testing.T) {
	t.Parallel()
	const rounds = 50
	for _, tt := range unpairings {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startScriptedServer(t, "SRV-Model-1")
			// A close wait far longer than the test: the scripted peer's
			// confirm is what ends each connection.
			b := startNode(t, "B", nodeOptions{shipID: "CLI-Model-2", machine: machine.Config{CloseWait: testWait}})
			b.runPeers(t, ship.Target{SKI: srv.id.SKI, SHIPID: "SRV-Model-1", URL: srv.url})
			for round := 1; round <= rounds; round++ {
				if round > 1 { // trusted again: dialled again
					if err := b.store.Approve(srv.id.SKI); err != nil {
						t.Fatal(err)
					}
				}
				w := srv.accept(t)
				w.run(serverSteps(machine.DefaultHelloInit, "CLI-Model-2", "SRV-Model-1"))
				b.dev.waitNth(t, fmt.Sprintf("attach #%d", round), round, func(e presenceEvent) bool { return e.attached })
				if err := tt.unpair(b.store, srv.id.SKI); err != nil {
					t.Fatal(err)
				}
				if got, want := w.next(), shiptest.Announce(testWait, "removedConnection"); string(got) != string(want) {
					t.Fatalf("round %d: wsgate sent\n %q\nwant\n %q", round, got, want)
				}
				w.send(shiptest.Confirm)
				w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
				// The next round starts from a node without this session.
				b.logs.waitNth(t, fmt.Sprintf("session #%d ending", round), round, func(r logRecord) bool {
					return r.msg == "SHIP connection ended"
				})
			}
		})
	}
}

// TestShipUnpairDialledPeerInHandshake: a dialled peer the user removes
// before the handshake is complete gets no connectionClose (there is no
// data exchange to close) but the WebSocket close of unpairing, 4500
// "User close" (section 9), although only the stop of its dial loop
// reaches the session.
func TestShipUnpairDialledPeerInHandshake(t *testing.T) {
	t.Parallel()
	srv := startScriptedServer(t, "SRV-Model-1")
	b := startNode(t, "B", nodeOptions{shipID: "CLI-Model-2", machine: quick})
	b.runPeers(t, ship.Target{SKI: srv.id.SKI, SHIPID: "SRV-Model-1", URL: srv.url})
	w := srv.accept(t)
	steps := serverSteps(machine.DefaultHelloInit, "CLI-Model-2", "SRV-Model-1")
	w.run(steps[:len(steps)-1]) // wsgate waits for the server's accessMethods
	if err := b.store.Remove(srv.id.SKI); err != nil {
		t.Fatal(err)
	}
	w.expectClose(nil, machine.CodeUserClose, machine.ReasonUserClose)
}

// TestShipUnpairAcceptedPeerInHandshake: a peer that connected to wsgate
// as a trusted one and is removed or rejected by the user before its
// handshake is complete is never attached as a device: as the handshake
// completes, wsgate announces the close with reason removedConnection.
// Before, the change reached only sessions that had completed their
// handshake, and this one went on into data exchange as if still paired.
func TestShipUnpairAcceptedPeerInHandshake(t *testing.T) {
	t.Parallel()
	for _, tt := range unpairings {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "A", nodeOptions{machine: machine.Config{CloseWait: testWait}})
			a.runPeers(t)
			peer := newIdentity(t, "scripted")
			if err := a.store.Approve(peer.SKI); err != nil {
				t.Fatal(err)
			}
			w := dialWire(t, peer, a)
			stages := clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted")
			w.handshakeTo(stages, waitAccess)
			if err := tt.unpair(a.store, peer.SKI); err != nil {
				t.Fatal(err)
			}
			w.run(stages[waitAccess])
			if got, want := w.next(), shiptest.Announce(testWait, "removedConnection"); string(got) != string(want) {
				t.Fatalf("wsgate sent\n %q\nwant\n %q", got, want)
			}
			w.send(shiptest.Confirm)
			w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
			a.waitEnded(t, peer.SKI)
			if e, ok := a.dev.find(func(e presenceEvent) bool { return e.attached }); ok {
				t.Fatalf("the unpaired peer was attached as %s", e.device)
			}
		})
	}
}
