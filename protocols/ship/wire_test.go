package ship_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/eebus"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// These tests script one end of a SHIP connection by hand, over a real TLS
// WebSocket, against a wsgate node: the scripted end sends exact bytes and
// checks wsgate's exact bytes and close codes.

// quick are the timers of a node whose closes should not keep a test
// waiting; everything else has its default, far longer than any test.
var quick = machine.Config{CloseWait: 100 * time.Millisecond, AbortDelay: 50 * time.Millisecond}

// TestShipReplayServerRole replays the client's side of section 10's first
// trace (trace-autoaccept.txt) byte for byte against a wsgate SHIP server
// with auto-accept on and checks every reply of wsgate's against the
// trace's server lines, then that the data message reached the router as
// plain JSON.
func TestShipReplayServerRole(t *testing.T) {
	t.Parallel()
	trace := readTrace(t, "trace-autoaccept.txt")
	tests := []struct {
		name      string
		shipID    string
		helloInit time.Duration
	}{
		// With ship-go's hello timer and the trace's SHIP ID, wsgate's
		// replies are the trace's server lines byte for byte.
		{"ship-go settings", "SRV-Model-1", 60 * time.Second},
		// With its defaults wsgate's replies differ from ship-go's only in
		// what its config sets: the waiting of its hellos is its
		// HelloInit (120 s, section 7's recommendation, where ship-go has
		// 60 s) and its accessMethods id is its own SHIP ID. The expected
		// bytes are the trace's with those two values replaced.
		{"wsgate defaults", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "A", nodeOptions{shipID: tt.shipID, autoAccept: true,
				machine: machine.Config{HelloInit: tt.helloInit, CloseWait: quick.CloseWait}})
			peer := newIdentity(t, "scripted")
			w := dialWire(t, peer, a)
			waiting := cmp.Or(tt.helloInit, machine.DefaultHelloInit).Milliseconds()
			for _, l := range trace {
				if l.Sender == "client" {
					w.send(l.Msg)
					continue
				}
				want := bytes.ReplaceAll(l.Msg, []byte(`{"waiting":60000}`), fmt.Appendf(nil, `{"waiting":%d}`, waiting))
				want = bytes.ReplaceAll(want, []byte(`"SRV-Model-1"`), strconv.AppendQuote(nil, a.id.SHIPID))
				if got := w.next(); !bytes.Equal(got, want) {
					t.Fatalf("%s: wsgate sent\n %q\nwant\n %q", l.Where, got, want)
				}
			}
			// After its confirm (the trace's last line) wsgate closes
			// CloseWait later, as ship-go's server does 500 ms later; that
			// wait is not on the wire, so a short one keeps the test quick.
			w.expectClose(nil, machine.CodeClose, machine.ReasonClose)

			f := a.waitFrame(t, "CLI-Model-2", "spine") // the device is the client's accessMethods id
			if want := tracePlain(t); !bytes.Equal(f.Payload, want) {
				t.Errorf("router got\n %s\nwant\n %s", f.Payload, want)
			}
			a.waitDetached(t, "CLI-Model-2")
			a.waitEnded(t, peer.SKI)
			if s := a.p.Stats(); s.Complete != 1 || s.DatagramsIn != 1 || s.Connected != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestShipReplayClientRole has wsgate dial a scripted SHIP server that
// plays the server's side of the first trace, and checks every message of
// wsgate's against the trace's client lines. wsgate sends the data
// message when the router gives it the spine command with the datagram in
// plain JSON, and the close announce when the user removes the peer.
func TestShipReplayClientRole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		publish func(*testing.T) []byte // the spine command's datagram
	}{
		{"datagram as in the trace", tracePlain},
		// The publisher's JSON has the keys in another order; what goes
		// out has the XSD order of section 5, which the trace has.
		{"datagram keys in another order", shuffledPlain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			trace := readTrace(t, "trace-autoaccept.txt")
			srv := startScriptedServer(t, "SRV-Model-1")
			// ship-go's hello timer and close wait, and the trace's SHIP
			// ID: the trace's bytes exactly.
			b := startNode(t, "B", nodeOptions{shipID: "CLI-Model-2",
				machine: machine.Config{HelloInit: 60 * time.Second, CloseWait: 500 * time.Millisecond}})
			b.runPeers(t)
			d := b.dial(t, srv.url, srv.id.SKI, "SRV-Model-1")
			w := srv.accept(t)
			for _, l := range trace {
				if l.Sender == "server" {
					w.send(l.Msg)
					continue
				}
				switch eebus.MessageType(l.Msg[0]) {
				case eebus.TypeData:
					b.waitAttached(t, "SRV-Model-1")
					cmd := protocols.Command{Device: "SRV-Model-1", ID: "c1", Name: "spine", Args: tt.publish(t)}
					if err := b.rt.Command(cmd); err != nil {
						t.Fatalf("spine command: %v", err)
					}
				case eebus.TypeEnd:
					if err := b.store.Remove(srv.id.SKI); err != nil {
						t.Fatal(err)
					}
				}
				if got := w.next(); !bytes.Equal(got, l.Msg) {
					t.Fatalf("%s: wsgate sent\n %q\nwant\n %q", l.Where, got, l.Msg)
				}
			}
			// The confirm: the announcer closes at once.
			w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
			if err := d.wait(t); err != nil {
				t.Errorf("Dial: %v", err)
			}
			r := b.waitFrame(t, "SRV-Model-1", protocols.ResultChannel("spine"))
			if string(r.Payload) != `{"id":"c1","ok":true}` {
				t.Errorf("result %s", r.Payload)
			}
		})
	}
}

