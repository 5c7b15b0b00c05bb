package machine

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/eebus"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// The messages of the tests' peer that shiptest does not have: its SHIP
// ID is PEER.
var (
	amPeer        = shiptest.AccessMethods("PEER")
	dataMsg       = shiptest.DataMessage(`{"datagram":[]}`)
	closeAnnounce = shiptest.End(`{"connectionClose":[{"phase":"announce"},{"maxTime":500}]}`)
)

// script is what a well-behaved peer sends to a machine of each role, in
// order; stage n means the first n messages were received.
var script = map[Role][][]byte{
	Server: {shiptest.CMI, shiptest.HelloReady, shiptest.AnnounceMax, shiptest.Select, shiptest.PINNone, amPeer},
	Client: {shiptest.CMI, shiptest.HelloReady, shiptest.Select, shiptest.PINNone, amPeer},
}

// record collects a machine's outputs.
type record struct {
	sent     [][]byte
	deliver  []json.RawMessage
	warnings []error
	close    *Close
}

func (r *record) take(outs []Output) {
	for _, o := range outs {
		switch o := o.(type) {
		case Send:
			r.sent = append(r.sent, o.Message)
		case Deliver:
			r.deliver = append(r.deliver, o.Payload)
		case Warning:
			r.warnings = append(r.warnings, o.Err)
		case Close:
			r.close = &o
		}
	}
}

func (r *record) last() string {
	if len(r.sent) == 0 {
		return ""
	}
	return string(r.sent[len(r.sent)-1])
}

// staged returns a machine that has received the first n script messages.
func staged(t *testing.T, role Role, cfg Config, n int) (*Machine, *record) {
	t.Helper()
	if cfg.LocalSHIPID == "" {
		cfg.LocalSHIPID = "ME"
	}
	m, err := New(role, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := &record{}
	r.take(m.Start(t0))
	for _, msg := range script[role][:n] {
		r.take(m.Receive(t0, msg))
	}
	if r.close != nil {
		t.Fatalf("closed while staging: %+v", r.close)
	}
	return m, r
}

// tickToClose fires timers until the machine closes.
func tickToClose(t *testing.T, m *Machine, r *record) time.Time {
	t.Helper()
	for range 5 {
		dl, ok := m.NextDeadline()
		if !ok {
			t.Fatalf("no deadline in %v", m.State())
		}
		r.take(m.Tick(dl))
		if r.close != nil {
			return dl
		}
	}
	t.Fatal("no close")
	return time.Time{}
}

// The machine's replies the tests expect, as record.last gives them.
var (
	hsErr1  = string(shiptest.HandshakeError(1))
	hsErr2  = string(shiptest.HandshakeError(2))
	hsErr3  = string(shiptest.HandshakeError(3))
	aborted = string(shiptest.Aborted)
)

func TestTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		role     Role
		stage    int
		state    State
		after    time.Duration // from t0 to the close
		code     int
		lastSent string
	}{
		{"server CMI", Server, 0, CMIServerWait, 30 * time.Second, 4001, ""},
		{"client CMI", Client, 0, CMIClientWait, 30 * time.Second, 4001, "\x00\x00"},
		{"server hello", Server, 1, HelloReadyListen, 121 * time.Second, 4452, aborted},
		{"client hello", Client, 1, HelloReadyListen, 121 * time.Second, 4452, aborted},
		{"server announceMax", Server, 2, ProtHServerListenProposal, 10 * time.Second, 4001, hsErr1},
		{"server select", Server, 3, ProtHServerListenConfirm, 10 * time.Second, 4001, hsErr1},
		{"client select", Client, 2, ProtHClientListenChoice, 10 * time.Second, 4001, hsErr1},
		{"server PIN", Server, 4, PinCheckListen, 10 * time.Second, 4001, ""},
		{"client access methods", Client, 4, AccessMethodsRequest, 10 * time.Second, 4001, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, r := staged(t, tt.role, Config{AutoAccept: true}, tt.stage)
			if m.State() != tt.state {
				t.Fatalf("state %v, want %v", m.State(), tt.state)
			}
			at := tickToClose(t, m, r)
			if got := at.Sub(t0); got != tt.after {
				t.Errorf("closed after %v, want %v", got, tt.after)
			}
			if r.close.Code != tt.code {
				t.Errorf("close %+v, want code %d", *r.close, tt.code)
			}
			wantErr := ErrTimeout
			if tt.code == CodeNodeRejected {
				wantErr = ErrRejected
			}
			if !errors.Is(r.close.Err, wantErr) && !containsErr(r.warnings, ErrTimeout) {
				t.Errorf("close error %v", r.close.Err)
			}
			if tt.lastSent != "" && r.last() != tt.lastSent {
				t.Errorf("last sent %q, want %q", r.last(), tt.lastSent)
			}
			if !m.State().Terminal() {
				t.Errorf("state %v", m.State())
			}
			if outs := m.Receive(at, shiptest.HelloReady); outs != nil {
				t.Errorf("outputs after close: %v", outs)
			}
		})
	}
}

