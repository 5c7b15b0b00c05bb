package router

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

func TestMatchFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filter, channel string
		want            bool
	}{
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"a/#", "a/b", true},
		{"a/#", "a", true}, // as in MQTT: # includes the parent level
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"+/b", "a/b", true},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a", "a/b", false},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		if got := MatchFilter(tt.filter, tt.channel); got != tt.want {
			t.Errorf("MatchFilter(%q, %q) = %v, want %v", tt.filter, tt.channel, got, tt.want)
		}
	}
}

type recordingSink struct {
	mu     sync.Mutex
	frames []protocols.Frame
	err    error
}

func (s *recordingSink) Deliver(f protocols.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.frames = append(s.frames, f)
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

// display stands for a local device that accepts frames.
type display struct {
	frames []protocols.Frame
	err    error
}

func (d *display) Accept(f protocols.Frame) error {
	if d.err != nil {
		return d.err
	}
	d.frames = append(d.frames, f)
	return nil
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	routes := []Route{
		{Devices: []string{"kitchen-*"}, Channels: []string{"sensors/+"}, To: []string{"device:lcd"}, Pick: "t", Channel: "line1"},
		{Channels: []string{"alarm/#"}, To: []string{TargetMQTT, "device:lcd"}},
		{Devices: []string{"noisy"}, To: []string{"device:broken"}},
	}
	tests := []struct {
		name       string
		frame      protocols.Frame
		wantMQTT   string // payload published, "" for none
		wantLCD    string // payload on the display, "" for none
		wantLCDCh  string
		wantAckErr bool
		wantErr    bool
	}{
		{"picked to the display", protocols.Frame{Device: "kitchen-1", Channel: "sensors/temp", Payload: []byte(`{"t":21.5,"rh":40}`)}, "", "21.5", "line1", false, false},
		{"no route: MQTT", protocols.Frame{Device: "garage", Channel: "sensors/temp", Payload: []byte(`1`)}, "1", "", "", false, false},
		{"fan-out", protocols.Frame{Device: "door", Channel: "alarm/open", Payload: []byte(`"open"`)}, `"open"`, `"open"`, "alarm/open", false, false},
		{"pick of a missing field", protocols.Frame{Device: "kitchen-2", Channel: "sensors/temp", Payload: []byte(`{"rh":40}`)}, "", "", "", false, true},
		{"pick of non-JSON", protocols.Frame{Device: "kitchen-2", Channel: "sensors/temp", Payload: []byte(`warm`)}, "", "", "", false, true},
		{"results bypass routes", protocols.Frame{Device: "kitchen-1", Channel: "cmd/x/result", Payload: []byte(`{}`)}, `{}`, "", "", false, false},
		{"a failing target fails the ack", protocols.Frame{Device: "noisy", Channel: "x", Payload: []byte(`1`)}, "", "", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &recordingSink{}
			lcd, broken := &display{}, &display{err: protocols.ErrBusy}
			r := New(sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
			err := r.SetRoutes(routes, func(id string) (Receiver, bool) {
				switch id {
				case "lcd":
					return lcd, true
				case "broken":
					return broken, true
				}
				return nil, false
			})
			if err != nil {
				t.Fatal(err)
			}
			acked, ackErr := 0, error(nil)
			f := tt.frame
			f.Ack = func(err error) { acked++; ackErr = err }
			err = r.Publish(f)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Publish: %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(err, protocols.ErrInvalidFrame) {
					t.Errorf("error %v is not ErrInvalidFrame", err)
				}
				return
			}
			if acked != 1 || (ackErr != nil) != tt.wantAckErr {
				t.Errorf("acked %d times with %v", acked, ackErr)
			}
			gotMQTT := ""
			if len(sink.frames) == 1 {
				gotMQTT = string(sink.frames[0].Payload)
			}
			if gotMQTT != tt.wantMQTT || len(sink.frames) > 1 {
				t.Errorf("MQTT got %d frames, payload %q, want %q", len(sink.frames), gotMQTT, tt.wantMQTT)
			}
			gotLCD, gotCh := "", ""
			if len(lcd.frames) == 1 {
				gotLCD, gotCh = string(lcd.frames[0].Payload), lcd.frames[0].Channel
			}
			if gotLCD != tt.wantLCD || gotCh != tt.wantLCDCh {
				t.Errorf("display got %q on %q, want %q on %q", gotLCD, gotCh, tt.wantLCD, tt.wantLCDCh)
			}
		})
	}
}

