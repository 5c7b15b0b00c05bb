package plugins

import (
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

func TestFaultBook(t *testing.T) {
	const window = 10 * time.Minute
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dev := culprit{device: "dev-1", addr: "192.0.2.1"}
	threeFaults := []time.Duration{0, time.Minute, 2 * time.Minute}
	tests := []struct {
		name    string
		faults  []time.Duration // when faults are blamed on dev
		at      time.Duration   // when who connects
		who     culprit
		refused bool
	}{
		{"two faults are tolerated", threeFaults[:2], 3 * time.Minute, dev, false},
		{"the third within the window refuses", threeFaults, 3 * time.Minute, dev, true},
		{"refused for the window", threeFaults, 2*time.Minute + window - time.Second, dev, true},
		{"then admitted again", threeFaults, 2*time.Minute + window, dev, false},
		{"faults older than the window are forgotten", []time.Duration{0, 6 * time.Minute, 11 * time.Minute}, 11 * time.Minute, dev, false},
		{"the device from another address", threeFaults, 3 * time.Minute, culprit{device: "dev-1", addr: "198.51.100.7"}, true},
		{"another device from its address", threeFaults, 3 * time.Minute, culprit{device: "dev-2", addr: "192.0.2.1"}, false},
		{"its address before attaching", threeFaults, 3 * time.Minute, culprit{addr: "192.0.2.1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newFaultBook(3, window)
			for _, at := range tt.faults {
				b.add(dev, t0.Add(at))
			}
			if _, refused := b.refusedUntil(tt.who, t0.Add(tt.at)); refused != tt.refused {
				t.Errorf("refused %v, want %v", refused, tt.refused)
			}
		})
	}
}

func TestFailureBlame(t *testing.T) {
	a, b, c, d := culprit{device: "a"}, culprit{device: "b"}, culprit{addr: "192.0.2.3"}, culprit{device: "d"}
	tests := []struct {
		name     string
		suspects []culprit
		devices  bool // blamed on the suspects, not the plugin
	}{
		{"no device event in flight", nil, false},
		{"one device", []culprit{a}, true},
		{"as many devices as MaxSuspects", []culprit{a, b, c}, true},
		{"more: no single device is the cause", []culprit{a, b, c, d}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := &supervised{host: &Host{opts: Options{MaxSuspects: 3}}, log: quietLog(), faults: newFaultBook(1, time.Hour)}
			if got := p.account(failure{reason: "test", suspects: tt.suspects}); got != tt.devices {
				t.Errorf("blamed on devices: %v, want %v", got, tt.devices)
			}
			for _, s := range tt.suspects {
				if _, refused := p.faults.refusedUntil(s, time.Now()); refused != tt.devices {
					t.Errorf("%s refused: %v, want %v", s.key(), refused, tt.devices)
				}
			}
		})
	}
}

func TestPoisonDeviceIsRefused(t *testing.T) {
	tests := []struct {
		name    string
		from    string // the poisoner's address
		attach  bool   // it attaches first: refused by id at Attach, else by address at the upgrade
		poison  string
		crashes bool // the poison ends the process, not just the session
		logged  string
	}{
		{"panic after attaching", "127.0.0.1", true, "!panic", false, "device=dev-poison"},
		{"crash after attaching", "127.0.0.1", true, "!exit", true, "device=dev-poison"},
		{"panic before attaching", "127.0.0.2", false, "!panic", false, "address=127.0.0.2"},
	}
	const rounds, limit = 20, 3
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logged := captureLog()
			// Were the faults the plugin's, MaxFailures would disable it.
			opts := Options{Log: log, RestartMin: 10 * time.Millisecond, RestartMax: 10 * time.Millisecond,
				MaxFailures: 1, StableAfter: time.Hour, DeviceFaults: limit}
			e, err := newEnv(t, opts, []string{"test-echo"}, spec(t, testPlugin))
			if err != nil {
				t.Fatal(err)
			}
			var bystander *websocket.Conn
			if !tt.crashes {
				bystander = e.dial(t, "/", "test-echo")
				send(t, bystander, "!attach dev-ok")
				expect(t, bystander, "attached dev-ok")
			}
			refused := 0
			for range rounds {
				pid := e.host.Status()[0].PID
				ws := e.dialFrom(t, tt.from, "/", "test-echo")
				first := tt.poison
				if tt.attach {
					first = "!attach dev-poison"
				}
				_ = ws.WriteMessage(websocket.TextMessage, []byte(first)) // a refused connection may be gone already
				_ = ws.SetReadDeadline(time.Now().Add(testWait))
				_, msg, err := ws.ReadMessage()
				if ce, ok := errors.AsType[*websocket.CloseError](err); ok && ce.Code == protocols.ClosePolicyViolation {
					refused++
					ws.Close()
					continue
				}
				if tt.attach {
					if err != nil || string(msg) != "attached dev-poison" {
						t.Fatalf("attach: %q %v", msg, err)
					}
					send(t, ws, tt.poison)
					expectClose(t, ws, protocols.CloseInternalError)
				} else if ce, ok := errors.AsType[*websocket.CloseError](err); !ok || ce.Code != protocols.CloseInternalError {
					t.Fatalf("poison answered %q %v, want close 1011", msg, err)
				}
				ws.Close()
				if tt.crashes {
					waitFor(t, "the plugin to restart", func() bool {
						s := e.host.Status()[0]
						return s.State == "running" && s.PID != pid
					})
				}
			}
			if refused != rounds-limit {
				t.Errorf("refused %d of %d connections, want all after the first %d", refused, rounds, limit)
			}
			if s := e.host.Status()[0]; s.State != "running" {
				t.Fatalf("plugin %s after one device's poison", s.State)
			}
			if !logged(`msg="device refused: it keeps causing plugin faults"`) || !logged(tt.logged) {
				t.Errorf("the refusal was not logged with %s", tt.logged)
			}
			if bystander == nil {
				bystander = e.dial(t, "/", "test-echo")
				send(t, bystander, "!attach dev-ok")
				expect(t, bystander, "attached dev-ok")
			}
			send(t, bystander, "still served")
			expect(t, bystander, "still served")
		})
	}
}
