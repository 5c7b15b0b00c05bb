package gateway

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestFrameGuard feeds byte streams to the guard split at every point and
// checks that it passes exactly the bytes before the offending one, and
// fails with the right code, however the stream is chopped.
func TestFrameGuard(t *testing.T) {
	t.Parallel()
	ok := textFrame("hello").encode()
	tests := []struct {
		name    string
		deflate bool
		limit   int64
		stream  [][]byte // the frames; the violation, if any, is in the last
		at      int      // offset of the offending byte in the last frame; -1: valid
		code    int
	}{
		{"valid frames", false, 0, [][]byte{ok, pingFrame("p").encode(), textFrame("a").more().encode(),
			pongFrame("").encode(), contFrame("b").encode(), closeFrame(1000, "bye").encode()}, -1, 0},
		{"anything after a valid close", false, 0, [][]byte{closeFrame(1000, "").encode(), {0xff, 0xff, 0xff}}, -1, 0},
		{"reserved opcode", false, 0, [][]byte{ok, opFrame(3, "").encode()}, 0, 1002},
		{"RSV2", false, 0, [][]byte{ok, textFrame("x").withRSV(2).encode()}, 0, 1002},
		{"RSV1 without deflate", false, 0, [][]byte{textFrame("x").withRSV(4).encode()}, 0, 1002},
		{"RSV1 with deflate", true, 0, [][]byte{textFrame("x").withRSV(4).encode()}, -1, 0},
		{"RSV1 on a continuation", true, 0, [][]byte{textFrame("x").withRSV(4).more().encode(), contFrame("y").withRSV(4).encode()}, 0, 1002},
		{"RSV1 on a ping", true, 0, [][]byte{pingFrame("x").withRSV(4).encode()}, 0, 1002},
		{"fragmented ping", false, 0, [][]byte{pingFrame("x").more().encode()}, 0, 1002},
		{"continuation without a message", false, 0, [][]byte{ok, contFrame("x").encode()}, 0, 1002},
		{"new message inside a fragmented one", false, 0, [][]byte{textFrame("x").more().encode(), binaryFrame(nil).encode()}, 0, 1002},
		{"unmasked", false, 0, [][]byte{ok, {0x81, 0x01, 'x'}}, 1, 1002},
		{"ping over 125 bytes", false, 0, [][]byte{pingFrame(strings.Repeat("x", 126)).encode()}, 1, 1002},
		{"close with 1 byte", false, 0, [][]byte{ok, {0x88, 0x81, 1, 2, 3, 4, 'a'}}, 1, 1002},
		{"64-bit length with the top bit", false, 0, [][]byte{{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}}, 2, 1002},
		{"over the limit in the 7-bit length", false, 4, [][]byte{textFrame("12345").encode()}, 1, 1009},
		{"over the limit in the 16-bit length", false, 200, [][]byte{textFrame(strings.Repeat("x", 201)).encode()}, 3, 1009},
		{"over the limit across fragments", false, 6, [][]byte{textFrame("1234").more().encode(), contFrame("567").encode()}, 1, 1009},
		{"at the limit", false, 5, [][]byte{textFrame("12").more().encode(), pingFrame("ping is not counted").encode(), contFrame("345").encode()}, -1, 0},
		{"limit counts each message afresh", false, 5, [][]byte{textFrame("12345").encode(), textFrame("12345").encode()}, -1, 0},
		// Close payloads: the violation is held back at the byte that
		// shows it, so gorilla never has the whole close frame.
		{"invalid close code", false, 0, [][]byte{closeFrame(1005, "").encode()}, 7, 1002},
		{"invalid UTF-8 in the close reason", false, 0, [][]byte{closeFrame(1000, "ab\xffcd").encode()}, 10, 1002},
		{"close reason ending mid-character", false, 0, [][]byte{closeFrame(1000, "ab\xe2\x82").encode()}, 11, 1002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream := bytes.Join(tt.stream, nil)
			want := len(stream)
			if tt.at >= 0 {
				want = len(stream) - len(tt.stream[len(tt.stream)-1]) + tt.at
			}
			for split := 0; split <= len(stream); split++ {
				g := newFrameGuard(tt.limit, tt.deflate)
				passed := 0
				var got *wireError
				for _, piece := range [][]byte{stream[:split], stream[split:]} {
					n, err := g.scan(piece)
					passed += n
					if err != nil {
						got = err
						break
					}
				}
				if passed != want || (got == nil) != (tt.at < 0) || (got != nil && got.code != tt.code) {
					t.Fatalf("split at %d: passed %d bytes, error %v; want %d bytes, code %d", split, passed, got, want, tt.code)
				}
			}
		})
	}
}