func containsErr(errs []error, target error) bool {
	for _, e := range errs {
		if errors.Is(e, target) {
			return true
		}
	}
	return false
}

// TestCloseConfirmTimeout: the announcer closes after maxTime without a
// confirm.
func TestCloseConfirmTimeout(t *testing.T) {
	t.Parallel()
	m, r := staged(t, Server, Config{AutoAccept: true}, 6)
	r.take(m.Close(t0, eebus.CloseUnspecific))
	want := string(shiptest.Announce(500*time.Millisecond, "unspecific"))
	if r.last() != want || m.State() != Closing {
		t.Fatalf("sent %q in %v", r.last(), m.State())
	}
	if _, err := m.SendData(t0, json.RawMessage(`{}`)); !errors.Is(err, ErrNotComplete) {
		t.Errorf("SendData while closing: %v", err)
	}
	if at := tickToClose(t, m, r); at.Sub(t0) != 500*time.Millisecond || r.close.Code != 4001 || r.close.Reason != "close" {
		t.Errorf("close %+v at %v", *r.close, at.Sub(t0))
	}
}

// TestPeerAnnounce: confirm, then 4001 "close" after CloseWait.
func TestPeerAnnounce(t *testing.T) {
	t.Parallel()
	m, r := staged(t, Client, Config{AutoAccept: true}, 5)
	r.take(m.Receive(t0, closeAnnounce))
	if r.last() != string(shiptest.Confirm) {
		t.Fatalf("sent %q", r.last())
	}
	if at := tickToClose(t, m, r); at.Sub(t0) != 500*time.Millisecond || r.close.Code != 4001 {
		t.Errorf("close %+v at %v", *r.close, at)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	handshake := func(typ, major, minor, formats string) []byte {
		return shiptest.Control(`{"messageProtocolHandshake":[{"handshakeType":"` + typ + `"},{"version":[{"major":` + major +
			`},{"minor":` + minor + `}]},{"formats":[{"format":[` + formats + `]}]}]}`)
	}
	tests := []struct {
		name     string
		role     Role
		cfg      Config
		stage    int
		msg      []byte
		code     int // 0: no close
		err      error
		lastSent string
		state    State // when code is 0
	}{
		{"CMI wrong type", Server, Config{}, 0, []byte{1, 0}, 4001, ErrBadCMI, "", 0},
		{"CMI wrong head", Client, Config{}, 0, []byte{0, 1}, 4001, ErrBadCMI, "\x00\x00", 0},
		{"hello instead of CMI", Server, Config{}, 0, shiptest.HelloReady, 4001, ErrBadCMI, "", 0},
		{"empty instead of CMI", Server, Config{}, 0, []byte{}, 4001, ErrBadCMI, "", 0},
		{"garbage after CMI", Server, Config{}, 1, []byte("\x01garbage"), 0, nil, aborted, HelloAbortDone},
		{"short message after CMI", Server, Config{}, 1, []byte{1}, 0, nil, aborted, HelloAbortDone},
		{"second CMI", Server, Config{}, 1, shiptest.CMI, 0, nil, aborted, HelloAbortDone},
		{"unknown message in hello", Server, Config{}, 1, shiptest.Control(`{"fooBar":[]}`), 0, nil, aborted, HelloAbortDone},
		{"unknown type byte, garbage", Server, Config{}, 1, []byte("\x07xyz"), 0, nil, aborted, HelloAbortDone},
		{"peer aborts", Client, Config{}, 1, []byte(aborted), 0, nil, "", HelloRemoteAbortDone},
		{"hello phase unknown", Server, Config{}, 1, shiptest.Control(`{"connectionHello":[{"phase":"maybe"}]}`), 0, nil, aborted, HelloAbortDone},
		{"announceMax JSON-UTF16 only", Server, Config{}, 2, handshake("announceMax", "1", "0", `"JSON-UTF16"`), 4001, ErrHandshake, hsErr3, 0},
		{"announceMax 0.9", Server, Config{}, 2, handshake("announceMax", "0", "9", `"JSON-UTF8"`), 4001, ErrHandshake, hsErr3, 0},
		{"select instead of announceMax", Server, Config{}, 2, shiptest.Select, 4001, ErrUnexpectedMessage, hsErr2, 0},
		{"PIN instead of announceMax", Server, Config{}, 2, shiptest.PINNone, 4001, ErrUnexpectedMessage, hsErr2, 0},
		{"garbage in protocol handshake", Server, Config{}, 2, shiptest.Control(`nope`), 4001, ErrMalformed, hsErr2, 0},
		{"peer handshake error wrapped", Server, Config{}, 2, []byte(hsErr2), 4001, ErrHandshake, "", 0},
		{"peer handshake error unwrapped", Client, Config{}, 2, shiptest.Control(`{"error":3}`), 4001, ErrHandshake, "", 0},
		{"server selects 2.0", Client, Config{}, 2, handshake("select", "2", "0", `"JSON-UTF8"`), 4001, ErrHandshake, hsErr3, 0},
		{"server selects two formats", Client, Config{}, 2, handshake("select", "1", "0", `"JSON-UTF8","JSON-UTF16"`), 4001, ErrHandshake, hsErr3, 0},
		{"client confirms 2.0", Server, Config{}, 3, handshake("select", "2", "0", `"JSON-UTF8"`), 4001, ErrHandshake, hsErr3, 0},
		{"client announces again", Server, Config{}, 3, shiptest.AnnounceMax, 4001, ErrUnexpectedMessage, hsErr2, 0},
		{"PIN required", Server, Config{}, 4, shiptest.Control(`{"connectionPinState":[{"pinState":"required"}]}`), 4001, ErrPINUnsupported, "", 0},
		{"PIN optional", Client, Config{}, 3, shiptest.Control(`{"connectionPinState":[{"pinState":"optional"},{"inputPermission":"ok"}]}`), 4001, ErrPINUnsupported, "", 0},
		{"PIN ok", Client, Config{}, 3, shiptest.Control(`{"connectionPinState":[{"pinState":"pinOk"}]}`), 4001, ErrPINUnsupported, "", 0},
		{"PIN input", Server, Config{}, 4, shiptest.Control(`{"connectionPinInput":[{"pin":"12345678"}]}`), 4001, ErrPINUnsupported, "", 0},
		{"hello in PIN", Server, Config{}, 4, shiptest.HelloReady, 4001, ErrUnexpectedMessage, "", 0},
		{"SHIP id mismatch", Server, Config{PeerSHIPID: "OTHER"}, 5, amPeer, 4450, ErrSHIPID, "", 0},
		{"access methods without id", Client, Config{}, 4, shiptest.Control(`{"accessMethods":[]}`), 4001, ErrSHIPID, "", 0},
		{"expected SHIP id", Client, Config{PeerSHIPID: "PEER"}, 4, amPeer, 0, nil, "", Complete},
		{"announceMax 2.0 accepted", Server, Config{}, 2, handshake("announceMax", "2", "0", `"JSON-UTF16","JSON-UTF8"`), 0, nil, string(shiptest.Select), ProtHServerListenConfirm},
		{"hello with stray NULs", Server, Config{}, 1, append(append([]byte{1, 0, 0}, shiptest.HelloReady[1:]...), 0), 0, nil, "", ProtHServerListenProposal},
		{"CMI with trailing bytes", Server, Config{}, 0, []byte{0, 0, 0xff}, 0, nil, "", HelloReadyListen},
		{"garbage after Complete", Server, Config{}, 6, []byte("\x02{]"), 0, nil, "", Complete},
		{"hello after Complete", Server, Config{}, 6, shiptest.HelloReady, 0, nil, "", Complete},
		{"confirm without announce", Server, Config{}, 6, shiptest.Confirm, 0, nil, "", Complete},
		{"access request after Complete", Server, Config{}, 6, shiptest.AccessMethodsRequest, 0, nil, string(shiptest.AccessMethods("ME")), Complete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.AutoAccept = true
			m, r := staged(t, tt.role, cfg, tt.stage)
			r.take(m.Receive(t0, tt.msg))
			if tt.lastSent != "" && r.last() != tt.lastSent {
				t.Errorf("last sent %q, want %q", r.last(), tt.lastSent)
			}
			if tt.code == 0 {
				if r.close != nil {
					t.Fatalf("closed: %+v", *r.close)
				}
				if m.State() != tt.state {
					t.Fatalf("state %v, want %v", m.State(), tt.state)
				}
				if tt.state == HelloAbortDone || tt.state == HelloRemoteAbortDone {
					at := tickToClose(t, m, r)
					if at.Sub(t0) != time.Second || r.close.Code != 4452 || r.close.Reason != ReasonNodeRejected {
						t.Errorf("close %+v after %v", *r.close, at.Sub(t0))
					}
				}
				return
			}
			if r.close == nil {
				t.Fatalf("no close; state %v", m.State())
			}
			if r.close.Code != tt.code || !errors.Is(r.close.Err, tt.err) || m.State() != Error {
				t.Errorf("close %+v in %v, want %d %v", *r.close, m.State(), tt.code, tt.err)
			}
			if r.close.Reason == "" || len(r.close.Reason) > 123 {
				t.Errorf("reason %q", r.close.Reason)
			}
		})
	}
}

