package gateway

// A conformance suite for the WebSocket layer, independent of any external
// tool: raw frames over TCP against the built-in echo protocol, in the
// categories of the Autobahn|Testsuite (docs/CONFORMANCE.md). Each case
// names the Autobahn case it follows; the expectations are the strict ones:
// every echo and pong in order, the server's close frame with the right
// code right after them, nothing else, and the server closing TCP after the
// closing handshake.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/echo"
)

// startEchoGateway serves the real echo protocol on /echo, as
// docs/CONFORMANCE.md configures it (fallback included), with a 1 MiB
// message limit unless mod changes the options. It returns the address.
func startEchoGateway(t *testing.T, mod func(*Options)) string {
	t.Helper()
	opts := baseOptions()
	opts.Listeners = []Listener{{Address: "127.0.0.1:0", Path: "/echo", Protocols: []string{echo.Name}, Fallback: echo.Name}}
	opts.MaxMessage = 1 << 20
	if mod != nil {
		mod(&opts)
	}
	registry, err := protocols.NewRegistry([]string{echo.Name})
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Register(echo.Protocol{}, "builtin"); err != nil {
		t.Fatal(err)
	}
	log := testLogger()
	srv, err := New(opts, registry, router.New(&recordingSink{frames: make(chan protocols.Frame, 1)}, log), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := (&testGateway{srv: srv}).shutdown(testWait); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv.Addrs()[0].String()
}

// frame is a client frame to send.
type frame struct {
	fin  bool
	rsv  byte // RSV bits in place: 0x40 is RSV1
	op   byte
	data []byte
}

func textFrame(s string) frame        { return frame{fin: true, op: opText, data: []byte(s)} }
func binaryFrame(b []byte) frame      { return frame{fin: true, op: opBinary, data: b} }
func contFrame(s string) frame        { return frame{fin: true, op: opContinuation, data: []byte(s)} }
func pingFrame(s string) frame        { return frame{fin: true, op: opPing, data: []byte(s)} }
func pongFrame(s string) frame        { return frame{fin: true, op: opPong, data: []byte(s)} }
func opFrame(op byte, s string) frame { return frame{fin: true, op: op, data: []byte(s)} }

// closeFrame carries code and reason, whatever they are (gorilla's
// FormatCloseMessage would leave out 1005).
func closeFrame(code int, reason string) frame {
	return frame{fin: true, op: opClose, data: append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)}
}

// more makes f a non-final fragment.
func (f frame) more() frame { f.fin = false; return f }

func (f frame) withRSV(bits byte) frame { f.rsv = bits << 4; return f }