// TestShipReplayPendingProlongationApprove replays section 10's second
// trace (trace-pending.txt) against a wsgate server with auto-accept off:
// wsgate says pending, asks the client for prolongation before the
// client's waiting runs out, and says ready once the user approves while
// it is pending; the handshake then goes on as in the first trace.
func TestShipReplayPendingProlongationApprove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// crossing: the user approves before the client's answer to the
		// prolongation request arrives, so wsgate's ready and that answer
		// cross; wsgate must take the answer for what it is, not for a
		// message out of place in the protocol handshake.
		crossing bool
	}{
		{"approved after the answer to the prolongation request", false},
		{"approved while the answer is on its way", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first := readTrace(t, "trace-autoaccept.txt")
			pending := readTrace(t, "trace-pending.txt")
			if tt.crossing { // wsgate's ready before the client's answer
				pending[3], pending[4] = pending[4], pending[3]
			}
			lines := append(first[:2:2], pending...) // both CMIs, the pending hellos
			lines = append(lines, first[4:]...)      // the rest
			approveAt := 2 + 4
			if tt.crossing {
				approveAt = 2 + 3
			}

			// The client's hellos say waiting 60000 (the trace's bytes);
			// wsgate asks for prolongation HelloProlongWaitingGap before that
			// runs out, here 1 s after the client's hello instead of section
			// 6.2's 45 s.
			a := startNode(t, "A", nodeOptions{shipID: "SRV-Model-1", machine: machine.Config{
				HelloInit: 60 * time.Second, HelloProlongThrInc: 59500 * time.Millisecond,
				HelloProlongWaitingGap: 59 * time.Second, CloseWait: quick.CloseWait,
			}})
			peer := newIdentity(t, "scripted")
			w := dialWire(t, peer, a)
			for i, l := range lines {
				if l.Sender == "client" {
					w.send(l.Msg)
					continue
				}
				if i == approveAt {
					if e, ok := a.store.Get(peer.SKI); !ok || e.State != trust.Pending {
						t.Fatalf("trust entry %+v, want pending", e)
					}
					if err := a.store.Approve(peer.SKI); err != nil {
						t.Fatal(err)
					}
				}
				if got := w.next(); !bytes.Equal(got, l.Msg) {
					t.Fatalf("%s: wsgate sent\n %q\nwant\n %q", l.Where, got, l.Msg)
				}
			}
			w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
			if f := a.waitFrame(t, "CLI-Model-2", "spine"); !bytes.Equal(f.Payload, tracePlain(t)) {
				t.Errorf("router got %s", f.Payload)
			}
			if e, _ := a.store.Get(peer.SKI); e.State != trust.Trusted || e.SHIPID != "CLI-Model-2" || e.AutoAccepted {
				t.Errorf("trust entry %+v, want trusted by the user with the SHIP ID learnt", e)
			}
		})
	}
}

