package done

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

// FuzzDecode feeds arbitrary bytes, as a text message, to a session that has
// completed its hello. The session must not panic; it either goes on or asks
// for one of the close codes the spec gives to bad input; everything it sends
// is a gateway message and everything it publishes is JSON on a channel of
// the device's own subtree. The corpus is testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"op":"pub","ch":"telemetry","data":{"t":21.5,"rh":40},"seq":1}`))
	f.Add([]byte(`{"op":"res","id":"c1","ok":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, envelope := range []bool{false, true} {
			s, out := started(t, func(c *Config) {
				c.Envelope = envelope
				c.MaxInflight = 2
			})
			// A pending command, so that res can match.
			if err := s.OnCommand(protocols.Command{Device: "d1", ID: "c1", Name: "set-interval", Args: json.RawMessage(`{"s":60}`)}); err != nil {
				t.Fatal(err)
			}
			out.takeSent(t)

			for range 2 { // twice: the second copy is a repeat
				err := s.OnMessage(protocols.Message{Type: protocols.Text, Data: data})
				if err != nil {
					var ce *protocols.CloseError
					if !errors.As(err, &ce) {
						t.Fatalf("OnMessage(%q) = %v, not a close error", data, err)
					}
					switch ce.Code {
					case protocols.CloseInvalidPayload, protocols.ClosePolicyViolation, protocols.CloseUnsupportedData:
					default:
						t.Fatalf("OnMessage(%q) closes with %d", data, ce.Code)
					}
				}
				for i, f := range out.takeFrames() {
					if !ValidChannel(f.Channel) && f.Channel != protocols.ResultChannel("set-interval") {
						t.Fatalf("OnMessage(%q) published on channel %q", data, f.Channel)
					}
					if !json.Valid(f.Payload) {
						t.Fatalf("OnMessage(%q) published %q, not JSON", data, f.Payload)
					}
					if f.QoS > 1 {
						t.Fatalf("OnMessage(%q) published with QoS %d", data, f.QoS)
					}
					if f.Ack != nil {
						if i%2 == 0 {
							f.Ack(nil)
						} else {
							f.Ack(protocols.ErrBusy)
						}
					}
				}
				out.takeSent(t) // checks every message sent
				if err != nil {
					break
				}
			}
			s.Close(nil)
			out.takeFrames()
			out.takeSent(t)
		}
	})
}

// FuzzHello feeds arbitrary bytes as the first message of a session. The
// session must not panic; it attaches with a description only what
// validates, answers with gateway messages only, and closes only with the
// codes the spec gives to bad input. The corpus is testdata/fuzz/FuzzHello.
func FuzzHello(f *testing.F) {
	f.Add([]byte(`{"op":"hello","id":"d1","model":"esp32","fw":"1.0","caps":[{"key":"t","ch":"telemetry","field":"t","component":"sensor","unit":"°C"}]}`))
	f.Add([]byte(`{"op":"hello","id":"d1","caps":[{"key":"r","ch":"relay","component":"switch","cmd":"set","on":"on","off":"off"},{"key":"n","component":"number","cmd":"n","min":1,"max":0}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, out := start(t, nil)
		err := s.OnMessage(protocols.Message{Type: protocols.Text, Data: data})
		if err != nil {
			var ce *protocols.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("OnMessage(%q) = %v, not a close error", data, err)
			}
			switch ce.Code {
			case protocols.CloseInvalidPayload, protocols.ClosePolicyViolation:
			default:
				t.Fatalf("OnMessage(%q) closes with %d", data, ce.Code)
			}
		}
		out.takeSent(t) // checks every message sent
		for _, d := range out.descriptions {
			if d == nil {
				continue
			}
			if err := d.Validate(); err != nil {
				t.Fatalf("OnMessage(%q) attached with a description that does not validate: %v", data, err)
			}
		}
		s.Close(nil)
	})
}
