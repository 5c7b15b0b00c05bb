package machine

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/eebus"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// side is one machine of a pair and what it did.
type side struct {
	name    string
	m       *Machine
	inbox   [][]byte // messages in flight to this side
	sent    [][]byte // everything it sent, in order
	deliver []json.RawMessage
	peerID  string
	close   *Close
	closeAt time.Time
	asked   bool // NeedsTrust seen
}

// pair wires a server and a client machine together in memory: Send
// outputs become the other side's Receive, time advances to the next
// deadline or scheduled event when nothing is in flight.
type pair struct {
	t        *testing.T
	now      time.Time
	srv, cli *side
	events   []event
}

type event struct {
	at time.Time
	fn func(p *pair)
}

func newPair(t *testing.T, srvCfg, cliCfg Config) *pair {
	t.Helper()
	srv, err := New(Server, srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := New(Client, cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{t: t, now: t0, srv: &side{name: "server", m: srv}, cli: &side{name: "client", m: cli}}
	p.apply(p.srv, srv.Start(p.now))
	p.apply(p.cli, cli.Start(p.now))
	return p
}

func (p *pair) other(s *side) *side {
	if s == p.srv {
		return p.cli
	}
	return p.srv
}

// at schedules fn at time at.
func (p *pair) at(at time.Time, fn func(p *pair)) { p.events = append(p.events, event{at, fn}) }

func (p *pair) apply(s *side, outs []Output) {
	p.t.Helper()
	for _, o := range outs {
		switch o := o.(type) {
		case Send:
			if s.close != nil {
				p.t.Fatalf("%s sends after its close", s.name)
			}
			s.sent = append(s.sent, o.Message)
			if peer := p.other(s); peer.close == nil {
				peer.inbox = append(peer.inbox, o2(o.Message))
			}
		case Deliver:
			s.deliver = append(s.deliver, o.Payload)
		case PeerID:
			s.peerID = o.SHIPID
		case NeedsTrust:
			s.asked = true
		case Close:
			if s.close != nil {
				p.t.Fatalf("%s closes twice", s.name)
			}
			s.close, s.closeAt = &o, p.now
		}
	}
}

func o2(b []byte) []byte { return append([]byte(nil), b...) }

// step moves one message or advances time; false when nothing is left.
func (p *pair) step() bool {
	p.t.Helper()
	for _, s := range []*side{p.cli, p.srv} {
		if len(s.inbox) > 0 && s.close == nil {
			msg := s.inbox[0]
			s.inbox = s.inbox[1:]
			p.apply(s, s.m.Receive(p.now, msg))
			return true
		}
	}
	// Nothing in flight: the next timer or event.
	next, ok := time.Time{}, false
	for _, s := range []*side{p.cli, p.srv} {
		if d, has := s.m.NextDeadline(); has && s.close == nil && (!ok || d.Before(next)) {
			next, ok = d, true
		}
	}
	for _, e := range p.events {
		if !ok || e.at.Before(next) || e.at.Equal(next) {
			next, ok = e.at, true
		}
	}
	if !ok {
		return false
	}
	if next.After(p.now) {
		p.now = next
	}
	for i, e := range p.events {
		if !e.at.After(p.now) {
			p.events = append(p.events[:i], p.events[i+1:]...)
			e.fn(p)
			return true
		}
	}
	for _, s := range []*side{p.cli, p.srv} {
		if d, has := s.m.NextDeadline(); has && s.close == nil && !d.After(p.now) {
			p.apply(s, s.m.Tick(p.now))
			return true
		}
	}
	return true
}

// run steps until cond holds, failing after too many steps.
func (p *pair) run(cond func() bool) {
	p.t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		if !p.step() {
			if !cond() {
				p.t.Fatalf("stuck at %v: server %v, client %v", p.now.Sub(t0), p.srv.m.State(), p.cli.m.State())
			}
			return
		}
	}
	p.t.Fatal("too many steps")
}

func (p *pair) bothComplete() bool {
	return p.srv.m.State() == Complete && p.cli.m.State() == Complete &&
		len(p.srv.inbox) == 0 && len(p.cli.inbox) == 0
}

func (p *pair) bothClosed() bool { return p.srv.close != nil && p.cli.close != nil }

// hellos returns the connectionHello messages s sent, as text.
func hellos(s *side) []string {
	var hs []string
	for _, m := range s.sent {
		if bytes.Contains(m, []byte(`"connectionHello"`)) {
			hs = append(hs, string(m[1:]))
		}
	}
	return hs
}

func testCfg(id string) Config { return Config{LocalSHIPID: id, AutoAccept: true} }

func TestPairHandshakeDataClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		srv, cli  Config
		trust     func(p *pair) // on the server's NeedsTrust
		wantHello []string      // the server's hellos
		minTime   time.Duration // handshake done no earlier than
	}{
		{
			name: "auto-accept",
			srv:  testCfg("SRV"), cli: testCfg("CLI"),
			wantHello: []string{`{"connectionHello":[{"phase":"ready"},{"waiting":120000}]}`},
		},
		{
			name: "approved at once",
			srv:  Config{LocalSHIPID: "SRV"}, cli: testCfg("CLI"),
			trust: func(p *pair) { p.at(p.now, func(p *pair) { p.apply(p.srv, p.srv.m.Approve(p.now)) }) },
			wantHello: []string{
				`{"connectionHello":[{"phase":"pending"},{"waiting":120000}]}`,
				`{"connectionHello":[{"phase":"ready"},{"waiting":120000}]}`,
			},
		},
		{
			// Section 10, second trace, with W-15 s: the prolongation
			// request goes at 45 s, the approval comes at 50 s.
			name: "pending, prolongation, approved",
			srv:  Config{LocalSHIPID: "SRV", HelloInit: time.Minute},
			cli:  Config{LocalSHIPID: "CLI", AutoAccept: true, HelloInit: time.Minute},
			trust: func(p *pair) {
				p.at(t0.Add(50*time.Second), func(p *pair) { p.apply(p.srv, p.srv.m.Approve(p.now)) })
			},
			wantHello: []string{
				`{"connectionHello":[{"phase":"pending"},{"waiting":60000}]}`,
				`{"connectionHello":[{"phase":"pending"},{"prolongationRequest":true}]}`,
				`{"connectionHello":[{"phase":"ready"},{"waiting":60000}]}`,
			},
			minTime: 50 * time.Second,
		},
		{
			// Shortened timers: client waits 20 s, the server asks at
			// 20-5 = 15 s, 30 s and 45 s, the user approves at 50 s.
			name: "shortened timers, several prolongations",
			srv: Config{LocalSHIPID: "SRV", HelloInit: 20 * time.Second,
				HelloProlongThrInc: 10 * time.Second, HelloProlongWaitingGap: 5 * time.Second},
			cli: Config{LocalSHIPID: "CLI", AutoAccept: true, HelloInit: 20 * time.Second},
			trust: func(p *pair) {
				p.at(t0.Add(50*time.Second), func(p *pair) { p.apply(p.srv, p.srv.m.Approve(p.now)) })
			},
			wantHello: []string{
				`{"connectionHello":[{"phase":"pending"},{"waiting":20000}]}`,
				`{"connectionHello":[{"phase":"pending"},{"prolongationRequest":true}]}`,
				`{"connectionHello":[{"phase":"pending"},{"prolongationRequest":true}]}`,
				`{"connectionHello":[{"phase":"pending"},{"prolongationRequest":true}]}`,
				`{"connectionHello":[{"phase":"ready"},{"waiting":20000}]}`,
			},
			minTime: 50 * time.Second,
		},
		{
			name: "both pending, both approved",
			srv:  Config{LocalSHIPID: "SRV"}, cli: Config{LocalSHIPID: "CLI"},
			trust: func(p *pair) {
				p.at(t0.Add(10*time.Second), func(p *pair) { p.apply(p.srv, p.srv.m.Approve(p.now)) })
				p.at(t0.Add(20*time.Second), func(p *pair) { p.apply(p.cli, p.cli.m.Approve(p.now)) })
			},
			wantHello: []string{
				`{"connectionHello":[{"phase":"pending"},{"waiting":120000}]}`,
				`{"connectionHello":[{"phase":"ready"},{"waiting":120000}]}`,
			},
			minTime: 20 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t, tt.srv, tt.cli)
			if tt.trust != nil {
				tt.trust(p)
			}
			p.run(p.bothComplete)
			if got := p.now.Sub(t0); got < tt.minTime {
				t.Errorf("complete after %v, want >= %v", got, tt.minTime)
			}
			if !equalStrings(hellos(p.srv), tt.wantHello) {
				t.Errorf("server hellos:\n%q\nwant\n%q", hellos(p.srv), tt.wantHello)
			}
			if p.srv.asked != !tt.srv.AutoAccept || p.cli.asked != !tt.cli.AutoAccept {
				t.Errorf("NeedsTrust: server %v client %v", p.srv.asked, p.cli.asked)
			}
			if p.srv.peerID != "CLI" || p.cli.peerID != "SRV" {
				t.Errorf("peer ids: server sees %q, client sees %q", p.srv.peerID, p.cli.peerID)
			}

			// Data both ways.
			for i, s := range []*side{p.cli, p.srv, p.cli} {
				payload := json.RawMessage(`{"datagram":[{"header":[{"msgCounter":` + string(rune('1'+i)) + `}]}]}`)
				outs, err := s.m.SendData(p.now, payload)
				if err != nil {
					t.Fatal(err)
				}
				p.apply(s, outs)
				p.run(func() bool { return len(p.other(s).inbox) == 0 })
				got := p.other(s).deliver
				if len(got) == 0 || !bytes.Equal(got[len(got)-1], payload) {
					t.Fatalf("delivered %s, want %s", got, payload)
				}
			}

			// Close announce and confirm: the client closes at once on the
			// confirm, the server CloseWait later.
			start := p.now
			p.apply(p.cli, p.cli.m.Close(p.now, eebus.CloseRemovedConnection))
			p.run(p.bothClosed)
			for _, s := range []*side{p.cli, p.srv} {
				if s.close.Code != CodeClose || s.close.Reason != "close" || s.close.Err != nil {
					t.Errorf("%s close %+v", s.name, *s.close)
				}
				if s.m.State() != Closed {
					t.Errorf("%s state %v", s.name, s.m.State())
				}
			}
			if p.cli.closeAt != start || p.srv.closeAt != start.Add(DefaultCloseWait) {
				t.Errorf("closes at %v and %v", p.cli.closeAt.Sub(start), p.srv.closeAt.Sub(start))
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPairReject(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{LocalSHIPID: "SRV"}, testCfg("CLI"))
	p.at(t0.Add(5*time.Second), func(p *pair) { p.apply(p.srv, p.srv.m.Reject(p.now)) })
	p.run(p.bothClosed)
	for _, s := range []*side{p.srv, p.cli} {
		if s.close.Code != CodeNodeRejected || s.close.Reason != ReasonNodeRejected || !errors.Is(s.close.Err, ErrRejected) {
			t.Errorf("%s close %+v", s.name, *s.close)
		}
		if got := s.closeAt.Sub(t0); got != 6*time.Second {
			t.Errorf("%s closed at %v, want 6s (reject + AbortDelay)", s.name, got)
		}
	}
	want := `{"connectionHello":[{"phase":"aborted"}]}`
	if hs := hellos(p.srv); hs[len(hs)-1] != want {
		t.Errorf("server's last hello %s", hs[len(hs)-1])
	}
}

// Without an answer from the user the pending hello goes on: the server
// asks for prolongation 15 s before the client's waiting runs out, the
// client grants it every time.
func TestPairPendingUndecided(t *testing.T) {
	t.Parallel()
	p := newPair(t, Config{LocalSHIPID: "SRV", HelloInit: time.Minute},
		Config{LocalSHIPID: "CLI", AutoAccept: true, HelloInit: time.Minute})
	p.run(func() bool { return p.now.Sub(t0) >= 10*time.Minute })
	if p.srv.m.State() != HelloPendingListen || p.cli.m.State() != HelloReadyListen {
		t.Fatalf("states %v %v", p.srv.m.State(), p.cli.m.State())
	}
	if n := len(hellos(p.srv)); n != 1+14 { // at 45 s, 90 s, ... 630 s (the step past 10 min)
		t.Errorf("server sent %d hellos", n)
	}
}