// TestWireConnRead: the bytes before a violation are returned, the
// violation on the next Read, and for ever after.
func TestWireConnRead(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer client.Close()
	w := &wireConn{Conn: server, guard: newFrameGuard(0, false)}
	defer w.Close()
	good := textFrame("hello").encode()
	go func() { _, _ = client.Write(append(append([]byte{}, good...), opFrame(3, "").encode()...)) }()
	r := bufio.NewReader(w)
	got := make([]byte, len(good))
	if _, err := r.Read(got); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read %x %v, want the valid frame", got, err)
	}
	for range 2 {
		_, err := r.ReadByte()
		if we, ok := err.(*wireError); !ok || we.code != 1002 {
			t.Fatalf("read error %v, want the violation", err)
		}
	}
}

// FuzzFrameGuard: however a stream is split, the guard passes the same
// bytes and finds the same violation, and never more than it was given.
func FuzzFrameGuard(f *testing.F) {
	f.Add(textFrame("hello").encode(), uint16(3), false)
	f.Add(append(textFrame("a").more().encode(), closeFrame(1000, "ok").encode()...), uint16(7), false)
	f.Add(compressed(textFrame("deflated")).encode(), uint16(1), true)
	f.Add([]byte{0x88, 0x81, 1, 2, 3, 4, 'a'}, uint16(2), false)
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(5), false)
	f.Fuzz(func(t *testing.T, stream []byte, split uint16, deflate bool) {
		whole := newFrameGuard(1<<20, deflate)
		n, err := whole.scan(stream)
		if n > len(stream) || (err == nil) != (n == len(stream)) {
			t.Fatalf("scan passed %d of %d bytes with error %v", n, len(stream), err)
		}
		at := int(split) % (len(stream) + 1)
		pieces := newFrameGuard(1<<20, deflate)
		m, err2 := pieces.scan(stream[:at])
		if err2 == nil {
			var k int
			k, err2 = pieces.scan(stream[at:])
			m += k
		}
		if m != n || (err == nil) != (err2 == nil) || (err != nil && err.code != err2.code) {
			t.Fatalf("split at %d: %d bytes, %v; whole: %d bytes, %v", at, m, err2, n, err)
		}
	})
}

// writeCounter is a connection that records each Write it is given.
type writeCounter struct {
	net.Conn
	writes [][]byte
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// TestWireConnHold: writes made while the wire holds go out in one Write
// at release, in order, and the buffer is given back; past maxHeld they are
// written without waiting; otherwise every write goes out at once.
func TestWireConnHold(t *testing.T) {
	under := &writeCounter{}
	w := &wireConn{Conn: under}
	if _, err := w.Write([]byte("a")); err != nil || len(under.writes) != 1 {
		t.Fatalf("a write without holding: %v, %d writes", err, len(under.writes))
	}
	w.hold()
	for _, p := range []string{"b", "cc", "ddd"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("held write %q: %d, %v", p, n, err)
		}
	}
	if len(under.writes) != 1 {
		t.Fatalf("%d writes while holding, want none yet", len(under.writes)-1)
	}
	if err := w.release(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 || string(under.writes[1]) != "bccddd" {
		t.Fatalf("after release: %q, want one write of bccddd", under.writes[1:])
	}
	if w.out != nil {
		t.Error("the connection kept its write buffer after release")
	}

	under.writes = nil
	w.hold()
	big := bytes.Repeat([]byte("x"), maxHeld)
	for _, p := range [][]byte{[]byte("e"), big, []byte("f")} {
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.release(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, p := range under.writes {
		if len(p) > maxHeld {
			t.Errorf("a write of %d bytes, over maxHeld", len(p))
		}
		got = append(got, p...)
	}
	if want := append(append([]byte("e"), big...), 'f'); !bytes.Equal(got, want) || len(under.writes) != 3 {
		t.Errorf("%d writes of %d bytes, want the %d bytes in order in 3", len(under.writes), len(got), len(want))
	}
}