// encode masks f as a client must.
func (f frame) encode() []byte {
	b0 := f.rsv | f.op
	if f.fin {
		b0 |= 0x80
	}
	buf := []byte{b0}
	switch n := len(f.data); {
	case n < 126:
		buf = append(buf, 0x80|byte(n))
	case n <= 0xFFFF:
		buf = binary.BigEndian.AppendUint16(append(buf, 0x80|126), uint16(n))
	default:
		buf = binary.BigEndian.AppendUint64(append(buf, 0x80|127), uint64(n))
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	buf = append(buf, mask[:]...)
	for i, b := range f.data {
		buf = append(buf, b^mask[i%4])
	}
	return buf
}

// How a step's bytes are written: all at once, frame by frame, or in
// pieces of n bytes (1: octet-wise), as Autobahn's chop sizes.
const (
	chopNone   = 0
	chopFrames = -1
	chopOctets = 1
)

// event is what the server sends: a whole data message, a pong, a ping or
// a close frame.
type event struct {
	op         byte
	data       string
	code       int  // close: the status code, 1005 for none
	compressed bool // a data message with RSV1
	wire       int  // a data message's payload bytes on the wire
}

func (e event) String() string {
	data := e.data
	if len(data) > 40 {
		data = fmt.Sprintf("%.40q... (%d bytes)", data, len(data))
	} else {
		data = fmt.Sprintf("%q", data)
	}
	switch e.op {
	case opText:
		return "text " + data
	case opBinary:
		return "binary " + data
	case opPing:
		return "ping " + data
	case opPong:
		return "pong " + data
	case opClose:
		return fmt.Sprintf("close %d %s", e.code, data)
	}
	return fmt.Sprintf("op %d %s", e.op, data)
}

func textEvent(s string) event   { return event{op: opText, data: s} }
func binaryEvent(s string) event { return event{op: opBinary, data: s} }
func pongEvent(s string) event   { return event{op: opPong, data: s} }

// step sends frames (then raw bytes) and expects the events want back, in
// order, before the next step.
type step struct {
	frames []frame
	raw    []byte
	chop   int
	want   []event
}

// wireCase is one conformance case. After its steps the server must send
// a close frame with code close and nothing before it: when the steps sent
// a close frame this is the answer (1005: an empty one); otherwise close is
// the code the server fails the connection with, or 0 when nothing is wrong
// and the client closes with 1000, which the server must echo.
type wireCase struct {
	id    string // the Autobahn case it follows
	name  string
	steps []step
	close int
}

// sender writes a step's bytes to the server, ignoring write errors: a
// server that fails the connection may close TCP before everything is
// written, and what it sent back is what counts.
func sendStep(rc *rawConn, s step) {
	var pieces [][]byte
	var all []byte
	for _, f := range s.frames {
		if s.chop == chopFrames {
			pieces = append(pieces, f.encode())
			continue
		}
		all = append(all, f.encode()...)
	}
	all = append(all, s.raw...)
	if s.chop > 0 {
		for len(all) > 0 {
			n := min(s.chop, len(all))
			pieces = append(pieces, all[:n])
			all = all[n:]
		}
	} else if len(all) > 0 {
		pieces = append(pieces, all)
	}
	for _, p := range pieces {
		if _, err := rc.nc.Write(p); err != nil {
			return
		}
	}
}

// eventReader reads events, reassembling fragmented messages and inflating
// compressed ones.
type eventReader struct {
	t  *testing.T
	rc *rawConn
}

func (r *eventReader) next() event {
	r.t.Helper()
	var msg *event
	for {
		f, err := r.rc.read()
		if err != nil {
			if msg != nil {
				r.t.Fatalf("read: %v inside a fragmented message", err)
			}
			r.t.Fatalf("read: %v, want an event", err)
		}
		switch {
		case f.op == opClose:
			code, reason := f.closeCode()
			if len(f.payload) == 1 {
				r.t.Fatalf("the server sent a close frame with a 1-byte payload")
			}
			return event{op: opClose, code: code, data: reason}
		case f.op == opPing || f.op == opPong:
			return event{op: f.op, data: string(f.payload)} // may come between fragments
		case f.op == opContinuation:
			if msg == nil {
				r.t.Fatalf("continuation frame without a message from the server")
			}
			if f.rsv != 0 {
				r.t.Fatalf("continuation frame with RSV bits %#x", f.rsv)
			}
		default:
			if msg != nil {
				r.t.Fatalf("data frame (op %d) inside a fragmented message from the server", f.op)
			}
			if f.rsv&^0x40 != 0 {
				r.t.Fatalf("data frame with RSV bits %#x", f.rsv)
			}
			msg = &event{op: f.op, compressed: f.rsv&0x40 != 0}
		}
		msg.data += string(f.payload)
		msg.wire += len(f.payload)
		if !f.fin {
			continue
		}
		if msg.compressed {
			data, err := inflate([]byte(msg.data))
			if err != nil {
				r.t.Fatalf("inflate the server's message: %v", err)
			}
			msg.data = string(data)
		}
		return *msg
	}
}

// run plays c against the echo endpoint at addr.
func (c wireCase) run(t *testing.T, rc *rawConn) {
	t.Helper()
	r := &eventReader{t: t, rc: rc}
	sentClose := false
	for i, s := range c.steps {
		sendStep(rc, s)
		for _, f := range s.frames {
			sentClose = sentClose || f.op == opClose
		}
		for j, want := range s.want {
			if got := r.next(); !sameEvent(got, want) {
				t.Fatalf("step %d, event %d: got %v, want %v", i, j, got, want)
			}
		}
	}
	code := c.close
	if !sentClose && code == 0 {
		rc.writeClose(websocket.CloseNormalClosure, "")
		code = websocket.CloseNormalClosure
	}
	got := r.next()
	if got.op != opClose || got.code != code {
		t.Fatalf("got %v, want the server's close frame with %d", got, code)
	}
	if !sentClose && c.close != 0 {
		// Answer the server's close, as Autobahn does.
		_, _ = rc.nc.Write(closeFrame(code, "").encode())
	}
	rc.expectEOF()
}

func sameEvent(got, want event) bool {
	return got.op == want.op && got.data == want.data && (want.op != opClose || got.code == want.code)
}

// wireCases follow Autobahn cases 1 to 7 and 10 (limits and compression
// have tables of their own). They run against startEchoGateway's defaults.
func wireCases() []wireCase {
	hello := "Hello, world!"
	bin := string([]byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff})
	p125 := strings.Repeat("*", 125)
	p126 := strings.Repeat("*", 126)
	echoOf := func(f frame) step { return step{frames: []frame{f}, want: []event{{op: f.op, data: string(f.data)}}} }
	text := func(n int) string { return strings.Repeat("*", n) }
	blob := func(n int) []byte { return bytes.Repeat([]byte{0xfe}, n) }

	cases := []wireCase{
		// 1.* Framing: payload lengths at the 7, 16 and 64 bit encodings.
		{id: "1.1.1", name: "empty text", steps: []step{echoOf(textFrame(""))}},
		{id: "1.1.2", name: "text 125", steps: []step{echoOf(textFrame(text(125)))}},
		{id: "1.1.3", name: "text 126", steps: []step{echoOf(textFrame(text(126)))}},
		{id: "1.1.4", name: "text 127", steps: []step{echoOf(textFrame(text(127)))}},
		{id: "1.1.5", name: "text 128", steps: []step{echoOf(textFrame(text(128)))}},
		{id: "1.1.6", name: "text 65535", steps: []step{echoOf(textFrame(text(65535)))}},
		{id: "1.1.7", name: "text 65536", steps: []step{echoOf(textFrame(text(65536)))}},
		{id: "1.1.8", name: "text 65536 in chops of 997", steps: []step{{frames: []frame{textFrame(text(65536))}, chop: 997, want: []event{textEvent(text(65536))}}}},
		{id: "1.2.1", name: "empty binary", steps: []step{echoOf(binaryFrame(nil))}},
		{id: "1.2.2", name: "binary 125", steps: []step{echoOf(binaryFrame(blob(125)))}},
		{id: "1.2.3", name: "binary 126", steps: []step{echoOf(binaryFrame(blob(126)))}},
		{id: "1.2.6", name: "binary 65535", steps: []step{echoOf(binaryFrame(blob(65535)))}},
		{id: "1.2.7", name: "binary 65536", steps: []step{echoOf(binaryFrame(blob(65536)))}},
		{id: "1.2.8", name: "binary 65536 in chops of 997", steps: []step{{frames: []frame{binaryFrame(blob(65536))}, chop: 997, want: []event{binaryEvent(string(blob(65536)))}}}},
		{id: "RFC 5.1", name: "unmasked client frame", steps: []step{{raw: []byte{0x81, 0x02, 'h', 'i'}}}, close: 1002},
		{id: "RFC 5.2", name: "64-bit length with the top bit set", steps: []step{{raw: []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}}}, close: 1002},

		// 2.* Pings and pongs.
		{id: "2.1", name: "ping without payload", steps: []step{{frames: []frame{pingFrame("")}, want: []event{pongEvent("")}}}},
		{id: "2.2", name: "ping with text payload", steps: []step{{frames: []frame{pingFrame(hello)}, want: []event{pongEvent(hello)}}}},
		{id: "2.3", name: "ping with binary payload", steps: []step{{frames: []frame{pingFrame(bin)}, want: []event{pongEvent(bin)}}}},
		{id: "2.4", name: "ping with 125 bytes", steps: []step{{frames: []frame{pingFrame(p125)}, want: []event{pongEvent(p125)}}}},
		{id: "2.5", name: "ping with 126 bytes", steps: []step{{frames: []frame{pingFrame(p126)}}}, close: 1002},
		{id: "2.6", name: "ping with 125 bytes, octet-wise", steps: []step{{frames: []frame{pingFrame(p125)}, chop: chopOctets, want: []event{pongEvent(p125)}}}},
		{id: "2.7", name: "unsolicited pong without payload", steps: []step{{frames: []frame{pongFrame("")}}}},
		{id: "2.8", name: "unsolicited pong with payload", steps: []step{{frames: []frame{pongFrame("unsolicited pong payload")}}}},
		{id: "2.9", name: "unsolicited pong, then ping", steps: []step{{frames: []frame{pongFrame("unsolicited pong payload"), pingFrame("ping payload")}, want: []event{pongEvent("ping payload")}}}},
		{id: "2.10", name: "10 pings", steps: []step{tenPings(chopNone)}},
		{id: "2.11", name: "10 pings, frame by frame", steps: []step{tenPings(chopFrames)}},

		// 3.* Reserved bits: nothing negotiated, so any RSV bit fails the
		// connection; what came before is answered first.
		{id: "3.1", name: "text with RSV1", steps: []step{{frames: []frame{textFrame(hello).withRSV(1)}}}, close: 1002},
		{id: "3.2", name: "text, text with RSV2, ping", steps: []step{{frames: []frame{textFrame(hello), textFrame(hello).withRSV(2), pingFrame("")}, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "3.3", name: "text, text with RSV3, ping, frame by frame", steps: []step{{frames: []frame{textFrame(hello), textFrame(hello).withRSV(3), pingFrame("")}, chop: chopFrames, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "3.4", name: "text, text with RSV4, ping, octet-wise", steps: []step{{frames: []frame{textFrame(hello), textFrame(hello).withRSV(4), pingFrame("")}, chop: chopOctets, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "3.5", name: "binary with RSV5", steps: []step{{frames: []frame{binaryFrame([]byte(bin)).withRSV(5)}}}, close: 1002},
		{id: "3.6", name: "ping with RSV6", steps: []step{{frames: []frame{pingFrame(hello).withRSV(6)}}}, close: 1002},
		{id: "3.7", name: "close with RSV7", steps: []step{{frames: []frame{closeFrame(1000, "").withRSV(7)}}}, close: 1002},

		// 4.* Opcodes.
		{id: "4.1.1", name: "opcode 3", steps: []step{{frames: []frame{opFrame(3, "")}}}, close: 1002},
		{id: "4.1.2", name: "opcode 4 with payload", steps: []step{{frames: []frame{opFrame(4, "reserved opcode payload")}}}, close: 1002},
		{id: "4.1.3", name: "text, opcode 5, ping", steps: []step{{frames: []frame{textFrame(hello), opFrame(5, ""), pingFrame("")}, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "4.1.4", name: "text, opcode 6 with payload, ping", steps: []step{{frames: []frame{textFrame(hello), opFrame(6, "reserved"), pingFrame("")}, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "4.1.5", name: "text, opcode 7 with payload, ping, frame by frame", steps: []step{{frames: []frame{textFrame(hello), opFrame(7, "reserved"), pingFrame("")}, chop: chopFrames, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "4.2.1", name: "opcode 11", steps: []step{{frames: []frame{opFrame(11, "")}}}, close: 1002},
		{id: "4.2.2", name: "opcode 12 with payload", steps: []step{{frames: []frame{opFrame(12, "reserved")}}}, close: 1002},
		{id: "4.2.3", name: "text, opcode 13, ping", steps: []step{{frames: []frame{textFrame(hello), opFrame(13, ""), pingFrame("")}, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "4.2.4", name: "text, opcode 14 with payload, ping", steps: []step{{frames: []frame{textFrame(hello), opFrame(14, "reserved"), pingFrame("")}, want: []event{textEvent(hello)}}}, close: 1002},
		{id: "4.2.5", name: "text, opcode 15 with payload, ping, frame by frame", steps: []step{{frames: []frame{textFrame(hello), opFrame(15, "reserved"), pingFrame("")}, chop: chopFrames, want: []event{textEvent(hello)}}}, close: 1002},

		// 5.* Fragmentation.
		{id: "5.1", name: "fragmented ping", steps: []step{{frames: []frame{pingFrame("frag1").more(), contFrame("frag2")}}}, close: 1002},
		{id: "5.2", name: "fragmented pong", steps: []step{{frames: []frame{pongFrame("frag1").more(), contFrame("frag2")}}}, close: 1002},
		{id: "5.3", name: "text in 2 fragments", steps: []step{{frames: []frame{textFrame("frag1").more(), contFrame("frag2")}, want: []event{textEvent("frag1frag2")}}}},
		{id: "5.4", name: "text in 2 fragments, octet-wise", steps: []step{{frames: []frame{textFrame("frag1").more(), contFrame("frag2")}, chop: chopOctets, want: []event{textEvent("frag1frag2")}}}},
		{id: "5.5", name: "text in 2 fragments, frame by frame", steps: []step{{frames: []frame{textFrame("frag1").more(), contFrame("frag2")}, chop: chopFrames, want: []event{textEvent("frag1frag2")}}}},
		{id: "5.6", name: "text in 2 fragments, ping between", steps: []step{{frames: []frame{textFrame("frag1").more(), pingFrame("ping payload"), contFrame("frag2")}, want: []event{pongEvent("ping payload"), textEvent("frag1frag2")}}}},
		{id: "5.7", name: "text in 2 fragments, ping between, octet-wise", steps: []step{{frames: []frame{textFrame("frag1").more(), pingFrame("ping payload"), contFrame("frag2")}, chop: chopOctets, want: []event{pongEvent("ping payload"), textEvent("frag1frag2")}}}},
		{id: "5.8", name: "text in 2 fragments, ping between, frame by frame", steps: []step{{frames: []frame{textFrame("frag1").more(), pingFrame("ping payload"), contFrame("frag2")}, chop: chopFrames, want: []event{pongEvent("ping payload"), textEvent("frag1frag2")}}}},
		{id: "5.9", name: "final continuation without a message, then text", steps: []step{{frames: []frame{contFrame("non-continuation payload"), textFrame(hello)}}}, close: 1002},
		{id: "5.10", name: "same, octet-wise", steps: []step{{frames: []frame{contFrame("non-continuation payload"), textFrame(hello)}, chop: chopOctets}}, close: 1002},
		{id: "5.11", name: "same, frame by frame", steps: []step{{frames: []frame{contFrame("non-continuation payload"), textFrame(hello)}, chop: chopFrames}}, close: 1002},
		{id: "5.12", name: "continuation without a message, then text", steps: []step{{frames: []frame{contFrame("non-continuation payload").more(), textFrame(hello)}}}, close: 1002},
		{id: "5.13", name: "same, octet-wise", steps: []step{{frames: []frame{contFrame("non-continuation payload").more(), textFrame(hello)}, chop: chopOctets}}, close: 1002},
		{id: "5.14", name: "same, frame by frame", steps: []step{{frames: []frame{contFrame("non-continuation payload").more(), textFrame(hello)}, chop: chopFrames}}, close: 1002},
		{id: "5.15", name: "text in 2 fragments, then a continuation without a message", steps: []step{{frames: []frame{textFrame("fragment1").more(), contFrame("fragment2"), contFrame("fragment3").more(), textFrame("fragment4")}, want: []event{textEvent("fragment1fragment2")}}}, close: 1002},
		{id: "5.16", name: "continuation first, then a fragmented text, twice", steps: []step{{frames: []frame{contFrame("fragment1").more(), textFrame("fragment2").more(), contFrame("fragment3"), contFrame("fragment1").more(), textFrame("fragment2").more(), contFrame("fragment3")}}}, close: 1002},
		{id: "5.17", name: "final continuation first, then a fragmented text, twice", steps: []step{{frames: []frame{contFrame("fragment1"), textFrame("fragment2").more(), contFrame("fragment3"), contFrame("fragment1"), textFrame("fragment2").more(), contFrame("fragment3")}}}, close: 1002},
		{id: "5.18", name: "text fragment followed by another text start", steps: []step{{frames: []frame{textFrame("fragment1").more(), textFrame("fragment2")}}}, close: 1002},
		{id: "5.19", name: "5 fragments with 2 pings between", steps: []step{
			{frames: []frame{textFrame("fragment1").more(), contFrame("fragment2").more(), pingFrame("pongme 1!")}, chop: chopFrames, want: []event{pongEvent("pongme 1!")}},
			{frames: []frame{contFrame("fragment3").more(), contFrame("fragment4").more(), pingFrame("pongme 2!"), contFrame("fragment5")}, chop: chopFrames,
				want: []event{pongEvent("pongme 2!"), textEvent("fragment1fragment2fragment3fragment4fragment5")}},
		}},
		{id: "5.20", name: "binary in 5 fragments with 2 pings between, in one write", steps: []step{
			{frames: []frame{binaryFrame([]byte("b1")).more(), contFrame("b2").more(), pingFrame("p1"), contFrame("b3").more(), pingFrame("p2"), contFrame("b4").more(), contFrame("b5")},
				want: []event{pongEvent("p1"), pongEvent("p2"), binaryEvent("b1b2b3b4b5")}},
		}},

		// 6.1-6.4 UTF-8 in fragments (6.5-6.23 are utf8Sequences).
		{id: "6.1.1", name: "empty text", steps: []step{echoOf(textFrame(""))}},
		{id: "6.1.2", name: "3 empty fragments", steps: []step{{frames: []frame{textFrame("").more(), contFrame("").more(), contFrame("")}, want: []event{textEvent("")}}}},
		{id: "6.1.3", name: "fragments empty, non-empty, empty", steps: []step{{frames: []frame{textFrame("").more(), contFrame("middle frame payload").more(), contFrame("")}, want: []event{textEvent("middle frame payload")}}}},
		{id: "6.2.2", name: "valid UTF-8 in 2 fragments split at a code point", steps: []step{{frames: []frame{textFrame("Hello-µ@ßö").more(), contFrame("äüàá-UTF-8!!")}, want: []event{textEvent("Hello-µ@ßöäüàá-UTF-8!!")}}}},
		{id: "6.2.3", name: "valid UTF-8 in 1-byte fragments", steps: []step{fragmentsOf("Hello-µ@ßöäüàá-UTF-8!!", true)}},
		{id: "6.2.4", name: "κόσμε in 1-byte fragments", steps: []step{fragmentsOf(kosme, true)}},
		{id: "6.3.1", name: "invalid UTF-8 in one frame", steps: []step{{frames: []frame{textFrame(kosme + "\xed\xa0\x80" + "edited")}}}, close: 1007},
		// The rest is never sent: the close must come at the invalid byte.
		{id: "6.3.2", name: "invalid UTF-8 in 1-byte fragments, failed at the invalid one", steps: []step{fragmentsOf((kosme + "\xed\xa0\x80" + "edited")[:len(kosme)+2], false)}, close: 1007},
		// 6.4.*: fail fast. A ping after the valid part shows it was accepted.
		{id: "6.4.1", name: "fail fast: invalid second of 3 frames", steps: []step{
			{frames: []frame{textFrame(kosme).more(), pingFrame("probe")}, want: []event{pongEvent("probe")}},
			{frames: []frame{contFrame("\xf4\x90\x80\x80").more()}},
		}, close: 1007},
		{id: "6.4.2", name: "fail fast: frame of a single invalid byte", steps: []step{
			{frames: []frame{textFrame(kosme + "\xf4").more(), pingFrame("probe")}, want: []event{pongEvent("probe")}},
			{frames: []frame{contFrame("\x90").more()}},
		}, close: 1007},
		{id: "6.4.3", name: "fail fast: invalid second of 3 chops of one frame", steps: chopsOf(kosme, "\xf4\x90\x80\x80", "edited"), close: 1007},
		{id: "6.4.4", name: "fail fast: invalid single-byte chop of one frame", steps: chopsOf(kosme+"\xf4", "\x90", "\x80\x80edited"), close: 1007},

		// 7.* Closing: the server echoes a valid close code and closes TCP
		// after the handshake; replies to what came before go out first.
		{id: "7.1.1", name: "text, then close", steps: []step{{frames: []frame{textFrame(hello), closeFrame(1000, "")}, want: []event{textEvent(hello)}}}, close: 1000},
		{id: "7.1.2", name: "two closes", steps: []step{{frames: []frame{closeFrame(1000, ""), closeFrame(1000, "")}}}, close: 1000},
		{id: "7.1.3", name: "ping after close", steps: []step{{frames: []frame{closeFrame(1000, ""), pingFrame(hello)}}}, close: 1000},
		{id: "7.1.4", name: "text after close", steps: []step{{frames: []frame{closeFrame(1000, ""), textFrame(hello)}}}, close: 1000},
		{id: "7.1.5", name: "fragment, close, fragment", steps: []step{{frames: []frame{textFrame("fragment1").more(), closeFrame(1000, ""), contFrame("fragment2")}}}, close: 1000},
		{id: "7.1.6", name: "256 KiB text, close, ping", steps: []step{{frames: []frame{textFrame(text(256 << 10)), closeFrame(1000, ""), pingFrame(hello)}, want: []event{textEvent(text(256 << 10))}}}, close: 1000},
		{id: "7.3.1", name: "close with an empty payload", steps: []step{{frames: []frame{{fin: true, op: opClose}}}}, close: 1005},
		{id: "7.3.2", name: "close with a 1-byte payload", steps: []step{{frames: []frame{{fin: true, op: opClose, data: []byte("a")}}}}, close: 1002},
		{id: "7.3.2", name: "close with a 1-byte payload, octet-wise", steps: []step{{frames: []frame{{fin: true, op: opClose, data: []byte("a")}}, chop: chopOctets}}, close: 1002},
		{id: "7.3.3", name: "close with a code only", steps: []step{{frames: []frame{closeFrame(1000, "")}}}, close: 1000},
		{id: "7.3.4", name: "close with a code and a reason", steps: []step{{frames: []frame{closeFrame(1000, hello)}}}, close: 1000},
		{id: "7.3.5", name: "close with a 123-byte reason", steps: []step{{frames: []frame{closeFrame(1000, text(123))}}}, close: 1000},
		{id: "7.3.6", name: "close with a 124-byte reason", steps: []step{{frames: []frame{closeFrame(1000, text(124))}}}, close: 1002},
		{id: "7.5.1", name: "close with an invalid UTF-8 reason", steps: []step{{frames: []frame{closeFrame(1000, kosme+"\xed\xa0\x80"+"edited")}}}, close: 1002},
		{id: "7.5.1", name: "close reason ending mid-character", steps: []step{{frames: []frame{closeFrame(1000, "ab\xce")}}}, close: 1002},
		{id: "7.13.1", name: "close code 5000", steps: []step{{frames: []frame{closeFrame(5000, "")}}}, close: 1002},
		{id: "7.13.2", name: "close code 65535", steps: []step{{frames: []frame{closeFrame(65535, "")}}}, close: 1002},

		// 10.* Auto-fragmentation.
		{id: "10.1.1", name: "text 65536 in fragments of 1300", steps: []step{fragmentsOfSize(text(65536), 1300)}},
	}
	// 7.7.*: valid codes are echoed.
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999} {
		cases = append(cases, wireCase{id: "7.7.x", name: fmt.Sprintf("valid close code %d", code),
			steps: []step{{frames: []frame{closeFrame(code, "")}}}, close: code})
	}
	// 7.9.*: invalid codes fail with 1002.
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999} {
		cases = append(cases, wireCase{id: "7.9.x", name: fmt.Sprintf("invalid close code %d", code),
			steps: []step{{frames: []frame{closeFrame(code, "")}}}, close: 1002})
	}
	return cases
}

// kosme is "κόσμε", Autobahn's sample of valid multi-byte UTF-8.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

func tenPings(chop int) step {
	s := step{chop: chop}
	for i := range 10 {
		payload := fmt.Sprintf("payload-%d", i)
		s.frames = append(s.frames, pingFrame(payload))
		s.want = append(s.want, pongEvent(payload))
	}
	return s
}

// fragmentsOf sends text in 1-byte fragments; complete sends the final one
// and expects the echo.
func fragmentsOf(text string, complete bool) step {
	s := fragmentsOfSize(text, 1)
	if !complete {
		s.frames[len(s.frames)-1].fin = false
		s.want = nil
	}
	return s
}

func fragmentsOfSize(text string, size int) step {
	var s step
	for i := 0; i < len(text) || i == 0; i += size {
		f := contFrame(text[i:min(i+size, len(text))])
		if i == 0 {
			f.op = opText
		}
		f.fin = i+size >= len(text)
		s.frames = append(s.frames, f)
	}
	s.want = []event{textEvent(text)}
	return s
}

// chopsOf sends one text frame holding parts in 3 writes, as Autobahn's
// 6.4.3: the first part, then the second, which must get the close; the
// third is never sent.
func chopsOf(parts ...string) []step {
	wire := textFrame(strings.Join(parts, "")).encode()
	header := len(wire) - len(strings.Join(parts, ""))
	first := header + len(parts[0])
	return []step{
		{raw: wire[:first]},
		{raw: wire[first : first+len(parts[1])]},
	}
}

// TestConformance runs the wire cases against one echo gateway.
func TestConformance(t *testing.T) {
	t.Parallel()
	addr := startEchoGateway(t, nil)
	for _, c := range wireCases() {
		t.Run(c.id+" "+c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, rawUpgrade(t, addr, "/echo", "echo"))
		})
	}
}

// utf8Sequences are Autobahn's 6.5-6.23 payloads (from Markus Kuhn's
// UTF-8 decoder test), valid or not.
func utf8Sequences() []struct {
	valid   bool
	payload string
} {
	type seq = struct {
		valid   bool
		payload string
	}
	seqs := []seq{
		// 6.5 Some valid UTF-8 sequences.
		{true, "hello\x24world"}, {true, "hello\xc2\xa2world"}, {true, "hello\xe2\x82\xacworld"},
		{true, "hello\xf0\xa4\xad\xa2world"}, {true, kosme},
		// 6.7 First possible sequence of a certain length.
		{true, "\x00"}, {true, "\xc2\x80"}, {true, "\xe0\xa0\x80"}, {true, "\xf0\x90\x80\x80"},
		// 6.8 First possible sequence length 5/6 (invalid code points).
		{false, "\xf8\x88\x80\x80\x80"}, {false, "\xfc\x84\x80\x80\x80\x80"},
		// 6.9 Last possible sequence of a certain length.
		{true, "\x7f"}, {true, "\xdf\xbf"}, {true, "\xef\xbf\xbf"}, {true, "\xf4\x8f\xbf\xbf"},
		// 6.10 Last possible sequence length 4/5/6 (invalid code points).
		{false, "\xf7\xbf\xbf\xbf"}, {false, "\xfb\xbf\xbf\xbf\xbf"}, {false, "\xfd\xbf\xbf\xbf\xbf\xbf"},
		// 6.11 Other boundary conditions.
		{true, "\xed\x9f\xbf"}, {true, "\xee\x80\x80"}, {true, "\xef\xbf\xbd"}, {true, "\xf4\x8f\xbf\xbf"},
		{false, "\xf4\x90\x80\x80"},
		// 6.12 Unexpected continuation bytes.
		{false, "\x80"}, {false, "\xbf"}, {false, "\x80\xbf"}, {false, "\x80\xbf\x80"},
		{false, "\x80\xbf\x80\xbf"}, {false, "\x80\xbf\x80\xbf\x80"}, {false, "\x80\xbf\x80\xbf\x80\xbf"},
		// 6.14 Sequences with the last continuation byte missing.
		{false, "\xc0"}, {false, "\xe0\x80"}, {false, "\xf0\x80\x80"}, {false, "\xf8\x80\x80\x80"},
		{false, "\xfc\x80\x80\x80\x80"}, {false, "\xdf"}, {false, "\xef\xbf"}, {false, "\xf7\xbf\xbf"},
		{false, "\xfb\xbf\xbf\xbf"}, {false, "\xfd\xbf\xbf\xbf\xbf"},
		// 6.16 Impossible bytes.
		{false, "\xfe"}, {false, "\xff"}, {false, "\xfe\xfe\xff\xff"},
		// 6.17 Overlong ASCII.
		{false, "\xc0\xaf"}, {false, "\xe0\x80\xaf"}, {false, "\xf0\x80\x80\xaf"},
		{false, "\xf8\x80\x80\x80\xaf"}, {false, "\xfc\x80\x80\x80\x80\xaf"},
		// 6.18 Maximum overlong sequences.
		{false, "\xc1\xbf"}, {false, "\xe0\x9f\xbf"}, {false, "\xf0\x8f\xbf\xbf"},
		{false, "\xf8\x87\xbf\xbf\xbf"}, {false, "\xfc\x83\xbf\xbf\xbf\xbf"},
		// 6.19 Overlong NUL.
		{false, "\xc0\x80"}, {false, "\xe0\x80\x80"}, {false, "\xf0\x80\x80\x80"},
		{false, "\xf8\x80\x80\x80\x80"}, {false, "\xfc\x80\x80\x80\x80\x80"},
		// 6.20 Single UTF-16 surrogates.
		{false, "\xed\xa0\x80"}, {false, "\xed\xad\xbf"}, {false, "\xed\xae\x80"}, {false, "\xed\xaf\xbf"},
		{false, "\xed\xb0\x80"}, {false, "\xed\xbe\x80"}, {false, "\xed\xbf\xbf"},
		// 6.21 Paired UTF-16 surrogates.
		{false, "\xed\xa0\x80\xed\xb0\x80"}, {false, "\xed\xa0\x80\xed\xbf\xbf"}, {false, "\xed\xad\xbf\xed\xb0\x80"},
		{false, "\xed\xad\xbf\xed\xbf\xbf"}, {false, "\xed\xae\x80\xed\xb0\x80"}, {false, "\xed\xaf\xbf\xed\xbf\xbf"},
		// 6.22 Non-characters: valid UTF-8.
		{true, "\xef\xbf\xbe"}, {true, "\xef\xbf\xbf"}, {true, "\xf0\x9f\xbf\xbe"}, {true, "\xf0\x9f\xbf\xbf"},
		{true, "\xf3\xbf\xbf\xbe"}, {true, "\xf4\x8f\xbf\xbe"}, {true, "\xf4\x8f\xbf\xbf"},
		// 6.23 Unicode specials.
		{true, "\xef\xbf\xb9"}, {true, "\xef\xbf\xba"}, {true, "\xef\xbf\xbb"}, {true, "\xef\xbf\xbc"}, {true, "\xef\xbf\xbd"},
	}
	// 6.6 All prefixes of κόσμε.
	for i := 1; i <= len(kosme); i++ {
		valid := i == 2 || i == 5 || i == 7 || i == 9 || i == 11
		seqs = append(seqs, seq{valid, kosme[:i]})
	}
	// 6.13 Lonely start characters, each followed by a space.
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var b []byte
		for c := r[0]; c < r[1]; c++ {
			b = append(b, byte(c), ' ')
		}
		seqs = append(seqs, seq{false, string(b)})
	}
	// 6.15 Concatenation of incomplete sequences.
	seqs = append(seqs, seq{false, "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf"})
	return seqs
}

// TestConformanceUTF8 sends every sequence as one text frame and in 1-byte
// fragments: valid text is echoed, invalid text fails the connection with
// 1007.
func TestConformanceUTF8(t *testing.T) {
	t.Parallel()
	addr := startEchoGateway(t, nil)
	for i, s := range utf8Sequences() {
		for _, fragmented := range []bool{false, true} {
			c := wireCase{steps: []step{{frames: []frame{textFrame(s.payload)}}}}
			if fragmented {
				c.steps = []step{fragmentsOf(s.payload, true)}
			}
			if s.valid {
				c.steps[0].want = []event{textEvent(s.payload)}
			} else {
				c.steps[0].want = nil
				c.close = 1007
			}
			t.Run(fmt.Sprintf("%d %x fragmented=%v", i, s.payload, fragmented), func(t *testing.T) {
				t.Parallel()
				c.run(t, rawUpgrade(t, addr, "/echo", "echo"))
			})
		}
	}
}

// TestConformanceLimits follows the spirit of Autobahn 9.*: messages up to
// the configured limit are echoed, bigger ones fail with 1009 as soon as a
// frame header shows it, in one frame or across fragments.
func TestConformanceLimits(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	addr := startEchoGateway(t, func(o *Options) { o.MaxMessage = limit })
	header := func(b0 byte, n uint64) []byte { // a frame header only, payload never sent
		return append(binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, n), 1, 2, 3, 4)
	}
	cases := []wireCase{
		{id: "9.1", name: "text at the limit", steps: []step{{frames: []frame{textFrame(strings.Repeat("x", limit))}, want: []event{textEvent(strings.Repeat("x", limit))}}}},
		{id: "9.2", name: "binary at the limit in fragments", steps: []step{fragmentsOfBinary(limit, 4096)}},
		{id: "9.x", name: "frame header announcing one byte too many", steps: []step{{raw: header(0x82, limit+1)}}, close: 1009},
		{id: "9.x", name: "frame header announcing 2^62 bytes", steps: []step{{raw: header(0x81, 1<<62)}}, close: 1009},
		{id: "9.x", name: "fragments adding up to one byte too many", steps: []step{{frames: []frame{
			binaryFrame(make([]byte, limit/2)).more(), contFrame(strings.Repeat("y", limit/2)).more()}, raw: header(0x00, 1)}}, close: 1009},
		{id: "9.x", name: "ping between fragments of a message at the limit", steps: []step{{frames: []frame{
			textFrame(strings.Repeat("z", limit/2)).more(), pingFrame("probe"), contFrame(strings.Repeat("z", limit/2))},
			want: []event{pongEvent("probe"), textEvent(strings.Repeat("z", limit))}}}},
	}
	for _, c := range cases {
		t.Run(c.id+" "+c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, rawUpgrade(t, addr, "/echo", "echo"))
		})
	}
}

func fragmentsOfBinary(size, fragment int) step {
	data := bytes.Repeat([]byte{0xa5}, size)
	var s step
	for i := 0; i < size; i += fragment {
		f := contFrame(string(data[i:min(i+fragment, size)]))
		if i == 0 {
			f.op = opBinary
		}
		f.fin = i+fragment >= size
		s.frames = append(s.frames, f)
	}
	s.want = []event{binaryEvent(string(data))}
	return s
}

// TestConformanceLargeMessages echoes messages up to 16 MiB with the limit
// docs/CONFORMANCE.md configures (Autobahn 9.1.6 and 9.2.6).
func TestConformanceLargeMessages(t *testing.T) {
	t.Parallel()
	const size = 16 << 20
	// A hang guard, not a timing assertion: 32 MiB each way under the race
	// detector on a loaded 2-core machine take a while.
	const largeWait = 2 * time.Minute
	addr := startEchoGateway(t, func(o *Options) { o.MaxMessage, o.WriteTimeout = size, largeWait })
	d := websocket.Dialer{HandshakeTimeout: testWait, Subprotocols: []string{echo.Name}}
	ws, _, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for _, mt := range []int{websocket.BinaryMessage, websocket.TextMessage} {
		msg := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		_ = ws.SetWriteDeadline(time.Now().Add(largeWait))
		writeErr := make(chan error, 1)
		go func() { writeErr <- ws.WriteMessage(mt, msg) }()
		_ = ws.SetReadDeadline(time.Now().Add(largeWait))
		got, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read the echo: %v", err)
		}
		if err := <-writeErr; err != nil {
			t.Fatal(err)
		}
		if got != mt || !bytes.Equal(data, msg) {
			t.Fatalf("echo: type %d, %d bytes, want type %d, %d bytes", got, len(data), mt, len(msg))
		}
	}
}

// TestConformancePipelining: a client that writes many messages without
// waiting for their echoes, while reading them, gets every one back in
// order; the send queue (here very short) never cuts it off with 1008,
// because the gateway stops reading while the queue is half full
// (Autobahn 9.7 and 9.8 send one at a time; this is harder).
func TestConformancePipelining(t *testing.T) {
	t.Parallel()
	const n = 2000
	addr := startEchoGateway(t, func(o *Options) { o.SendQueue = 4 })
	d := websocket.Dialer{HandshakeTimeout: testWait, Subprotocols: []string{echo.Name}}
	ws, _, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	msg := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("message %d ", i), 1+i%50)) }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = ws.SetWriteDeadline(time.Now().Add(testWait))
		for i := range n {
			if err := ws.WriteMessage(websocket.TextMessage+i%2, msg(i)); err != nil {
				return // the reads below fail the test
			}
		}
	}()
	defer wg.Wait()
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	for i := range n {
		mt, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if mt != websocket.TextMessage+i%2 || !bytes.Equal(data, msg(i)) {
			t.Fatalf("message %d: type %d %.20q, want type %d %.20q", i, mt, data, websocket.TextMessage+i%2, msg(i))
		}
	}
}