func TestSetRoutesRefusesUnknownTargets(t *testing.T) {
	t.Parallel()
	r := New(&recordingSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	none := func(string) (Receiver, bool) { return nil, false }
	for _, rt := range []Route{{To: []string{"device:ghost"}}, {To: []string{"kafka"}}, {Devices: []string{"["}}} {
		if err := r.SetRoutes([]Route{rt}, none); err == nil {
			t.Errorf("route %+v accepted", rt)
		}
	}
}

// endpoint is an attached session as the router sees it.
type endpoint struct{ _ byte } // not zero-size: each one is another session

func (*endpoint) Command(protocols.Command) error { return nil }
func (*endpoint) Evict(string)                    {}

// TestRetryAfterPartialDelivery: a QoS 1 frame that some route targets took
// and others refused is retried by its device with the same seq; the retry
// goes only to the targets that missed it, so MQTT publishes it once.
func TestRetryAfterPartialDelivery(t *testing.T) {
	t.Parallel()
	busy := fmt.Errorf("queue full: %w", protocols.ErrBusy)
	full := busy.Error()
	type attempt struct {
		mqttErr, lcdErr error
		wantMQTT        int // frames MQTT has after the attempt
		wantLCD         int // frames the display has after the attempt
		wantAckErr      string
	}
	tests := []struct {
		name       string
		hasSeq     bool
		newSession bool // the device reconnects before the retry
		attempts   []attempt
	}{
		{"display refused, then takes the retry", true, false, []attempt{
			{nil, busy, 1, 0, "device:lcd: " + full + " (the other targets have the frame: a retry goes to device:lcd only)"},
			{nil, nil, 1, 1, ""},
		}},
		{"MQTT refused, then takes the retry", true, false, []attempt{
			{busy, nil, 0, 1, "mqtt: " + full + " (the other targets have the frame: a retry goes to mqtt only)"},
			{nil, nil, 1, 1, ""},
		}},
		{"refused twice by the display", true, false, []attempt{
			{nil, busy, 1, 0, "device:lcd: " + full + " (the other targets have the frame: a retry goes to device:lcd only)"},
			{nil, busy, 1, 0, "device:lcd: " + full + " (the other targets have the frame: a retry goes to device:lcd only)"},
			{nil, nil, 1, 1, ""},
		}},
		{"refused by every target: the retry goes to all", true, false, []attempt{
			{busy, busy, 0, 0, "mqtt: " + full},
			{nil, nil, 1, 1, ""},
		}},
		{"a delivered seq sent again goes to all (the session dedupes)", true, false, []attempt{
			{nil, nil, 1, 1, ""},
			{nil, nil, 2, 2, ""},
		}},
		{"without seq nothing is remembered", false, false, []attempt{
			{nil, busy, 1, 0, "device:lcd: " + full},
			{nil, nil, 2, 1, ""},
		}},
		{"a new session's seq is another frame", true, true, []attempt{
			{nil, busy, 1, 0, "device:lcd: " + full + " (the other targets have the frame: a retry goes to device:lcd only)"},
			{nil, nil, 2, 1, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink, lcd := &recordingSink{}, &display{}
			r := New(sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
			routes := []Route{{Devices: []string{"panel"}, To: []string{TargetMQTT, "device:lcd"}}}
			if err := r.SetRoutes(routes, func(string) (Receiver, bool) { return lcd, true }); err != nil {
				t.Fatal(err)
			}
			if err := r.Attach(Device{ID: "panel"}, &endpoint{}); err != nil {
				t.Fatal(err)
			}
			for i, a := range tt.attempts {
				if i == 1 && tt.newSession {
					if err := r.Attach(Device{ID: "panel"}, &endpoint{}); err != nil {
						t.Fatal(err)
					}
				}
				sink.err, lcd.err = a.mqttErr, a.lcdErr
				var ackErr error
				acked := 0
				f := protocols.Frame{Device: "panel", Channel: "button", Payload: []byte(`1`), QoS: 1,
					Seq: 7, HasSeq: tt.hasSeq, Ack: func(err error) { acked++; ackErr = err }}
				if err := r.Publish(f); err != nil {
					t.Fatalf("attempt %d: Publish: %v", i, err)
				}
				gotErr := ""
				if ackErr != nil {
					gotErr = ackErr.Error()
				}
				if acked != 1 || gotErr != a.wantAckErr {
					t.Errorf("attempt %d: acked %d times with %q, want once with %q", i, acked, gotErr, a.wantAckErr)
				}
				if len(sink.frames) != a.wantMQTT || len(lcd.frames) != a.wantLCD {
					t.Errorf("attempt %d: MQTT has %d frames, the display %d; want %d and %d", i, len(sink.frames), len(lcd.frames), a.wantMQTT, a.wantLCD)
				}
			}
		})
	}
}

// TestSetRoutesWhileFramesFlow: a reload replaces the routes while devices
// publish (run with -race).
func TestSetRoutesWhileFramesFlow(t *testing.T) {
	t.Parallel()
	sink, lcd := &recordingSink{}, &display{}
	r := New(sink, slog.New(slog.NewTextHandler(io.Discard, nil)))
	receivers := func(string) (Receiver, bool) { return lcd, true }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			routes := []Route{{Devices: []string{"a*"}, To: []string{TargetMQTT}}}
			if i%2 == 1 {
				routes = nil
			}
			if err := r.SetRoutes(routes, receivers); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		if err := r.Publish(protocols.Frame{Device: "a1", Channel: "x", Payload: []byte(`1`)}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(sink.frames) != 200 {
		t.Errorf("MQTT got %d frames, want 200", len(sink.frames))
	}
}