// TestShipTimeouts has a scripted client stop answering in each state a
// wsgate server waits in, with that state's timer short, and checks what
// wsgate sends before its close and the close.
func TestShipTimeouts(t *testing.T) {
	t.Parallel()
	const short = 200 * time.Millisecond
	tests := []struct {
		wait   int
		cfg    machine.Config
		before [][]byte // sent by wsgate after the stage, before the close
		code   int
		reason string
	}{
		{waitCMI, machine.Config{CMITimeout: short}, nil, machine.CodeClose, "no CMI"},
		// The hello is aborted and closed 4452 AbortDelay later (section 6.2).
		{waitHello, machine.Config{HelloInit: short}, [][]byte{shiptest.Aborted}, machine.CodeNodeRejected, machine.ReasonNodeRejected},
		// A protocol handshake error says why: 1 is timeout (section 6.3).
		{waitProtocol, machine.Config{ProtocolHandshakeWait: short}, [][]byte{shiptest.HandshakeError(1)}, machine.CodeClose, "protocol handshake step took over"},
		{waitPIN, machine.Config{PinWait: short}, nil, machine.CodeClose, "no PIN state"},
		{waitAccess, machine.Config{AccessMethodsWait: short}, nil, machine.CodeClose, "no access methods"},
	}
	for _, tt := range tests {
		t.Run(waitNames[tt.wait], func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.AbortDelay = quick.AbortDelay
			a := startNode(t, "A", nodeOptions{autoAccept: true, machine: cfg})
			w := dialWire(t, newIdentity(t, "scripted"), a)
			w.handshakeTo(clientStages(cmp.Or(cfg.HelloInit, machine.DefaultHelloInit), a.id.SHIPID, "scripted"), tt.wait)
			w.expectCloseContaining(tt.before, tt.code, tt.reason)
		})
	}
}

// TestShipHandshakeErrors sends a wsgate server a wrong message in each
// state and checks what wsgate sends before its close, and the close.
func TestShipHandshakeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		wait   int    // the state the scripted client brings wsgate to first
		msg    []byte // then it sends this binary message
		text   string // or this text message
		before [][]byte
		code   int
		reason string
	}{
		{name: "bad CMI head", wait: waitCMI, msg: []byte{0x00, 0x01},
			code: machine.CodeClose, reason: "bad CMI"},
		{name: "control message instead of CMI", wait: waitCMI, msg: shiptest.HelloReady,
			code: machine.CodeClose, reason: "bad CMI"},
		// Section 6.2: anything unparseable in the hello aborts it.
		{name: "garbage in hello", wait: waitHello, msg: shiptest.Control("garbage"),
			before: [][]byte{shiptest.Aborted}, code: machine.CodeNodeRejected, reason: machine.ReasonNodeRejected},
		{name: "garbage in protocol handshake", wait: waitProtocol, msg: shiptest.Control("{garbage"),
			before: [][]byte{shiptest.HandshakeError(2)}, code: machine.CodeClose, reason: "malformed"},
		{name: "garbage in PIN", wait: waitPIN, msg: shiptest.Control("garbage"),
			code: machine.CodeClose, reason: "malformed"},
		{name: "garbage in access methods", wait: waitAccess, msg: eebus.Encode(eebus.TypeControl, []byte{0xff, 0xfe}),
			code: machine.CodeClose, reason: "malformed"},
		// Section 6.3: a mismatch is answered by messageProtocolHandshakeError
		// in its wrapped form, 3 is selection mismatch and 2 unexpected message.
		{name: "format JSON-UTF16 only", wait: waitProtocol,
			msg:    shiptest.Control(`{"messageProtocolHandshake":[{"handshakeType":"announceMax"},{"version":[{"major":1},{"minor":0}]},{"formats":[{"format":["JSON-UTF16"]}]}]}`),
			before: [][]byte{shiptest.HandshakeError(3)}, code: machine.CodeClose, reason: "protocol handshake failed"},
		{name: "version 0.9", wait: waitProtocol,
			msg:    shiptest.Control(`{"messageProtocolHandshake":[{"handshakeType":"announceMax"},{"version":[{"major":0},{"minor":9}]},{"formats":[{"format":["JSON-UTF8"]}]}]}`),
			before: [][]byte{shiptest.HandshakeError(3)}, code: machine.CodeClose, reason: "protocol handshake failed"},
		{name: "select instead of announceMax", wait: waitProtocol, msg: shiptest.Select,
			before: [][]byte{shiptest.HandshakeError(2)}, code: machine.CodeClose, reason: "unexpected message"},
		// Section 6.4: only PIN state none is supported.
		{name: "PIN required", wait: waitPIN, msg: shiptest.Control(`{"connectionPinState":[{"pinState":"required"}]}`),
			code: machine.CodeClose, reason: "PIN verification not supported"},
		{name: "PIN optional", wait: waitPIN, msg: shiptest.Control(`{"connectionPinState":[{"pinState":"optional"}]}`),
			code: machine.CodeClose, reason: "PIN verification not supported"},
		{name: "PIN ok", wait: waitPIN, msg: shiptest.Control(`{"connectionPinState":[{"pinState":"pinOk"}]}`),
			code: machine.CodeClose, reason: "PIN verification not supported"},
		{name: "accessMethods without id", wait: waitAccess, msg: shiptest.Control(`{"accessMethods":[]}`),
			code: machine.CodeClose, reason: "without id"},
		// Section 3: SHIP messages are binary frames.
		{name: "text frame instead of CMI", wait: waitCMI, text: "00",
			code: machine.CodeUnsupportedData, reason: "SHIP messages are binary"},
		{name: "text frame in data exchange", wait: dataExchange, text: `{"data":[]}`,
			code: machine.CodeUnsupportedData, reason: "SHIP messages are binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "A", nodeOptions{autoAccept: true, machine: quick})
			w := dialWire(t, newIdentity(t, "scripted"), a)
			w.handshakeTo(clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted"), tt.wait)
			if tt.msg != nil {
				w.send(tt.msg)
			} else {
				w.sendText(tt.text)
			}
			w.expectCloseContaining(tt.before, tt.code, tt.reason)
		})
	}
}

