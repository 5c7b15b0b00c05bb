package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/plugins"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testWait bounds every wait for something that should come soon; the
// tests assert what comes, not when.
const testWait = 10 * time.Second

var (
	started = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	since   = started.Add(time.Hour)
)

// world stands for the gateway's components; tests change it under mu.
type world struct {
	mu          sync.Mutex
	connections int
	bridge      mqttbridge.Stats
	devices     []router.DeviceTraffic
	peers       []module.Peer
	plugins     []plugins.Status
}

func newWorld() *world {
	return &world{
		connections: 1,
		bridge:      mqttbridge.Stats{Connected: true, SpoolRecords: 2, SpoolBytes: 300, Published: 7, Busy: 1},
		devices: []router.DeviceTraffic{{
			Device:  router.Device{ID: "kitchen", Protocol: "done", Session: "s1", Since: since},
			Traffic: router.Traffic{Address: "192.0.2.7:40000", In: 3, Out: 2, Last: since.Add(time.Minute)},
		}},
		peers:   []module.Peer{{ID: "ab12", Name: "heatpump", State: module.PeerPending, LastSeen: since}},
		plugins: []plugins.Status{{Path: "/usr/lib/wsgate/ocpp", Protocols: []string{"ocpp1.6"}, Version: "1.0", State: "running", Restarts: 2, PID: 42}},
	}
}

func (w *world) set(change func(*world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	change(w)
}

type gatewayView struct{ *world }

func (g gatewayView) Stats() gateway.Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return gateway.Stats{Connections: g.connections}
}

type bridgeView struct{ *world }

func (b bridgeView) Stats() mqttbridge.Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bridge
}

func (w *world) Traffic() []router.DeviceTraffic {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]router.DeviceTraffic(nil), w.devices...)
}

func (w *world) Status() []plugins.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]plugins.Status(nil), w.plugins...)
}

func (w *world) Name() string { return "ship" }

func (w *world) PairingPeers() []module.Peer {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]module.Peer(nil), w.peers...)
}

type registryView struct{}

func (registryView) Entries() []protocols.Entry {
	return []protocols.Entry{
		{Name: "ship", Origin: "builtin", Enabled: true, Ready: true},
		{Name: "ocpp1.6", Origin: "/usr/lib/wsgate/ocpp", Enabled: true},
		{Name: "echo", Origin: "builtin", Ready: true},
	}
}

func (w *world) sources() Sources {
	return Sources{Gateway: gatewayView{w}, Bridge: bridgeView{w}, Devices: w, Protocols: registryView{}, Plugins: w, Pairers: []module.Pairer{w}}
}

// startPage serves the page of w until the test ends.
func startPage(t *testing.T, w *world, opts Options) (*Page, *httptest.Server) {
	t.Helper()
	opts.GatewayID, opts.Version, opts.Started = "hub", "v1.2.3", started
	p := New(opts, w.sources(), slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		p.Close()
		srv.Close()
	})
	return p, srv
}

// wantSnapshot is the snapshot of newWorld.
var wantSnapshot = Snapshot{
	Gateway: Gateway{ID: "hub", Version: "v1.2.3", Started: started, Connections: 1},
	Bridge:  Bridge{Connected: true, SpoolFrames: 2, SpoolBytes: 300, Published: 7, QueueFull: 1},
	Protocols: []Protocol{
		{Preference: 1, Name: "ship", Origin: "builtin", State: "enabled"},
		{Preference: 2, Name: "ocpp1.6", Origin: "/usr/lib/wsgate/ocpp", State: "unavailable"},
		{Name: "echo", Origin: "builtin", State: "disabled"},
	},
	Plugins: []Plugin{{Path: "/usr/lib/wsgate/ocpp", Protocols: []string{"ocpp1.6"}, Version: "1.0", State: "running", Restarts: 2}},
	Pairing: []Pairing{{Protocol: "ship", Peers: []Peer{{ID: "ab12", Name: "heatpump", State: "pending", LastSeen: since}}}},
	Devices: []Device{{ID: "kitchen", Protocol: "done", Address: "192.0.2.7:40000", Since: since, In: 3, Out: 2, Last: since.Add(time.Minute)}},
}

func TestSnapshotJSON(t *testing.T) {
	t.Parallel()
	_, srv := startPage(t, newWorld(), Options{})
	resp, err := srv.Client().Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantSnapshot) {
		t.Errorf("snapshot\n %+v\nwant\n %+v", got, wantSnapshot)
	}
}

