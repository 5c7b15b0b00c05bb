package devices

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testWait = 10 * time.Second

// counter is a driver written for these tests: it publishes its count
// when told to, fails Run once when asked, and answers commands "echo"
// and "sleep".
type counterConfig struct {
	FailFirstRun bool
	tick         chan struct{}
	online       chan bool // non-nil: the device reports when it is online
}

func (c *counterConfig) Validate() error { return nil }

func (c *counterConfig) Open(id string, _ *slog.Logger) (Device, error) {
	if id == "unopenable" {
		return nil, errors.New("no such hardware")
	}
	return &counter{cfg: c}, nil
}

type counter struct {
	cfg      *counterConfig
	mu       sync.Mutex
	runs     int
	accepted []string
}

func (c *counter) Run(ctx context.Context, out Outlet) error {
	c.mu.Lock()
	c.runs++
	run := c.runs
	c.mu.Unlock()
	if c.cfg.FailFirstRun && run == 1 {
		return errors.New("the first run fails")
	}
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case online := <-c.cfg.online:
			out.SetOnline(online)
		case <-c.cfg.tick:
			n++
			data, _ := json.Marshal(map[string]int{"n": n, "run": run})
			if err := out.Publish(protocols.Frame{Channel: "count", Payload: data, QoS: 1}); err != nil {
				return err
			}
		}
	}
}

func (c *counter) ReportsOnline() bool { return c.cfg.online != nil }

func (c *counter) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	switch cmd.Name {
	case "echo":
		return protocols.Result{OK: true, Data: cmd.Args}
	case "sleep":
		<-ctx.Done()
		return protocols.Result{OK: false, Error: "timeout"}
	}
	return protocols.Result{OK: false, Error: "unknown command"}
}

func (c *counter) Accept(f protocols.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.accepted = append(c.accepted, string(f.Payload))
	return nil
}

type sink struct{ frames chan protocols.Frame }

func (s sink) Deliver(f protocols.Frame) error {
	s.frames <- f
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

func (s sink) next(t *testing.T) protocols.Frame {
	t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(testWait):
		t.Fatal("no frame")
		return protocols.Frame{}
	}
}