// TestShipGarbageInDataExchangeIsIgnored: after Complete a message that
// is not a SHIP message is logged and dropped; the connection goes on.
func TestShipGarbageInDataExchangeIsIgnored(t *testing.T) {
	t.Parallel()
	a := startNode(t, "A", nodeOptions{autoAccept: true, machine: quick})
	w := dialWire(t, newIdentity(t, "scripted"), a)
	w.handshakeTo(clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted"), dataExchange)
	w.send(shiptest.Control("garbage"))
	w.send(shiptest.DataMessage(`{"datagram":[{"header":[{"msgCounter":7}]}]}`))
	if f := a.waitFrame(t, "scripted", "spine"); string(f.Payload) != `{"datagram":{"header":{"msgCounter":7}}}` {
		t.Errorf("router got %s", f.Payload)
	}
}

// TestShipReject: a peer the user rejects, while it waits in hello
// pending or before it connects, gets an aborted hello and close 4452.
func TestShipReject(t *testing.T) {
	t.Parallel()
	for _, whilePending := range []bool{true, false} {
		name := map[bool]string{true: "while pending", false: "before connecting"}[whilePending]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "A", nodeOptions{machine: quick})
			peer := newIdentity(t, "scripted")
			if !whilePending {
				if err := a.store.Reject(peer.SKI); err != nil {
					t.Fatal(err)
				}
			}
			w := dialWire(t, peer, a)
			w.send(shiptest.CMI)
			w.expect(shiptest.CMI)
			if whilePending {
				w.expect(shiptest.Hello("pending", machine.DefaultHelloInit))
				w.send(shiptest.HelloReady)
				a.waitPending(t, peer.SKI)
				if err := a.store.Reject(peer.SKI); err != nil {
					t.Fatal(err)
				}
			}
			w.expectClose([][]byte{shiptest.Aborted}, machine.CodeNodeRejected, machine.ReasonNodeRejected)
			a.waitLog(t, "SHIP connection ended", nil)
			if s := a.p.Stats(); s.Rejected != 1 || s.Complete != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestShipCloseExchange checks the connectionClose exchange of section 6.7
// in data exchange, with wsgate on either side of it.
func TestShipCloseExchange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// wsgateAnnounces: the user removes the peer and wsgate announces
		// (reason removedConnection); otherwise the peer announces.
		wsgateAnnounces bool
		confirm         bool // the peer confirms wsgate's announce
	}{
		{name: "peer announces"},
		{name: "wsgate announces on unpairing", wsgateAnnounces: true, confirm: true},
		{name: "wsgate announces, no confirm", wsgateAnnounces: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startNode(t, "A", nodeOptions{autoAccept: true, machine: quick})
			a.runPeers(t)
			peer := newIdentity(t, "scripted")
			w := dialWire(t, peer, a)
			w.handshakeTo(clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted"), dataExchange)
			a.waitAttached(t, "scripted")
			if tt.wsgateAnnounces {
				if err := a.store.Remove(peer.SKI); err != nil {
					t.Fatal(err)
				}
				w.expect(shiptest.Announce(quick.CloseWait, "removedConnection"))
				if tt.confirm {
					w.send(shiptest.Confirm)
				}
				// On the confirm at once, else when CloseWait is over.
				w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
			} else {
				w.send(shiptest.Announce(500*time.Millisecond, "removedConnection"))
				w.expect(shiptest.Confirm)
				// CloseWait after its confirm.
				w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
			}
			a.waitDetached(t, "scripted")
		})
	}
}