// TestLiberalType: a SHIP message with the wrong or an unknown type byte
// is handled by its JSON, with a Warning.
func TestLiberalType(t *testing.T) {
	t.Parallel()
	for _, typ := range []byte{2, 3, 5, 0xff} {
		m, r := staged(t, Server, Config{AutoAccept: true}, 1)
		msg := append([]byte{typ}, shiptest.HelloReady[1:]...)
		r.take(m.Receive(t0, msg))
		if m.State() != ProtHServerListenProposal || !containsErr(r.warnings, ErrWrongType) {
			t.Errorf("type %#x: state %v, warnings %v", typ, m.State(), r.warnings)
		}
	}
	// Data sent as control after Complete.
	m, r := staged(t, Client, Config{AutoAccept: true}, 5)
	r.take(m.Receive(t0, append([]byte{1}, dataMsg[1:]...)))
	if len(r.deliver) != 1 || !containsErr(r.warnings, ErrWrongType) {
		t.Errorf("delivered %q, warnings %v", r.deliver, r.warnings)
	}
}

// TestEarlyMessages: access methods arriving during the PIN exchange and
// data arriving before Complete are handled once the machine is ready
// (section 6.5).
func TestEarlyMessages(t *testing.T) {
	t.Parallel()
	m, r := staged(t, Server, Config{AutoAccept: true}, 1)
	r.take(m.Receive(t0, dataMsg)) // during the hello
	for _, msg := range [][]byte{shiptest.HelloReady, shiptest.AnnounceMax, shiptest.Select, shiptest.AccessMethodsRequest, dataMsg, amPeer} {
		r.take(m.Receive(t0, msg))
	}
	if m.State() != PinCheckListen || len(r.deliver) != 0 {
		t.Fatalf("state %v, delivered %q", m.State(), r.deliver)
	}
	n := len(r.sent)
	r.take(m.Receive(t0, shiptest.PINNone))
	got := make([]string, 0)
	for _, s := range r.sent[n:] {
		got = append(got, string(s))
	}
	want := []string{string(shiptest.AccessMethodsRequest), string(shiptest.AccessMethods("ME"))}
	if !equalStrings(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	if m.State() != Complete || len(r.deliver) != 2 || m.PeerSHIPID() != "PEER" {
		t.Errorf("state %v, delivered %d, peer %q", m.State(), len(r.deliver), m.PeerSHIPID())
	}
	if _, ok := m.NextDeadline(); ok {
		t.Error("a timer runs in Complete")
	}
}

func TestTooManyEarly(t *testing.T) {
	t.Parallel()
	m, r := staged(t, Server, Config{AutoAccept: true, MaxEarly: 2}, 1)
	for range 3 {
		r.take(m.Receive(t0, dataMsg))
	}
	if r.close == nil || !errors.Is(r.close.Err, ErrTooManyEarly) {
		t.Fatalf("close %v", r.close)
	}
}

func TestHelloPendingPeer(t *testing.T) {
	t.Parallel()
	pending := func(json string) []byte {
		return shiptest.Control(`{"connectionHello":[{"phase":"pending"}` + json + `]}`)
	}
	tests := []struct {
		name     string
		msg      []byte
		state    State
		deadline time.Duration // 0: none checked
		lastSent string
	}{
		{"ready without waiting", shiptest.Control(`{"connectionHello":[{"phase":"ready"}]}`), HelloAbortDone, time.Second, aborted},
		{"ready waiting below minimum", shiptest.Control(`{"connectionHello":[{"phase":"ready"},{"waiting":999}]}`), HelloAbortDone, time.Second, aborted},
		{"ready waiting short", shiptest.Control(`{"connectionHello":[{"phase":"ready"},{"waiting":10000}]}`), HelloPendingListen, 10 * time.Second, ""},
		{"ready waiting long", shiptest.HelloReady, HelloPendingListen, 45 * time.Second, ""},
		{"pending waiting", pending(`,{"waiting":40000}`), HelloPendingListen, 25 * time.Second, ""},
		{"pending prolongation", pending(`,{"prolongationRequest":true}`), HelloPendingListen, 120 * time.Second,
			"\x01" + `{"connectionHello":[{"phase":"pending"},{"waiting":120000}]}`},
		{"pending both fields", pending(`,{"waiting":40000},{"prolongationRequest":true}`), HelloAbortDone, time.Second, aborted},
		{"pending bare", pending(``), HelloAbortDone, time.Second, aborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, r := staged(t, Server, Config{}, 1)
			if m.State() != HelloPendingListen {
				t.Fatalf("state %v", m.State())
			}
			r.take(m.Receive(t0, tt.msg))
			if m.State() != tt.state {
				t.Fatalf("state %v, want %v", m.State(), tt.state)
			}
			if dl, ok := m.NextDeadline(); !ok || dl.Sub(t0) != tt.deadline {
				t.Errorf("deadline %v %v, want %v", dl.Sub(t0), ok, tt.deadline)
			}
			if tt.lastSent != "" && r.last() != tt.lastSent {
				t.Errorf("last sent %q", r.last())
			}
		})
	}
}

