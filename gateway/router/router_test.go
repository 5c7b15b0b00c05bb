package router

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// meteredEndpoint is a session that counts its traffic.
type meteredEndpoint struct {
	endpoint
	traffic *Traffic
}

func (e *meteredEndpoint) Traffic() Traffic { return *e.traffic }

// TestTraffic: devices are listed by id with their endpoint's counters,
// zero for endpoints that keep none, and a detached device is gone.
func TestTraffic(t *testing.T) {
	t.Parallel()
	r := New(&countingSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	since := time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)
	last := since.Add(time.Minute)
	counted := &Traffic{Address: "192.0.2.7:40000", In: 3, Out: 2, Last: last}
	devices := []struct {
		dev Device
		ep  Endpoint
	}{
		{Device{ID: "kitchen", Protocol: "done", Session: "s1", Since: since}, &meteredEndpoint{traffic: counted}},
		{Device{ID: "boiler", Protocol: "driver:serial", Session: "local", Since: since}, &endpoint{}},
		{Device{ID: "garage", Protocol: "done", Session: "s2", Since: since}, &meteredEndpoint{traffic: &Traffic{}}},
	}
	for _, d := range devices {
		if err := r.Attach(d.dev, d.ep); err != nil {
			t.Fatal(err)
		}
	}
	r.Detach("garage", devices[2].ep)
	counted.In++ // read when listed, not when attached

	want := []DeviceTraffic{
		{Device: devices[1].dev},
		{Device: devices[0].dev, Traffic: Traffic{Address: "192.0.2.7:40000", In: 4, Out: 2, Last: last}},
	}
	if got := r.Traffic(); !slices.Equal(got, want) {
		t.Errorf("Traffic() =\n %+v\nwant\n %+v", got, want)
	}
}

// replacedEndpoint is a session that is replaced just as a command reaches
// it: it attaches next in its place and refuses the command with err.
type replacedEndpoint struct {
	endpoint
	r    *Router
	next Endpoint
	err  error
	got  int
}

func (e *replacedEndpoint) Command(protocols.Command) error {
	e.got++
	if e.next != nil {
		if err := e.r.Attach(Device{ID: "d1", Session: "newer"}, e.next); err != nil {
			return err
		}
	}
	return e.err
}

// TestCommandReachesTheNewerSession: a command that reaches a session as it
// is replaced by a newer one here goes to the newer one; with no newer
// session, the old one's error stands, and a device that keeps replacing
// its session is not chased for ever.
func TestCommandReachesTheNewerSession(t *testing.T) {
	t.Parallel()
	closing := fmt.Errorf("the session is closing: %w", protocols.ErrClosed)
	ended := fmt.Errorf("command to d1: %w", protocols.ErrDeviceOffline)
	tests := []struct {
		name     string
		err      error // the replaced session's
		replaced bool  // a newer session attaches as the command arrives
		chain    int   // sessions that each get replaced in turn before the last
		wantErr  error // nil: the last session took the command
	}{
		{"closing, replaced", closing, true, 1, nil},
		{"ended, replaced", ended, true, 1, nil},
		{"closing, not replaced", closing, false, 1, protocols.ErrClosed},
		{"ended, not replaced", ended, false, 1, protocols.ErrDeviceOffline},
		{"replaced twice", closing, true, 2, nil},
		{"replaced again and again", closing, true, maxCommandAttempts, protocols.ErrClosed},
		{"refused for another reason", protocols.ErrForbidden, true, 1, protocols.ErrForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := New(&countingSink{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			last := &replacedEndpoint{}
			var first Endpoint = last
			var sessions []*replacedEndpoint
			if tc.replaced {
				next := Endpoint(last)
				for range tc.chain {
					e := &replacedEndpoint{r: r, next: next, err: tc.err}
					sessions = append(sessions, e)
					next = e
				}
				first = next
			} else {
				e := &replacedEndpoint{err: tc.err}
				sessions = append(sessions, e)
				first = e
			}
			if err := r.Attach(Device{ID: "d1", Session: "old"}, first); err != nil {
				t.Fatal(err)
			}
			err := r.Command(protocols.Command{Device: "d1", Name: "set", ID: "c1"})
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Command: %v, want the newer session to take it", err)
			case tc.wantErr == nil && last.got != 1:
				t.Fatalf("the newest session got the command %d times, want once", last.got)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Command: %v, want %v", err, tc.wantErr)
			}
			for i, s := range sessions {
				if s.got > 1 {
					t.Errorf("session %d was offered the command %d times", i, s.got)
				}
			}
		})
	}
}
