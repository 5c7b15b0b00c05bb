package router

import (
	"io"
	"log/slog"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

type countingSink struct{ n int }

func (s *countingSink) Deliver(f protocols.Frame) error {
	s.n++
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

type countingReceiver struct{ n int }

func (r *countingReceiver) Accept(protocols.Frame) error { r.n++; return nil }

// BenchmarkPublish is a frame through the router: straight to the sink, and
// by a route that fans out to MQTT and a local device with a JSON pick.
func BenchmarkPublish(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	frame := protocols.Frame{Device: "kitchen-1", Channel: "sensors/temp", Payload: []byte(`{"t":21.5,"rh":40}`), QoS: 1, Ack: func(error) {}}
	b.Run("no-routes", func(b *testing.B) {
		r := New(&countingSink{}, log)
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Publish(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fan-out", func(b *testing.B) {
		r := New(&countingSink{}, log)
		lcd := &countingReceiver{}
		routes := []Route{
			{Devices: []string{"garage-*"}, To: []string{TargetMQTT}},
			{Devices: []string{"kitchen-*"}, Channels: []string{"sensors/+"}, To: []string{TargetMQTT, "device:lcd"}, Pick: "t"},
		}
		if err := r.SetRoutes(routes, func(string) (Receiver, bool) { return lcd, true }); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := r.Publish(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}