// TestHelloReadyPeerPending: in ready listen a pending peer is waited for,
// and its prolongation request is granted.
func TestHelloReadyPeerPending(t *testing.T) {
	t.Parallel()
	m, r := staged(t, Client, Config{AutoAccept: true}, 1)
	at := t0.Add(100 * time.Second)
	r.take(m.Receive(at, shiptest.Control(`{"connectionHello":[{"phase":"pending"},{"waiting":60000}]}`)))
	if dl, _ := m.NextDeadline(); dl.Sub(t0) != 120*time.Second || len(r.sent) != 2 {
		t.Fatalf("deadline %v, sent %q", dl.Sub(t0), r.sent)
	}
	r.take(m.Receive(at, shiptest.Control(`{"connectionHello":[{"phase":"pending"},{"prolongationRequest":true}]}`)))
	if r.last() != "\x01"+`{"connectionHello":[{"phase":"ready"},{"waiting":120000}]}` {
		t.Errorf("sent %q", r.last())
	}
	if dl, _ := m.NextDeadline(); dl.Sub(at) != 120*time.Second || m.State() != HelloReadyListen {
		t.Errorf("deadline %v in %v", dl.Sub(at), m.State())
	}
}

func TestTrustBeforeHello(t *testing.T) {
	t.Parallel()
	for _, approve := range []bool{true, false} {
		m, err := New(Server, Config{LocalSHIPID: "ME"})
		if err != nil {
			t.Fatal(err)
		}
		r := &record{}
		r.take(m.Start(t0))
		if approve {
			r.take(m.Approve(t0))
		} else {
			r.take(m.Reject(t0))
		}
		r.take(m.Receive(t0, shiptest.CMI))
		want := "\x01" + `{"connectionHello":[{"phase":"ready"},{"waiting":120000}]}`
		if !approve {
			want = aborted
		}
		if r.last() != want {
			t.Errorf("approve %v: sent %q", approve, r.last())
		}
	}
}

