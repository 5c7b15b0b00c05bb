package machine

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/eebus"
	"github.com/wsgate/wsgate/protocols/ship/shiptest"
)

// TestTraceReplay plays the peer of section 10's first trace, byte for
// byte, against a machine in either role, and checks that the machine's
// messages are the trace's, in the trace's order.
func TestTraceReplay(t *testing.T) {
	t.Parallel()
	for _, role := range []Role{Server, Client} {
		t.Run(role.String(), func(t *testing.T) {
			t.Parallel()
			trace := shiptest.ReadTrace(t, filepath.Join("..", "eebus", "testdata", "trace-autoaccept.txt"))
			me := role.String()
			id := map[Role]string{Server: "SRV-Model-1", Client: "CLI-Model-2"}[role]
			m, err := New(role, Config{LocalSHIPID: id, AutoAccept: true, HelloInit: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			var queue [][]byte
			var delivered [][]byte
			var closes []Close
			take := func(outs []Output) {
				for _, o := range outs {
					switch o := o.(type) {
					case Send:
						queue = append(queue, o.Message)
					case Deliver:
						delivered = append(delivered, o.Payload)
					case Close:
						closes = append(closes, o)
					case Warning:
						t.Errorf("warning: %v", o.Err)
					}
				}
			}
			take(m.Start(now))
			var lastData []byte
			var lastRecv time.Time
			for _, msg := range trace {
				now = now.Add(time.Millisecond)
				if msg.Sender != me {
					take(m.Receive(now, msg.Msg))
					lastRecv = now
					if msg.Msg[0] == byte(eebus.TypeData) {
						lastData = msg.Msg
					}
					continue
				}
				if len(queue) == 0 { // the application's turn
					switch eebus.MessageType(msg.Msg[0]) {
					case eebus.TypeData:
						var d eebus.Data
						if err := eebus.Unmarshal(msg.Msg[1:], &d); err != nil {
							t.Fatal(err)
						}
						outs, err := m.SendData(now, d.Payload)
						if err != nil {
							t.Fatal(err)
						}
						take(outs)
					case eebus.TypeEnd:
						take(m.Close(now, eebus.CloseRemovedConnection))
					}
				}
				if len(queue) == 0 {
					t.Fatalf("%s: machine sent nothing, trace has %q", msg.Where, msg.Msg)
				}
				if !bytes.Equal(queue[0], msg.Msg) {
					t.Fatalf("%s: machine sent\n%q\ntrace has\n%q", msg.Where, queue[0], msg.Msg)
				}
				queue = queue[1:]
			}
			if len(queue) != 0 {
				t.Errorf("machine sent more: %q", queue)
			}
			if role == Server {
				var d eebus.Data
				if err := eebus.Unmarshal(lastData[1:], &d); err != nil {
					t.Fatal(err)
				}
				if len(delivered) != 1 || !bytes.Equal(delivered[0], d.Payload) {
					t.Errorf("delivered %q", delivered)
				}
				if len(closes) != 0 {
					t.Fatalf("closed early: %+v", closes)
				}
				dl, ok := m.NextDeadline()
				if !ok || dl.Sub(lastRecv) != DefaultCloseWait {
					t.Fatalf("deadline %v %v", dl.Sub(lastRecv), ok)
				}
				take(m.Tick(dl))
			}
			if len(closes) != 1 || closes[0].Code != 4001 || closes[0].Reason != "close" {
				t.Errorf("closes %+v", closes)
			}
			if m.State() != Closed {
				t.Errorf("state %v", m.State())
			}
		})
	}
}