// TestShipDoubleConnection: a second connection of the same SKI that
// reaches data exchange closes the older one with 1000 "double
// connection" (section 9) and is the peer's connection from then on.
func TestShipDoubleConnection(t *testing.T) {
	t.Parallel()
	a := startNode(t, "A", nodeOptions{autoAccept: true, machine: quick})
	peer := newIdentity(t, "scripted")
	stages := clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted")
	older := dialWire(t, peer, a)
	older.handshakeTo(stages, dataExchange)
	a.waitAttached(t, "scripted")

	newer := dialWire(t, peer, a)
	newer.handshakeTo(stages, dataExchange)
	older.expectClose(nil, protocols.CloseNormal, "double connection")

	newer.send(shiptest.DataMessage(`{"datagram":[{"header":[{"msgCounter":2}]}]}`))
	if f := a.waitFrame(t, "scripted", "spine"); string(f.Payload) != `{"datagram":{"header":{"msgCounter":2}}}` {
		t.Errorf("router got %s", f.Payload)
	}
	if !a.p.Connected(peer.SKI) {
		t.Error("the peer is not connected any more")
	}
	if err := a.rt.Command(protocols.Command{Device: "scripted", ID: "c1", Name: "spine", Args: []byte(`{"datagram":{"header":{"msgCounter":3}}}`)}); err != nil {
		t.Fatal(err)
	}
	newer.expect(shiptest.DataMessage(`{"datagram":[{"header":[{"msgCounter":3}]}]}`))
	if s := a.p.Stats(); s.Complete != 2 || s.Connected != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestShipWrongSHIPID: wsgate dials a SHIP server expecting another SHIP
// ID than the server's accessMethods says, and closes with 4450 (section 6.5).
func TestShipWrongSHIPID(t *testing.T) {
	t.Parallel()
	srv := startScriptedServer(t, "SRV-Model-1")
	b := startNode(t, "B", nodeOptions{shipID: "CLI-Model-2", machine: quick})
	d := b.dial(t, srv.url, srv.id.SKI, "SRV-Model-9")
	w := srv.accept(t)
	w.run(serverSteps(machine.DefaultHelloInit, "CLI-Model-2", "SRV-Model-1"))
	w.expectCloseContaining(nil, machine.CodeSHIPIDMismatch, `peer says "SRV-Model-1", want "SRV-Model-9"`)
	if err := d.wait(t); err != nil {
		t.Errorf("Dial: %v", err)
	}
	if _, ok := b.dev.find(func(presenceEvent) bool { return true }); ok {
		t.Error("the peer was attached")
	}
}

// TestShipShutdownAnnouncesClose: a gateway that shuts down ends its SHIP
// connections with the close announce of section 6.7, not a bare 1001,
// both as server and, through its dial loop, as client.
func TestShipShutdownAnnouncesClose(t *testing.T) {
	t.Parallel()
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		a := startNode(t, "A", nodeOptions{autoAccept: true, machine: quick})
		w := dialWire(t, newIdentity(t, "scripted"), a)
		w.handshakeTo(clientStages(machine.DefaultHelloInit, a.id.SHIPID, "scripted"), dataExchange)
		a.waitAttached(t, "scripted")
		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			shutdown <- a.srv.Shutdown(ctx)
		}()
		w.expect(shiptest.Announce(quick.CloseWait, "unspecific"))
		w.send(shiptest.Confirm)
		w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
		if err := <-shutdown; err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	})
	t.Run("client", func(t *testing.T) {
		t.Parallel()
		srv := startScriptedServer(t, "SRV-Model-1")
		b := startNode(t, "B", nodeOptions{shipID: "CLI-Model-2",
			machine: machine.Config{HelloInit: 60 * time.Second, CloseWait: 500 * time.Millisecond}})
		d := b.dial(t, srv.url, srv.id.SKI, "SRV-Model-1")
		w := srv.accept(t)
		// The trace's handshake, up to its first data message.
		for _, l := range readTrace(t, "trace-autoaccept.txt") {
			if eebus.MessageType(l.Msg[0]) == eebus.TypeData {
				break
			}
			if l.Sender == "server" {
				w.send(l.Msg)
			} else if got := w.next(); !bytes.Equal(got, l.Msg) {
				t.Fatalf("%s: wsgate sent\n %q\nwant\n %q", l.Where, got, l.Msg)
			}
		}
		b.waitAttached(t, "SRV-Model-1")
		d.cancel() // the peer is no longer wanted, as when the gateway stops
		w.expect(shiptest.Announce(500*time.Millisecond, "unspecific"))
		w.send(shiptest.Confirm)
		w.expectClose(nil, machine.CodeClose, machine.ReasonClose)
		if err := d.wait(t); err != nil {
			t.Fatalf("Dial: %v", err)
		}
	})
}
