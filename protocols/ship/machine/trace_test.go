package machine

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/eebus"
)

// traceMsg is one line of a golden trace of the eebus package.
type traceMsg struct {
	from  string // "client" or "server"
	frame []byte
}

func readTrace(t *testing.T, name string) []traceMsg {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "eebus", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs []traceMsg
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		from, msg, ok := strings.Cut(line, " -> ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		if msg == "00 00" {
			msgs = append(msgs, traceMsg{from, eebus.CMI()})
			continue
		}
		typ, body, _ := strings.Cut(msg, " ")
		b, err := strconv.ParseUint(typ, 10, 8)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		msgs = append(msgs, traceMsg{from, eebus.Encode(eebus.MessageType(b), []byte(body))})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestTraceReplay plays the peer of section 10's first trace, byte for
// byte, against a machine in either role, and checks that the machine's
// messages are the trace's, in the trace's order.
func TestTraceReplay(t *testing.T) {
	t.Parallel()
	for _, role := range []Role{Server, Client} {
		t.Run(role.String(), func(t *testing.T) {
			t.Parallel()
			trace := readTrace(t, "trace-autoaccept.txt")
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
			for i, msg := range trace {
				now = now.Add(time.Millisecond)
				if msg.from != me {
					take(m.Receive(now, msg.frame))
					lastRecv = now
					if msg.frame[0] == byte(eebus.TypeData) {
						lastData = msg.frame
					}
					continue
				}
				if len(queue) == 0 { // the application's turn
					switch eebus.MessageType(msg.frame[0]) {
					case eebus.TypeData:
						var d eebus.Data
						if err := eebus.Unmarshal(msg.frame[1:], &d); err != nil {
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
					t.Fatalf("line %d: machine sent nothing, trace has %q", i+1, msg.frame)
				}
				if !bytes.Equal(queue[0], msg.frame) {
					t.Fatalf("line %d: machine sent\n%q\ntrace has\n%q", i+1, queue[0], msg.frame)
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