func newTestManager(t *testing.T, opts ManagerOptions) (*Manager, *router.Router, sink) {
	t.Helper()
	s := sink{frames: make(chan protocols.Frame, 64)}
	rt := router.New(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return NewManager(rt, slog.New(slog.NewTextHandler(io.Discard, nil)), opts), rt, s
}

func TestManagerRunsDevicesLikeSessions(t *testing.T) {
	m, rt, s := newTestManager(t, ManagerOptions{CommandTimeout: 200 * time.Millisecond, MaxCommands: 1})
	cfg := &counterConfig{tick: make(chan struct{})}
	err := m.Open([]Spec{{ID: "meter", Driver: "counter", Config: cfg}, {ID: "unopenable", Driver: "counter", Config: cfg}})
	if err == nil || !strings.Contains(err.Error(), "device unopenable (counter): no such hardware") || len(m.devices) != 1 {
		t.Fatalf("Open: %v (devices %d)", err, len(m.devices))
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	devs := rt.Devices()
	if len(devs) != 1 || devs[0].ID != "meter" || devs[0].Protocol != "driver:counter" {
		t.Fatalf("attached %+v", devs)
	}
	cfg.tick <- struct{}{}
	if f := s.next(t); f.Device != "meter" || f.Channel != "count" || string(f.Payload) != `{"n":1,"run":1}` {
		t.Fatalf("frame %+v", f)
	}

	if err := rt.Command(protocols.Command{Device: "meter", ID: "c1", Name: "echo", Args: json.RawMessage(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	if f := s.next(t); f.Channel != "cmd/echo/result" || string(f.Payload) != `{"id":"c1","ok":true,"data":{"x":1}}` {
		t.Fatalf("result %s %s", f.Channel, f.Payload)
	}

	// A command that outlives the timeout ends with it; while it runs, the
	// device's one command slot is taken.
	if err := rt.Command(protocols.Command{Device: "meter", ID: "c2", Name: "sleep"}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Command(protocols.Command{Device: "meter", ID: "c3", Name: "echo"}); !errors.Is(err, protocols.ErrBusy) {
		t.Errorf("second command while one runs: %v, want ErrBusy", err)
	}
	if f := s.next(t); string(f.Payload) != `{"id":"c2","ok":false,"error":"timeout"}` {
		t.Fatalf("result %s", f.Payload)
	}
}

func TestManagerRestartsAFailedRun(t *testing.T) {
	m, _, s := newTestManager(t, ManagerOptions{RestartMin: 10 * time.Millisecond})
	cfg := &counterConfig{FailFirstRun: true, tick: make(chan struct{})}
	if err := m.Open([]Spec{{ID: "flaky", Driver: "counter", Config: cfg}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cfg.tick <- struct{}{} // only the second run reads ticks
	if f := s.next(t); string(f.Payload) != `{"n":1,"run":2}` {
		t.Fatalf("frame %s", f.Payload)
	}
}

func TestManagerRoutesFramesToReceivers(t *testing.T) {
	m, rt, s := newTestManager(t, ManagerOptions{})
	cfg := &counterConfig{tick: make(chan struct{})}
	if err := m.Open([]Spec{{ID: "lcd", Driver: "counter", Config: cfg}}); err != nil {
		t.Fatal(err)
	}
	routes := []router.Route{{Devices: []string{"sensor-*"}, To: []string{"device:lcd", "mqtt"}, Pick: "t"}}
	if err := rt.SetRoutes(routes, m.Receiver); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := rt.Publish(protocols.Frame{Device: "sensor-1", Channel: "temp", Payload: []byte(`{"t":19.5}`)}); err != nil {
		t.Fatal(err)
	}
	if f := s.next(t); string(f.Payload) != "19.5" {
		t.Fatalf("MQTT got %s", f.Payload)
	}
	lcd := m.devices["lcd"].dev.(*counter)
	lcd.mu.Lock()
	defer lcd.mu.Unlock()
	if len(lcd.accepted) != 1 || lcd.accepted[0] != "19.5" {
		t.Fatalf("display got %q", lcd.accepted)
	}
}

// TestManagerCountsTraffic: a local device is listed with the frames it
// published (its command results too) and the commands and routed frames
// it took; it has no network address.
func TestManagerCountsTraffic(t *testing.T) {
	m, rt, s := newTestManager(t, ManagerOptions{})
	cfg := &counterConfig{tick: make(chan struct{})}
	if err := m.Open([]Spec{{ID: "lcd", Driver: "counter", Config: cfg}}); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetRoutes([]router.Route{{Devices: []string{"sensor-*"}, To: []string{"device:lcd"}}}, m.Receiver); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before := time.Now()
	cfg.tick <- struct{}{}
	s.next(t)
	if err := rt.Command(protocols.Command{Device: "lcd", ID: "c1", Name: "echo"}); err != nil {
		t.Fatal(err)
	}
	s.next(t) // the result
	if err := rt.Publish(protocols.Frame{Device: "sensor-1", Channel: "temp", Payload: []byte("19.5")}); err != nil {
		t.Fatal(err)
	}
	var got router.DeviceTraffic
	for _, d := range rt.Traffic() {
		if d.ID == "lcd" {
			got = d
		}
	}
	if got.In != 2 || got.Out != 2 || got.Address != "" {
		t.Errorf("traffic %+v; want 2 in, 2 out, no address", got)
	}
	if got.Last.Before(before) || got.Last.After(time.Now()) {
		t.Errorf("last message at %v, not between %v and now", got.Last, before)
	}
}

func TestValidChannel(t *testing.T) {
	t.Parallel()
	for ch, want := range map[string]string{
		"rx":                     "",
		"sensors/temp":           "",
		"":                       "required",
		"a//b":                   `"a//b" has an empty topic level`,
		"a/+":                    `"a/+" contains a wildcard or NUL`,
		"$SYS/x":                 `"$SYS/x" has a level starting with $`,
		"status":                 `"status" starts with cmd or status, which belong to the gateway`,
		"cmd/x":                  `"cmd/x" starts with cmd or status, which belong to the gateway`,
		strings.Repeat("a", 257): `"` + strings.Repeat("a", 64) + `..." is longer than 256 bytes`,
	} {
		got := ""
		if err := ValidChannel(ch); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("ValidChannel(%.20q) = %q, want %q", ch, got, want)
		}
	}
}

// presence records the router's presence events.
type presence chan string

func (p presence) Attached(d router.Device) { p <- "online " + d.ID }
func (p presence) Detached(d router.Device) { p <- "offline " + d.ID }

func (p presence) want(t *testing.T, event string) {
	t.Helper()
	select {
	case got := <-p:
		if got != event {
			t.Fatalf("presence %q, want %q", got, event)
		}
	case <-time.After(testWait):
		t.Fatalf("no presence event, want %q", event)
	}
}

// TestManagerOnlineReporter: a device that reports when it can be reached
// (a serial port) is online only while it says so, and commands to it
// meanwhile are refused as offline by the router.
func TestManagerOnlineReporter(t *testing.T) {
	m, rt, _ := newTestManager(t, ManagerOptions{})
	events := make(presence, 16)
	rt.Watch(events)
	cfg := &counterConfig{tick: make(chan struct{}), online: make(chan bool)}
	if err := m.Open([]Spec{{ID: "port", Driver: "counter", Config: cfg}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	echo := protocols.Command{Device: "port", ID: "c1", Name: "echo"}
	if err := rt.Command(echo); !errors.Is(err, protocols.ErrDeviceOffline) {
		t.Errorf("command before the device is online: %v, want ErrDeviceOffline", err)
	}
	for _, step := range []struct {
		online bool
		event  string // "" when nothing changes
	}{
		{true, "online port"},
		{true, ""},
		{false, "offline port"},
		{false, ""},
		{true, "online port"},
	} {
		cfg.online <- step.online
		if step.event != "" {
			events.want(t, step.event)
		}
	}
	if err := rt.Command(echo); err != nil {
		t.Errorf("command while online: %v", err)
	}
	m.Close()
	events.want(t, "offline port")
	select {
	case e := <-events:
		t.Errorf("unexpected presence event %q", e)
	default:
	}
}
