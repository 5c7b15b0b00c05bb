package pluginpb

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"google.golang.org/protobuf/proto"
)

func testActions(n, size int) *Actions {
	a := &Actions{}
	for i := range n {
		a.Actions = append(a.Actions, &Action{Session: uint64(i%3 + 1), Action: &Action_Publish{Publish: &Frame{
			Id: uint64(i), Channel: "state", Payload: bytes.Repeat([]byte{byte(i)}, size), Qos: 1, WantsAck: true}}})
	}
	return a
}

// Frames written one after the other come back whole and in order, however
// the reads cut the bytes up, and the reader's buffer is reused.
func TestLinkFramesRoundTrip(t *testing.T) {
	sent := []*Actions{testActions(1, 0), testActions(50, 200), {}, testActions(3, 70_000)}
	var wire []byte
	for _, m := range sent {
		var err error
		if wire, err = AppendFrame(wire, m); err != nil {
			t.Fatal(err)
		}
	}
	readers := []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(wire)},
		{"a byte at a time", iotest.OneByteReader(bytes.NewReader(wire))},
		{"in halves", iotest.HalfReader(bytes.NewReader(wire))},
	}
	for _, tt := range readers {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(tt.r, 16)
			var buf []byte
			for i, want := range sent {
				got := ActionsFromVTPool()
				var err error
				if buf, err = ReadFrame(r, buf, got); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !proto.Equal(got, want) {
					t.Fatalf("frame %d differs", i)
				}
				got.ReturnToVTPool()
			}
			if _, err := ReadFrame(r, buf, new(Actions)); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestLinkFrameErrors(t *testing.T) {
	whole, err := AppendFrame(nil, testActions(2, 10))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		wire []byte
		want error
	}{
		{"cut in the length", []byte{0x80}, io.ErrUnexpectedEOF},
		{"cut in the message", whole[:len(whole)-1], io.ErrUnexpectedEOF},
		{"over the limit", binary.AppendUvarint(nil, MaxFrame+1), ErrFrameTooLarge},
		{"not protobuf", append(binary.AppendUvarint(nil, 2), 0xff, 0xff), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.wire)), nil, new(Actions))
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// A frame beyond keptBuffer gets a buffer of its own, so that one large
// message does not pin its size for the link's life.
func TestLinkLargeFrameNotKept(t *testing.T) {
	wire, err := AppendFrame(nil, testActions(1, keptBuffer+1))
	if err != nil {
		t.Fatal(err)
	}
	small := make([]byte, 0, 1024)
	buf, err := ReadFrame(bufio.NewReader(bytes.NewReader(wire)), small, new(Actions))
	if err != nil {
		t.Fatal(err)
	}
	if cap(buf) != cap(small) {
		t.Fatalf("the reader kept a %d-byte buffer", cap(buf))
	}
	if Reuse(make([]byte, keptBuffer+1)) != nil {
		t.Fatal("Reuse kept a buffer over keptBuffer")
	}
}

// FuzzReadFrame: whatever the bytes, reading frames ends with an error or
// with messages that survive another trip through the framing; it never
// panics. Seeds are in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	for _, m := range []*Events{
		{Events: []*Event{{Session: 1, Event: &Event_Open{Open: &Open{Protocol: "done", Window: 8}}}}},
		{Events: []*Event{{Session: 2, Event: &Event_Message{Message: &Message{Type: MessageType_MESSAGE_TYPE_TEXT, Data: []byte(`{"type":"pub"}`)}}}}},
	} {
		wire, err := AppendFrame(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		r := bufio.NewReader(bytes.NewReader(wire))
		var buf []byte
		for {
			got := new(Events)
			var err error
			if buf, err = ReadFrame(r, buf, got); err != nil {
				return
			}
			again, err := AppendFrame(nil, got)
			if err != nil {
				t.Fatalf("a decoded frame does not encode: %v", err)
			}
			back := new(Events)
			if _, err := ReadFrame(bufio.NewReader(bytes.NewReader(again)), nil, back); err != nil || !proto.Equal(got, back) {
				t.Fatalf("a decoded frame does not survive another trip: %v", err)
			}
		}
	})
}