// TestFiles: the page and its files are served with headers that keep
// everything else out of it; nothing else of the embedded directory is.
func TestFiles(t *testing.T) {
	t.Parallel()
	_, srv := startPage(t, newWorld(), Options{})
	tests := []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="/ui/app.js" defer></script>`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/ui/app.js", 200, "text/javascript; charset=utf-8", "'use strict';"},
		{"GET", "/ui/style.css", 200, "text/css; charset=utf-8", "@media (max-width:"},
		{"GET", "/ui/", 404, "", ""},
		{"GET", "/ui/index.html", 404, "", ""},
		{"GET", "/ui/missing.js", 404, "", ""},
		{"GET", "/ui/..%2fpage.go", 404, "", ""},
		{"POST", "/", 405, "", ""},
		{"GET", "/index.html", 404, "", ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
			continue
		}
		if tt.status != 200 {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != tt.contentType {
			t.Errorf("%s %s: Content-Type %q, want %q", tt.method, tt.path, ct, tt.contentType)
		}
		if !strings.Contains(string(body), tt.contains) {
			t.Errorf("%s %s: body lacks %q", tt.method, tt.path, tt.contains)
		}
		for header, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
		} {
			if got := resp.Header.Get(header); got != want {
				t.Errorf("%s %s: %s %q, want %q", tt.method, tt.path, header, got, want)
			}
		}
	}
}

// TestIsAsset: only reads of the page's files pass without the token.
func TestIsAsset(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/", true},
		{"HEAD", "/", true},
		{"GET", "/ui/app.js", true},
		{"POST", "/", false},
		{"GET", "/status", false},
		{"GET", "/events", false},
		{"GET", "/devices", false},
		{"GET", "/uix", false},
	} {
		if got := IsAsset(httptest.NewRequest(tt.method, tt.path, nil)); got != tt.want {
			t.Errorf("IsAsset(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

// sse reads server-sent events.
type sse struct {
	t    *testing.T
	body io.ReadCloser
	r    *bufio.Reader
}

type sseEvent struct {
	name string
	data []byte
}

func openEvents(t *testing.T, srv *httptest.Server) *sse {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET /events: %s %q: %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	s := &sse{t: t, body: resp.Body, r: bufio.NewReader(resp.Body)}
	t.Cleanup(func() { s.body.Close() })
	return s
}

// next returns the next event, or the zero event for a comment; it fails
// the test at the end of the stream.
func (s *sse) next() sseEvent {
	s.t.Helper()
	ev, err := s.read()
	if err != nil {
		s.t.Fatalf("reading the stream: %v", err)
	}
	return ev
}

func (s *sse) read() (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			return ev, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = append(ev.data, strings.TrimPrefix(line, "data: ")...)
		default:
			s.t.Fatalf("unexpected line %q", line)
		}
	}
}

// nextEvent skips comments.
func (s *sse) nextEvent() sseEvent {
	s.t.Helper()
	for {
		if ev := s.next(); ev.name != "" {
			return ev
		}
	}
}

func decode[T any](t *testing.T, ev sseEvent, name string) T {
	t.Helper()
	if ev.name != name {
		t.Fatalf("event %q %s, want %q", ev.name, ev.data, name)
	}
	var v T
	if err := json.Unmarshal(ev.data, &v); err != nil {
		t.Fatalf("%s: %v", ev.data, err)
	}
	return v
}

// changes is an update as the page reads it.
type changes struct {
	Gateway *Gateway  `json:"gateway"`
	Bridge  *Bridge   `json:"bridge"`
	Pairing []Pairing `json:"pairing"`
	Plugins []Plugin  `json:"plugins"`
	Devices *struct {
		Set  []Device `json:"set"`
		Gone []string `json:"gone"`
	} `json:"devices"`
}

// TestEvents: a stream starts with the snapshot, then carries what
// changed, and only that: a device that connects, its counters, one that
// leaves, a peer approved, the bridge losing the broker.
func TestEvents(t *testing.T) {
	t.Parallel()
	w := newWorld()
	_, srv := startPage(t, w, Options{Interval: 5 * time.Millisecond})
	s := openEvents(t, srv)
	if got := decode[Snapshot](t, s.nextEvent(), "snapshot"); !reflect.DeepEqual(got, wantSnapshot) {
		t.Fatalf("snapshot\n %+v\nwant\n %+v", got, wantSnapshot)
	}

	garage := router.DeviceTraffic{Device: router.Device{ID: "garage", Protocol: "done", Since: since}, Traffic: router.Traffic{Address: "192.0.2.8:40000"}}
	w.set(func(w *world) { w.devices = append(w.devices, garage); w.connections = 2 })
	u := decode[changes](t, s.nextEvent(), "update")
	if u.Devices == nil || len(u.Devices.Set) != 1 || u.Devices.Set[0].ID != "garage" || u.Devices.Gone != nil {
		t.Errorf("devices changed %+v, want garage set", u.Devices)
	}
	if u.Gateway == nil || u.Gateway.Connections != 2 || u.Bridge != nil || u.Pairing != nil || u.Plugins != nil {
		t.Errorf("update %+v, want the gateway's connections only besides the devices", u)
	}

	w.set(func(w *world) { w.devices[0].In++ })
	u = decode[changes](t, s.nextEvent(), "update")
	if u.Devices == nil || len(u.Devices.Set) != 1 || u.Devices.Set[0].ID != "kitchen" || u.Devices.Set[0].In != 4 || u.Gateway != nil {
		t.Errorf("update %+v, want kitchen with 4 in", u)
	}

	w.set(func(w *world) {
		w.devices = w.devices[1:]
		w.peers[0].State = module.PeerTrusted
		w.bridge.Connected = false
	})
	u = decode[changes](t, s.nextEvent(), "update")
	if u.Devices == nil || u.Devices.Set != nil || !reflect.DeepEqual(u.Devices.Gone, []string{"kitchen"}) {
		t.Errorf("devices changed %+v, want kitchen gone", u.Devices)
	}
	if len(u.Pairing) != 1 || u.Pairing[0].Peers[0].State != "trusted" || u.Bridge == nil || u.Bridge.Connected {
		t.Errorf("update %+v, want the peer trusted and the bridge disconnected", u)
	}
}

// TestHeartbeat: a stream with nothing to say sends comments, and lives
// past the server's read timeout, which would otherwise end it.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	w := newWorld()
	p := New(Options{Heartbeat: 10 * time.Millisecond, Interval: time.Hour}, w.sources(), slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadTimeout = 50 * time.Millisecond
	srv.Start()
	defer srv.Close()
	defer p.Close() // first: the server waits for the streams to end
	s := openEvents(t, srv)
	decode[Snapshot](t, s.nextEvent(), "snapshot")
	deadline := time.Now().Add(4 * srv.Config.ReadTimeout)
	comments := 0
	for time.Now().Before(deadline) {
		if ev := s.next(); ev.name != "" {
			t.Fatalf("event %q with nothing changed", ev.name)
		}
		comments++
	}
	t.Logf("%d comments", comments)
	// The read timeout has passed several times over: a change still
	// arrives.
	w.set(func(w *world) { w.connections = 5 })
	p.feed.mu.Lock()
	p.feed.advanceLocked(newState(p.Snapshot()))
	p.feed.mu.Unlock()
	if u := decode[changes](t, s.nextEvent(), "update"); u.Gateway == nil || u.Gateway.Connections != 5 {
		t.Errorf("update %+v", u)
	}
}

// TestSlowStreamResyncs: a stream whose queue fills loses what it holds
// and gets the snapshot of the moment instead, then changes again.
func TestSlowStreamResyncs(t *testing.T) {
	t.Parallel()
	w := newWorld()
	p := New(Options{Interval: time.Hour, Buffer: 2}, w.sources(), slog.New(slog.DiscardHandler))
	defer p.Close()
	f := p.feed
	s, snapshot, err := f.subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer f.unsubscribe(s)
	if decode[Snapshot](t, parseEvent(t, snapshot), "snapshot").Gateway.Connections != 1 {
		t.Fatal("first snapshot")
	}
	advance := func(connections int) {
		w.set(func(w *world) { w.connections = connections })
		f.mu.Lock()
		f.advanceLocked(newState(p.Snapshot()))
		f.mu.Unlock()
	}
	for n := 2; n <= 5; n++ { // 2 and 3 are queued, 4 overflows, 5 is not queued
		advance(n)
	}
	select {
	case <-s.resync:
	default:
		t.Fatal("no resync after the queue overflowed")
	}
	if got := len(s.events); got != 2 {
		t.Errorf("%d events queued, want the 2 before the overflow", got)
	}
	snap := decode[Snapshot](t, parseEvent(t, f.resync(s)), "snapshot")
	if snap.Gateway.Connections != 5 || len(s.events) != 0 {
		t.Errorf("resync: snapshot with %d connections and %d events left; want 5 and none", snap.Gateway.Connections, len(s.events))
	}
	advance(6)
	if u := decode[changes](t, parseEvent(t, <-s.events), "update"); u.Gateway == nil || u.Gateway.Connections != 6 {
		t.Errorf("after the resync: %+v", u)
	}
}

func parseEvent(t *testing.T, raw []byte) sseEvent {
	t.Helper()
	s := &sse{t: t, r: bufio.NewReader(strings.NewReader(string(raw)))}
	return s.next()
}

// TestStreamsBoundedAndClosed: streams beyond the bound are refused; Close
// ends the open ones and refuses new ones, and the feed stops looking
// once no stream is open.
func TestStreamsBoundedAndClosed(t *testing.T) {
	t.Parallel()
	p, srv := startPage(t, newWorld(), Options{MaxStreams: 2, Interval: 5 * time.Millisecond})
	a, b := openEvents(t, srv), openEvents(t, srv)
	for _, s := range []*sse{a, b} {
		decode[Snapshot](t, s.nextEvent(), "snapshot")
	}
	status := func() int {
		resp, err := srv.Client().Get(srv.URL + "/events")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusServiceUnavailable {
		t.Errorf("third stream: %d, want 503", got)
	}
	a.body.Close()
	waitFor(t, "the first stream to go", func() bool { return streams(p) == 1 })
	c := openEvents(t, srv)
	decode[Snapshot](t, c.nextEvent(), "snapshot")

	p.Close()
	for _, s := range []*sse{b, c} {
		for {
			if _, err := s.read(); err != nil {
				break // the end of the stream
			}
		}
	}
	if got := status(); got != http.StatusServiceUnavailable {
		t.Errorf("stream after Close: %d, want 503", got)
	}
	waitFor(t, "no stream", func() bool { return streams(p) == 0 })
}

func streams(p *Page) int {
	p.feed.mu.Lock()
	defer p.feed.mu.Unlock()
	return len(p.feed.streams)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