// rawUpgradeExt performs an opening handshake on /echo offering the echo
// protocol and extensions (when not empty), and returns the connection and
// the Sec-WebSocket-Extensions values of the response.
func rawUpgradeExt(t *testing.T, addr, extensions string) (*rawConn, []string) {
	t.Helper()
	rc := dialRaw(t, addr)
	req := "GET /echo HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + sampleKey + "\r\nSec-WebSocket-Protocol: echo\r\n"
	if extensions != "" {
		req += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
	}
	if _, err := io.WriteString(rc.nc, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	return rc, resp.Header.Values("Sec-WebSocket-Extensions")
}

// deflateMessage compresses one message as permessage-deflate without
// context takeover sends it: a raw deflate stream, flushed, without the
// final 00 00 ff ff.
func deflateMessage(data []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	_, _ = w.Write(data)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

func inflate(data []byte) ([]byte, error) {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	defer r.Close()
	return io.ReadAll(r)
}

// compressed is f with its payload deflated and RSV1 set.
func compressed(f frame) frame {
	f.data = deflateMessage(f.data)
	f.rsv = 0x40
	return f
}

// compressedFragments deflates text and sends it in fragments of size bytes
// (Autobahn's auto-fragmentation): RSV1 on the first only.
func compressedFragments(text string, size int) []frame {
	data := deflateMessage([]byte(text))
	var frames []frame
	for i := 0; i < len(data); i += size {
		f := frame{op: opContinuation, data: data[i:min(i+size, len(data))], fin: i+size >= len(data)}
		if i == 0 {
			f.op, f.rsv = opText, 0x40
		}
		frames = append(frames, f)
	}
	return frames
}

// TestConformanceCompression follows Autobahn 12.* and 13.*: the offers of
// 13.1 to 13.7, each answered with a response that states the parameters,
// then compressed messages (whole and auto-fragmented, small and large,
// text and binary) echoed compressed when at least compress_min bytes.
func TestConformanceCompression(t *testing.T) {
	t.Parallel()
	const base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	addr := startEchoGateway(t, func(o *Options) { o.Listeners[0].Compression = true })
	offers := []struct {
		id, offer, response string
		huffman             bool // the client limited our window: no back-references
	}{
		{"13.1", "permessage-deflate; client_no_context_takeover; client_max_window_bits", base, false},
		{"13.2", "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover", base, false},
		{"13.3", "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8", base + "; server_max_window_bits=8", true},
		{"13.4", "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15", base + "; server_max_window_bits=15", false},
		{"13.5", "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8", base + "; server_max_window_bits=8", true},
		{"13.6", "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=15", base + "; server_max_window_bits=15", false},
		{"13.7", "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8, " +
			"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, permessage-deflate; client_no_context_takeover; client_max_window_bits",
			base + "; server_max_window_bits=8", true},
		{"12.1", "permessage-deflate", base, false},
		{"-", "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits=10", base, false},
	}
	json := strings.Repeat(`{"sensor":"kitchen","temperature":21.5,"humidity":40},`, 1000)
	for _, o := range offers {
		t.Run(o.id, func(t *testing.T) {
			t.Parallel()
			rc, exts := rawUpgradeExt(t, addr, o.offer)
			if len(exts) != 1 || exts[0] != o.response {
				t.Fatalf("Sec-WebSocket-Extensions %q, want %q", exts, o.response)
			}
			r := &eventReader{t: t, rc: rc}
			for _, size := range []int{16, 64, 255, 256, 1024, 4096, 16384, 32768, 40000} {
				msg := json[:size]
				for _, fragment := range []int{0, 256, 1024} {
					frames := []frame{compressed(textFrame(msg))}
					if fragment > 0 {
						frames = compressedFragments(msg, fragment)
					}
					sendStep(rc, step{frames: frames})
					got := r.next()
					if got.op != opText || got.data != msg {
						t.Fatalf("size %d fragment %d: got %v, want the text echoed", size, fragment, got)
					}
					if got.compressed != (size >= 256) {
						t.Errorf("size %d: echo compressed = %v, want %v (compress_min 256)", size, got.compressed, size >= 256)
					}
					// Huffman coding alone spends at least a bit a byte;
					// LZ77 squeezes this repetitive text far below that.
					if got.compressed && size >= 4096 && (got.wire >= size/8) != o.huffman {
						t.Errorf("size %d: %d bytes compressed, Huffman-only %v", size, got.wire, o.huffman)
					}
				}
			}
			// Binary, and an uncompressed message (RSV1 is per message).
			blob := bytes.Repeat([]byte{0, 1, 2, 3, 0xff}, 1000)
			sendStep(rc, step{frames: []frame{compressed(binaryFrame(blob)), binaryFrame(blob)}})
			for range 2 {
				if got := r.next(); got.op != opBinary || got.data != string(blob) {
					t.Fatalf("got %v, want the binary echoed", got)
				}
			}
			c := wireCase{} // the client closes; the server echoes and closes TCP
			c.run(t, rc)
		})
	}
}

// TestConformanceCompressionErrors: what permessage-deflate forbids or
// bounds fails the connection, compressed or not.
func TestConformanceCompressionErrors(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	addr := startEchoGateway(t, func(o *Options) {
		o.Listeners[0].Compression = true
		o.MaxMessage = limit
	})
	bomb := compressed(binaryFrame(make([]byte, 4<<20))) // 4 MiB of zeros in a few KiB
	if len(bomb.data) > limit {
		t.Fatalf("the bomb is %d bytes on the wire", len(bomb.data))
	}
	invalidText := compressed(textFrame(kosme + "\xed\xa0\x80" + "edited"))
	long := deflateMessage([]byte(strings.Repeat("a fairly compressible text, ", 200)))
	cutShort := long[:len(long)/2]
	// A stored block announcing 1000 bytes with 500: the inflater runs out
	// of input (io.ErrUnexpectedEOF) rather than finding it corrupt.
	storedCut := append([]byte{0x00, 0xe8, 0x03, 0x17, 0xfc}, make([]byte, 500)...)
	cases := []wireCase{
		{id: "RFC 7692 6.1", name: "RSV1 on a continuation frame", steps: []step{{frames: []frame{
			compressed(textFrame("fragment1")).more(), compressed(contFrame("fragment2"))}}}, close: 1002},
		{id: "RFC 7692 6.1", name: "RSV1 on a ping", steps: []step{{frames: []frame{pingFrame("x").withRSV(4)}}}, close: 1002},
		{id: "RFC 7692 6", name: "RSV2 still reserved", steps: []step{{frames: []frame{textFrame("x").withRSV(2)}}}, close: 1002},
		{id: "9.x", name: "decompression bomb", steps: []step{{frames: []frame{bomb}}}, close: 1009},
		{id: "9.x", name: "compressed message at the limit", steps: []step{{frames: []frame{compressed(binaryFrame(make([]byte, limit)))},
			want: []event{binaryEvent(string(make([]byte, limit)))}}}},
		{id: "6.x", name: "compressed text with invalid UTF-8", steps: []step{{frames: []frame{invalidText}}}, close: 1007},
		{id: "-", name: "corrupt deflate data", steps: []step{{frames: []frame{{fin: true, rsv: 0x40, op: opBinary, data: []byte{0xff, 0xff, 0xff, 0xff}}}}}, close: 1007},
		{id: "-", name: "deflate data cut short", steps: []step{{frames: []frame{{fin: true, rsv: 0x40, op: opText, data: cutShort}}}}, close: 1007},
		{id: "-", name: "stored deflate block cut short", steps: []step{{frames: []frame{{fin: true, rsv: 0x40, op: opBinary, data: storedCut}}}}, close: 1007},
	}
	for _, c := range cases {
		t.Run(c.id+" "+c.name, func(t *testing.T) {
			t.Parallel()
			rc, exts := rawUpgradeExt(t, addr, "permessage-deflate")
			if len(exts) != 1 {
				t.Fatalf("compression not negotiated: %q", exts)
			}
			c.run(t, rc)
		})
	}
	t.Run("not negotiated", func(t *testing.T) {
		t.Parallel()
		rc, exts := rawUpgradeExt(t, addr, "")
		if len(exts) != 0 {
			t.Fatalf("Sec-WebSocket-Extensions %q without an offer", exts)
		}
		wireCase{steps: []step{{frames: []frame{compressed(textFrame("x"))}}}, close: 1002}.run(t, rc)
	})
}

// TestConformanceCompressionGorilla: a gorilla client with compression, as
// Autobahn 12.* does with its own: many messages of the 12.* sizes, each
// echoed intact, then a clean close.
func TestConformanceCompressionGorilla(t *testing.T) {
	t.Parallel()
	addr := startEchoGateway(t, func(o *Options) { o.Listeners[0].Compression = true })
	d := websocket.Dialer{HandshakeTimeout: testWait, Subprotocols: []string{echo.Name}, EnableCompression: true}
	ws, resp, err := d.Dial("ws://"+addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(got, "permessage-deflate") {
		t.Fatalf("compression not negotiated: %q", got)
	}
	text := strings.Repeat("Habe nun, ach! Philosophie, Juristerei und Medizin, und leider auch Theologie ", 2000)
	_ = ws.SetReadDeadline(time.Now().Add(testWait))
	for i, size := range []int{16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072} {
		for j := range 10 {
			msg := []byte(text[(i+j)*7 : (i+j)*7+size])
			mt := websocket.TextMessage + j%2
			ws.EnableWriteCompression(j%3 != 0)
			if err := ws.WriteMessage(mt, msg); err != nil {
				t.Fatal(err)
			}
			got, data, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("size %d: %v", size, err)
			}
			if got != mt || !bytes.Equal(data, msg) {
				t.Fatalf("size %d: echo type %d, %d bytes, want type %d, %d bytes", size, got, len(data), mt, len(msg))
			}
		}
	}
	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(testWait)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("after close: %v, want the close echoed", err)
	}
}

// TestConformanceTLS runs cases over wss://: the guard sits on the TLS
// connection (it must see plaintext frames), and after the closing
// handshake the server ends TLS (close_notify) before TCP.
func TestConformanceTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile := selfSignedCert(t)
	addr := startEchoGateway(t, func(o *Options) {
		o.Listeners[0].TLSCert, o.Listeners[0].TLSKey = certFile, keyFile
		o.Listeners[0].Compression = true
	})
	pick := map[string]bool{"1.1.7": true, "3.2": true, "5.15": true, "6.4.1": true, "7.1.1": true, "7.3.2": true, "7.9.x": true}
	for _, c := range wireCases() {
		if !pick[c.id] {
			continue
		}
		t.Run(c.id+" "+c.name, func(t *testing.T) {
			t.Parallel()
			nc, err := tls.DialWithDialer(&net.Dialer{Timeout: testWait}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			_ = nc.SetDeadline(time.Now().Add(testWait))
			rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
			req := "GET /echo HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + sampleKey + "\r\nSec-WebSocket-Protocol: echo\r\n\r\n"
			if _, err := io.WriteString(nc, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(rc.br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			c.run(t, rc)
		})
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to PEM
// files.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wsgate test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
