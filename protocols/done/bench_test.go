package done

import (
	"context"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

var typicalPub = []byte(`{"op":"pub","ch":"sensors/temp","data":{"t":21.5,"rh":40,"pad":"0123456789012345678901234567890123456789012345678901234567890123456789"},"seq":123456,"qos":1}`)

// BenchmarkDecodePub is the decode of a typical pub alone.
func BenchmarkDecodePub(b *testing.B) {
	var m inbound
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalPub)))
	for b.Loop() {
		if err := decode(typicalPub, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeAck is the encode of the ack a pub gets.
func BenchmarkEncodeAck(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAck(buf[:0], 123456)
	}
}

// discardOutlet acknowledges every frame at once and drops what is sent.
type discardOutlet struct{}

func (discardOutlet) Attach(protocols.Device) error { return nil }
func (discardOutlet) Send(protocols.Message) error  { return nil }
func (discardOutlet) Close(int, string)             {}
func (discardOutlet) Publish(f protocols.Frame) error {
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

// BenchmarkSessionPub is a whole pub through a session: decode, checks,
// dedup window, frame, ack.
func BenchmarkSessionPub(b *testing.B) {
	p := New(DefaultConfig())
	s, err := p.NewSession(context.Background(), protocols.SessionInfo{ID: "bench", MaxMessage: 1 << 16}, discardOutlet{})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.OnMessage(protocols.Message{Type: protocols.Text, Data: []byte(`{"op":"hello","id":"bench-1"}`)}); err != nil {
		b.Fatal(err)
	}
	// Each iteration needs a new seq, or it would be a duplicate.
	msgs := make([][]byte, 4096)
	for i := range msgs {
		msgs[i] = []byte(`{"op":"pub","ch":"sensors/temp","data":{"t":21.5,"rh":40},"seq":` + itoa(i+1) + `}`)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%len(msgs) == 0 { // new seqs for the next round
			b.StopTimer()
			for j := range msgs {
				msgs[j] = []byte(`{"op":"pub","ch":"sensors/temp","data":{"t":21.5,"rh":40},"seq":` + itoa(i+j+1) + `}`)
			}
			b.StartTimer()
		}
		if err := s.OnMessage(protocols.Message{Type: protocols.Text, Data: msgs[i%len(msgs)]}); err != nil {
			b.Fatal(err)
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
