package router

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
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