func TestCloseBeforeComplete(t *testing.T) {
	t.Parallel()
	for reason, code := range map[eebus.CloseReason]int{eebus.CloseRemovedConnection: 4500, eebus.CloseUnspecific: 4001} {
		m, r := staged(t, Server, Config{AutoAccept: true}, 3)
		r.take(m.Close(t0, reason))
		if r.close == nil || r.close.Code != code || len(r.sent) != 3 || m.State() != Closed {
			t.Errorf("%s: close %+v, sent %d, state %v", reason, r.close, len(r.sent), m.State())
		}
	}
}

func TestSendData(t *testing.T) {
	t.Parallel()
	m, _ := staged(t, Client, Config{AutoAccept: true}, 3)
	if _, err := m.SendData(t0, json.RawMessage(`{}`)); !errors.Is(err, ErrNotComplete) {
		t.Errorf("before Complete: %v", err)
	}
	m, _ = staged(t, Client, Config{AutoAccept: true}, 5)
	if _, err := m.SendData(t0, json.RawMessage(`{"datagram":`)); !errors.Is(err, ErrPayload) {
		t.Errorf("bad JSON: %v", err)
	}
	outs, err := m.SendData(t0, json.RawMessage(`{ "datagram" : [] }`))
	if err != nil {
		t.Fatal(err)
	}
	want := "\x02" + `{"data":[{"header":[{"protocolId":"ee1.0"}]},{"payload":{"datagram":[]}}]}`
	if len(outs) != 1 || !bytes.Equal(outs[0].(Send).Message, []byte(want)) {
		t.Errorf("outputs %q", outs)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{LocalSHIPID: "x"}, true},
		{"no id", Config{}, false},
		{"long id", Config{LocalSHIPID: strings.Repeat("x", 64)}, false},
		{"gap above threshold", Config{LocalSHIPID: "x", HelloProlongWaitingGap: time.Minute}, false},
		{"negative", Config{LocalSHIPID: "x", CloseWait: -1}, false},
		{"too long for uint32 ms", Config{LocalSHIPID: "x", HelloInit: 50 * 24 * time.Hour}, false},
	}
	for _, tt := range tests {
		_, err := New(Server, tt.cfg)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if _, err := New(Role(7), Config{LocalSHIPID: "x"}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad role: %v", err)
	}
}
