package main

// A fleet: two wsgate processes behind nginx, generated from the nginx
// configuration docs/DEPLOY.md gives, on a three-node NATS cluster (the
// instances take commands per device: NATS has no shared subscriptions)
// and on one Mosquitto (with mqtt.share_group). One suite runs on both:
// an instance killed under 50 devices, a NATS node killed meanwhile, a
// takeover race, and commands sent while devices move.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/protocols"
)

// fleetBroker is the broker a fleet test runs on.
type fleetBroker struct {
	// node returns the url and fallback_urls of instance i.
	node func(i int) (string, []string)
	// clientURL is where the test's own clients connect: a node that is
	// never killed.
	clientURL  string
	shareGroup string
	commandQoS int
	// crashOnly: run only the instance crash (see TestFleetOnNATS).
	crashOnly bool
	// killNode, when set, kills the broker node of instance 1.
	killNode func()
}

// The suite runs on every nats-server at hand: Debian's package and the
// release make test builds from the Go module proxy (WSGATE_NATS_SERVER).
// On nats-server 2.9 (Debian 12) only the instance crash runs: under the
// takeover race and the commands sent while devices move its JetStream
// API requests (consumers made and deleted for the subscriptions that
// follow the devices) time out after 4 s on this machine, and in some
// runs a QoS 1 subscriber stopped receiving after a node was killed
// (docs/DEPLOY.md).
func TestFleetOnNATS(t *testing.T) {
	t.Parallel()
	for _, srv := range brokertest.NATSServers(t) {
		t.Run("nats-"+srv.Version, func(t *testing.T) {
			t.Parallel()
			c := brokertest.StartNATSClusterOf(t, srv.Path, 3)
			runFleet(t, fleetBroker{
				node: func(i int) (string, []string) {
					urls := c.URLs(i + 1) // instance 0 on node 1, instance 1 on node 2
					return urls[0], urls[1:]
				},
				clientURL: c.Nodes[0].URL,
				// A QoS 1 subscription is a JetStream consumer on NATS.
				commandQoS: 0,
				crashOnly:  !srv.AtLeast(2, 10),
				killNode:   func() { c.Kill(2) },
			})
		})
	}
}

func TestFleetOnMosquitto(t *testing.T) {
	t.Parallel()
	m := brokertest.StartMosquitto(t)
	runFleet(t, fleetBroker{
		node:       func(int) (string, []string) { return m.URL, nil },
		clientURL:  m.URL,
		shareGroup: "fleet",
		commandQoS: 1,
	})
}

// fleet is the two instances and nginx in front of them.
type fleet struct {
	cfgs  [2]procConfig
	procs [2]*wsgateProc
	lbURL string // ws:// through nginx
}

func (f *fleet) index(id string) int {
	if id == f.cfgs[0].id {
		return 0
	}
	return 1
}

func runFleet(t *testing.T, b fleetBroker) {
	var f fleet
	for i := range f.cfgs {
		url, fallbacks := b.node(i)
		cfg := newProcConfig(t, fmt.Sprintf("gw-%c", 'a'+i), url)
		quoted := make([]string, len(fallbacks))
		for j, u := range fallbacks {
			quoted[j] = strconv.Quote(u)
		}
		cfg.logLevel = os.Getenv("WSGATE_FLEET_LOG")
		cfg.mqtt = fmt.Sprintf("fallback_urls = [%s]\nshare_group = %q\ncommand_qos = %d\n", strings.Join(quoted, ", "), b.shareGroup, b.commandQoS)
		f.cfgs[i] = cfg
		f.procs[i] = startWsgate(t, cfg)
	}
	for _, p := range f.procs {
		p.waitReady(t)
	}
	f.lbURL = startNginx(t, f.cfgs[0].wsPort, f.cfgs[1].wsPort)

	t.Run("HAProxy checks /readyz", func(t *testing.T) { testHAProxy(t, &f) })
	killed := false
	t.Run("instance killed behind nginx", func(t *testing.T) { killed = true; testInstanceKilled(t, b, &f) })
	if t.Failed() || b.crashOnly {
		return
	}
	if killed { // (-run may have left it out)
		// gw-a comes back on its spool.
		f.procs[0] = startWsgate(t, f.cfgs[0])
		f.procs[0].waitReady(t)
	}
	t.Run("takeover race", func(t *testing.T) { testTakeoverRace(t, b, &f) })
	t.Run("commands while devices move", func(t *testing.T) { testCommandsWhileMoving(t, b, &f) })
	if b.killNode != nil {
		t.Run("broker node killed", func(t *testing.T) { testNodeKilled(t, b, &f) })
	}
}

// Devices stream to gw-b while the broker node it is attached to is
// killed: gw-b spools, reconnects to another node of its fallback_urls and
// replays; every pub is acked, every acked seq reaches the subscribers on a
// third node, and every device takes a command afterwards.
//
// What reaches the subscribers is checked twice, at QoS 1 (on NATS a
// JetStream consumer) and at QoS 0 (plain NATS interest): a seq that
// reached neither was lost on the way to the broker, and fails the test.
// A seq only the QoS 1 subscriber missed was published: its QoS 0 twin
// has it. NATS, while it moves the consumers of a lost node, sometimes
// leaves such a gap in a consumer; the test logs it (docs/DEPLOY.md).
func testNodeKilled(t *testing.T, b fleetBroker, f *fleet) {
	const devices, perDevice = 10, 300
	seqs := collectFleetSeqs(t, brokertest.Subscribe(t, b.clientURL, "wsgate/+/zl"))
	seqs0 := collectFleetSeqs(t, brokertest.SubscribeQoS0(t, b.clientURL, "wsgate/+/zl"))
	results := brokertest.Subscribe(t, b.clientURL, "wsgate/+/cmd/+/result")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var devs []*fleetDevice
	var wg sync.WaitGroup
	for i := range devices {
		d := newFleetDevice(fmt.Sprintf("node-%d", i), perDevice)
		devs = append(devs, d)
		wg.Add(1)
		go func() { defer wg.Done(); d.stay(ctx, f.cfgs[1].wsURL()) }()
	}
	defer func() { cancel(); wg.Wait() }()
	acked := func() int {
		n := 0
		for _, d := range devs {
			n += d.ackedCount()
		}
		return n
	}
	waitFor(t, "a quarter of the pubs acked", func() bool { return acked() >= devices*perDevice/4 })
	b.killNode()
	t.Logf("a broker node killed, %d of %d pubs acked", acked(), devices*perDevice)
	waitFor(t, "every pub acked", func() bool { return acked() == devices*perDevice })
	// Give the subscribers a moment for the last acked seqs (not waiting
	// for what may never come).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		all := true
		for _, d := range devs {
			all = all && len(seqs0.missing(d.id, perDevice)) == 0 && len(seqs.missing(d.id, perDevice)) == 0
		}
		if all {
			break
		}
	}
	for _, d := range devs {
		missing, missing0 := seqs.missing(d.id, perDevice), seqs0.missing(d.id, perDevice)
		var lost []int
		for _, seq := range missing {
			if slices.Contains(missing0, seq) {
				lost = append(lost, seq)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d acked seqs reached no subscriber, e.g. %v", d.id, len(lost), lost[:min(5, len(lost))])
		} else if len(missing) > 0 {
			t.Logf("%s: %d acked seqs reached the QoS 0 subscriber but not the QoS 1 one (a JetStream consumer), e.g. %v",
				d.id, len(missing), missing[:min(5, len(missing))])
		}
	}
	// Commands reach a device once its gateway has renewed its
	// subscription on the new node (the broker keeps no commands for a
	// clean session in between).
	f.procs[1].waitReady(t)
	waitFor(t, "gw-b's devices announced again", func() bool {
		return f.procs[1].metrics(t)["wsgate_mqtt_presence_pending"] == 0
	})
	commandEach(t, b, results, devs, "after-node")
	if m := f.procs[1].metrics(t); m["wsgate_spool_replayed_total"] == 0 {
		t.Logf("gw-b replayed nothing: the node went down between two publishes")
	}
}

// commandEach sends each device a ping with the given id; each must reach
// its device once, and its result come back once.
func commandEach(t *testing.T, b fleetBroker, results *brokertest.Subscriber, devs []*fleetDevice, id string) {
	t.Helper()
	pub := brokertest.NewPublisher(t, b.clientURL)
	for _, d := range devs {
		pub.Publish(t, "wsgate/"+d.id+"/cmd/ping/"+id, []byte(`{}`), false)
	}
	got := map[string]int{}
	for deadline := time.Now().Add(mqttTestWait); len(got) < len(devs); {
		m, ok := nextMessage(results.Messages, time.Until(deadline))
		if !ok {
			break
		}
		if r := parseFleetResult(t, m); r.ID != id || !r.OK {
			t.Errorf("%s: result %+v", m.Topic, r)
		}
		got[strings.TrimSuffix(strings.TrimPrefix(m.Topic, "wsgate/"), "/cmd/ping/result")]++
	}
	if m, ok := nextMessage(results.Messages, time.Second); ok {
		t.Errorf("another result: %s %s", m.Topic, m.Payload)
	}
	for _, d := range devs {
		if n, k := d.delivered(id), got[d.id]; n != 1 || k != 1 {
			t.Errorf("%s: the command was delivered %d times, its result published %d times", d.id, n, k)
		}
	}
}

// 50 devices stream QoS 1 pubs through nginx; instance gw-a is killed with
// SIGKILL mid-stream. Every device reconnects through nginx to gw-b and resends what
// was not acked; a QoS 1 subscriber gets every acked seq of every device.
// Each device's status ends up online at gw-b, and a command reaches each
// device and its result comes back once.
func testInstanceKilled(t *testing.T, b fleetBroker, f *fleet) {
	const devices, perDevice = 50, 60
	seqs := collectFleetSeqs(t, brokertest.Subscribe(t, b.clientURL, "wsgate/+/zl"))
	statuses := collectStatuses(t, brokertest.Subscribe(t, b.clientURL, "wsgate/+/status"))
	results := brokertest.Subscribe(t, b.clientURL, "wsgate/+/cmd/+/result")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var devs []*fleetDevice
	var wg sync.WaitGroup
	for i := range devices {
		d := newFleetDevice(fmt.Sprintf("crash-%02d", i), perDevice)
		devs = append(devs, d)
		wg.Add(1)
		go func() { defer wg.Done(); d.stay(ctx, f.lbURL) }()
	}
	defer func() { cancel(); wg.Wait() }()
	acked := func() int {
		n := 0
		for _, d := range devs {
			n += d.ackedCount()
		}
		return n
	}
	waitFor(t, "a quarter of the pubs acked", func() bool { return acked() >= devices*perDevice/4 })
	onA := len(f.procs[0].devices(t))
	if onA == 0 {
		t.Fatalf("nginx gave gw-a no device")
	}
	f.procs[0].kill()
	t.Logf("gw-a killed holding %d devices, %d of %d pubs acked", onA, acked(), devices*perDevice)
	waitFor(t, "every pub acked", func() bool { return acked() == devices*perDevice })

	for _, d := range devs {
		missing := seqs.missing(d.id, perDevice)
		if len(missing) > 0 {
			t.Errorf("%s: %d acked seqs never reached the subscriber, e.g. %v", d.id, len(missing), missing[:min(5, len(missing))])
		}
	}
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.id)
		waitFor(t, d.id+" online at gw-b", func() bool {
			st, ok := statuses.latest(d.id)
			return ok && st.State == "online" && st.Gateway == "gw-b"
		})
	}
	waitRetained(t, b.clientURL, ids, func(_ string, st statusJSONMsg) bool {
		return st.State == "online" && st.Gateway == "gw-b"
	})
	commandEach(t, b, results, devs, "after-crash")
	if t.Failed() {
		t.Logf("gw-b: %v", f.procs[1].metrics(t))
	}
}

// One device id connects to gw-a and gw-b in turn 200 times, each time
// while its previous session is still open. The newest session always
// wins: at the end exactly one is open, it is the last one, every other
// was closed with 4000, and the retained status names its instance and the
// highest stamp issued.
func testTakeoverRace(t *testing.T, b fleetBroker, f *fleet) {
	const rounds = 200
	statuses := brokertest.Subscribe(t, b.clientURL, "wsgate/race-1/status")
	type conn struct {
		ws      *websocket.Conn
		session string
		closed  chan int // the close code
	}
	var conns []conn
	defer func() {
		for _, c := range conns {
			c.ws.Close()
		}
	}()
	for i := range rounds {
		ws, welcome, err := helloSession(f.cfgs[i%2].wsURL(), "race-1")
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		c := conn{ws: ws, session: welcome, closed: make(chan int, 1)}
		go func() {
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					code := 0
					if errors.As(err, &ce) {
						code = ce.Code
					}
					c.closed <- code
					return
				}
			}
		}()
		conns = append(conns, c)
	}
	last := conns[len(conns)-1]
	for i, c := range conns[:len(conns)-1] {
		select {
		case code := <-c.closed:
			if code != protocols.CloseReplaced {
				t.Errorf("session %d closed with %d, want %d", i, code, protocols.CloseReplaced)
			}
		case <-time.After(mqttTestWait):
			t.Fatalf("session %d of %d is still open", i, rounds)
		}
	}
	select {
	case code := <-last.closed:
		t.Fatalf("the last session was closed (%d)", code)
	default:
	}
	var stamps []uint64
	var st statusJSONMsg
	waitFor(t, "the last session's status", func() bool {
		for {
			m, ok := nextMessage(statuses.Messages, 0)
			if !ok {
				return st.Session == last.session && st.State == "online"
			}
			if err := json.Unmarshal(m.Payload, &st); err != nil {
				t.Fatalf("status %q", m.Payload)
			}
			stamps = append(stamps, st.Stamp)
		}
	})
	want := f.cfgs[(rounds-1)%2].id
	retained := brokertest.Subscribe(t, b.clientURL, "wsgate/race-1/status")
	var r statusJSONMsg
	if err := json.Unmarshal(retained.Next(t, "wsgate/race-1/status", mqttTestWait).Payload, &r); err != nil {
		t.Fatal(err)
	}
	if r.State != "online" || r.Gateway != want || r.Session != last.session || r.Stamp != maxOf(stamps) {
		t.Errorf("retained status %+v, want online at %s, session %s, stamp %d", r, want, last.session, maxOf(stamps))
	}
	// Exactly one instance holds the device.
	for i, p := range f.procs {
		held := p.holds(t, "race-1")
		if held != (i == (rounds-1)%2) {
			t.Errorf("%s holds race-1: %v", f.cfgs[i].id, held)
		}
	}
}

// Ten devices move between the instances (each move opens the new
// session before the old one is closed by the takeover) while 1,000
// commands with unique ids are sent to them: each command is delivered
// once and its result published once.
func testCommandsWhileMoving(t *testing.T, b fleetBroker, f *fleet) {
	const devices, commands = 10, 1000
	results := brokertest.Subscribe(t, b.clientURL, "wsgate/+/cmd/+/result")
	statuses := collectStatuses(t, brokertest.Subscribe(t, b.clientURL, "wsgate/+/status"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var devs []*fleetDevice
	for i := range devices {
		d := newFleetDevice(fmt.Sprintf("move-%d", i), 0)
		if err := d.open(ctx, f.cfgs[i%2].wsURL()); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, d)
	}
	defer func() {
		for _, d := range devs {
			d.closeAll()
		}
	}()

	published := make(chan struct{})
	moves := make(chan int, devices)
	for i, d := range devs {
		go func() {
			n := 0
			defer func() { moves <- n }()
			for at := i % 2; ; n++ {
				select {
				case <-published:
					return
				default:
				}
				at = 1 - at
				err := d.open(ctx, f.cfgs[at].wsURL())
				var ce *websocket.CloseError
				switch {
				case errors.As(err, &ce) && ce.Code == protocols.CloseReplaced:
					// The previous move was announced after this one (its
					// announcement waited out the gateway's settle time on a
					// loaded machine): the older session won, and the device
					// stays where it was.
					at = 1 - at
				case err != nil:
					t.Errorf("%s: move to %s: %v", d.id, f.cfgs[at].id, err)
					return
				}
			}
		}()
	}
	pub := brokertest.NewPublisher(t, b.clientURL)
	for i := range commands {
		d := devs[i%devices]
		pub.Publish(t, fmt.Sprintf("wsgate/%s/cmd/set/c%04d", d.id, i), fmt.Appendf(nil, `{"n":%d}`, i), false)
	}
	close(published)
	total := 0
	for range devs {
		total += <-moves
	}
	t.Logf("%d commands sent during %d moves", commands, total)

	got := map[string]int{}
	errs := map[string]string{} // the error results, by command id
	record := func(m brokertest.Message) {
		r := parseFleetResult(t, m)
		got[r.ID]++
		if r.Error != "" {
			errs[r.ID] = r.Error
		}
	}
	deadline := time.Now().Add(2 * mqttTestWait)
	for len(got) < commands && time.Now().Before(deadline) {
		m, ok := nextMessage(results.Messages, time.Until(deadline))
		if !ok {
			break
		}
		record(m)
	}
	if m, ok := nextMessage(results.Messages, time.Second); ok {
		record(m)
	}
	// A command that chases a device moving this often may reach the hop
	// limit and be answered so (docs/DEPLOY.md): not delivered, but not
	// lost either. Any other error result, or many of those, fails.
	var lost, twice, undelivered, doubled, chased []string
	for i := range commands {
		id, d := fmt.Sprintf("c%04d", i), devs[i%devices]
		switch n := got[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			twice = append(twice, id)
		}
		switch n := d.delivered(id); {
		case n == 0 && got[id] == 1 && errs[id] == movedResult:
			chased = append(chased, id)
		case n == 0:
			undelivered = append(undelivered, id)
			if e := errs[id]; e != "" {
				t.Errorf("%s: result %q", id, e)
			}
		case n > 1:
			doubled = append(doubled, id)
		}
	}
	if len(chased) > 0 {
		t.Logf("%d commands answered %q after following their device to the hop limit, e.g. %v",
			len(chased), movedResult, chased[:min(5, len(chased))])
	}
	if len(chased) > commands/50 {
		t.Errorf("%d of %d commands reached the hop limit: more than a busy machine explains", len(chased), commands)
	}
	for _, s := range []struct {
		what string
		ids  []string
	}{
		{"commands without a result", lost}, {"commands with more than one result", twice},
		{"commands never delivered", undelivered}, {"commands delivered more than once", doubled},
	} {
		if len(s.ids) > 0 {
			t.Errorf("%d %s, e.g. %v", len(s.ids), s.what, s.ids[:min(5, len(s.ids))])
		}
	}
	// Each device ends with one open connection, held by the instance its
	// status names. (That it is the newest is the takeover race's test:
	// here a move may start before the previous one is announced.)
	for _, d := range devs {
		waitFor(t, d.id+" settled", func() bool {
			st, ok := statuses.latest(d.id)
			return ok && st.State == "online" && d.openConns() == 1 &&
				f.procs[f.index(st.Gateway)].holds(t, d.id) && !f.procs[1-f.index(st.Gateway)].holds(t, d.id)
		})
	}
}

// ---- devices ----

// fleetDevice is a done device that may hold several connections at once
// (while it moves), streams total QoS 1 pubs resending what was not acked,
// and answers every command, counting how often each id reached it.
type fleetDevice struct {
	id    string
	total int

	mu      sync.Mutex
	next    int // the next new seq
	unacked map[int]bool
	acked   map[int]bool
	cmds    map[string]int
	conns   map[*websocket.Conn]bool
	wake    chan struct{}
}

func newFleetDevice(id string, total int) *fleetDevice {
	return &fleetDevice{id: id, total: total, next: 1, unacked: map[int]bool{}, acked: map[int]bool{},
		cmds: map[string]int{}, conns: map[*websocket.Conn]bool{}, wake: make(chan struct{}, 1)}
}

func (d *fleetDevice) ackedCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.acked)
}

func (d *fleetDevice) delivered(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmds[id]
}

// openConns is how many connections the device holds.
func (d *fleetDevice) openConns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns)
}

// stay keeps the device connected through url until ctx ends.
func (d *fleetDevice) stay(ctx context.Context, url string) {
	for ctx.Err() == nil {
		done, err := d.connect(ctx, url)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case <-done:
		case <-ctx.Done():
			d.closeAll()
			<-done
		}
	}
}

// open connects once more, beside the connections the device holds.
func (d *fleetDevice) open(ctx context.Context, url string) error {
	_, err := d.connect(ctx, url)
	return err
}

func (d *fleetDevice) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ws := range d.conns {
		ws.Close()
	}
}

// connect opens a session; done is closed when it has ended.
func (d *fleetDevice) connect(ctx context.Context, url string) (chan struct{}, error) {
	ws, _, err := helloSession(url, d.id)
	if err != nil {
		return nil, err
	}
	var writeMu sync.Mutex
	write := func(v any) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return ws.WriteJSON(v)
	}
	d.mu.Lock()
	d.conns[ws] = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			d.mu.Lock()
			delete(d.conns, ws)
			d.mu.Unlock()
			ws.Close()
		}()
		for {
			var m deviceMsg
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			d.mu.Lock()
			switch m.Op {
			case "ack":
				delete(d.unacked, int(m.Seq))
				d.acked[int(m.Seq)] = true
			case "cmd":
				d.cmds[m.ID]++
			}
			d.mu.Unlock()
			if m.Op == "cmd" {
				_ = write(map[string]any{"op": "res", "id": m.ID, "ok": true})
			}
			select {
			case d.wake <- struct{}{}:
			default:
			}
		}
	}()
	if d.total > 0 {
		go d.stream(ctx, write, done)
	}
	return done, nil
}

// stream sends what is not acked yet, then new pubs, at most 8 unacked.
func (d *fleetDevice) stream(ctx context.Context, write func(any) error, done chan struct{}) {
	d.mu.Lock()
	var resend []int
	for seq := range d.unacked {
		resend = append(resend, seq)
	}
	d.mu.Unlock()
	for _, seq := range resend {
		if write(map[string]any{"op": "pub", "ch": "zl", "seq": seq, "data": map[string]int{"seq": seq}}) != nil {
			return
		}
	}
	for {
		d.mu.Lock()
		seq := 0
		if len(d.unacked) < 8 && d.next <= d.total {
			seq = d.next
			d.next++
			d.unacked[seq] = true
		}
		d.mu.Unlock()
		if seq != 0 {
			if write(map[string]any{"op": "pub", "ch": "zl", "seq": seq, "data": map[string]int{"seq": seq}}) != nil {
				return
			}
			// A pace, so that a run lasts long enough for an instance or
			// a broker node to be killed in its middle.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		select {
		case <-d.wake:
		case <-done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// helloSession connects as id and returns the session the welcome names.
func helloSession(url, id string) (*websocket.Conn, string, error) {
	dialer := websocket.Dialer{Subprotocols: []string{"done"}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := dialer.Dial(url, nil)
	if err != nil {
		return nil, "", err
	}
	resp.Body.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"op":"hello","id":"`+id+`"}`)); err != nil {
		ws.Close()
		return nil, "", err
	}
	_ = ws.SetReadDeadline(time.Now().Add(mqttTestWait))
	var w struct {
		Op      string `json:"op"`
		Session string `json:"session"`
	}
	if err := ws.ReadJSON(&w); err != nil || w.Op != "welcome" {
		ws.Close()
		return nil, "", fmt.Errorf("hello as %s: %+v %w", id, w, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws, w.Session, nil
}

// ---- what the broker says ----

type statusJSONMsg struct {
	State   string `json:"state"`
	Gateway string `json:"gateway"`
	Session string `json:"session"`
	Stamp   uint64 `json:"stamp"`
}

// statusLog keeps the latest status of each device.
type statusLog struct {
	mu   sync.Mutex
	last map[string]statusJSONMsg
}

func collectStatuses(t *testing.T, sub *brokertest.Subscriber) *statusLog {
	l := &statusLog{last: map[string]statusJSONMsg{}}
	drain(t, sub, func(m brokertest.Message) {
		var st statusJSONMsg
		if json.Unmarshal(m.Payload, &st) != nil {
			t.Errorf("status %s: %q", m.Topic, m.Payload)
			return
		}
		device := strings.TrimSuffix(strings.TrimPrefix(m.Topic, "wsgate/"), "/status")
		l.mu.Lock()
		l.last[device] = st
		l.mu.Unlock()
	})
	return l
}

func (l *statusLog) latest(device string) (statusJSONMsg, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.last[device]
	return st, ok
}

// waitRetained waits until the retained status of every device, as a new
// subscriber gets it, satisfies ok.
func waitRetained(t *testing.T, url string, devices []string, ok func(device string, st statusJSONMsg) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * mqttTestWait)
	for {
		got := map[string]statusJSONMsg{}
		sub := brokertest.Subscribe(t, url, "wsgate/+/status")
		for len(got) < len(devices) {
			m, more := nextMessage(sub.Messages, 2*time.Second)
			if !more {
				break
			}
			var st statusJSONMsg
			device := strings.TrimSuffix(strings.TrimPrefix(m.Topic, "wsgate/"), "/status")
			if slices.Contains(devices, device) && json.Unmarshal(m.Payload, &st) == nil {
				got[device] = st
			}
		}
		sub.Close()
		var wrong []string
		for _, d := range devices {
			if st, in := got[d]; !in || !ok(d, st) {
				wrong = append(wrong, fmt.Sprintf("%s %+v", d, st))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d retained statuses are not as they should be, e.g. %v", len(wrong), wrong[:min(3, len(wrong))])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fleetSeqs keeps the seqs each device's pubs arrived with.
type fleetSeqs struct {
	mu   sync.Mutex
	seen map[string]map[int]bool
}

func collectFleetSeqs(t *testing.T, sub *brokertest.Subscriber) *fleetSeqs {
	s := &fleetSeqs{seen: map[string]map[int]bool{}}
	drain(t, sub, func(m brokertest.Message) {
		var p struct{ Seq int }
		if json.Unmarshal(m.Payload, &p) != nil || p.Seq == 0 {
			t.Errorf("pub %s: %q", m.Topic, m.Payload)
			return
		}
		device := strings.TrimSuffix(strings.TrimPrefix(m.Topic, "wsgate/"), "/zl")
		s.mu.Lock()
		if s.seen[device] == nil {
			s.seen[device] = map[int]bool{}
		}
		s.seen[device][p.Seq] = true
		s.mu.Unlock()
	})
	return s
}

// missing waits up to mqttTestWait for seqs 1..total of device and
// returns those that did not come.
func (s *fleetSeqs) missing(device string, total int) []int {
	deadline := time.Now().Add(mqttTestWait)
	for {
		var missing []int
		s.mu.Lock()
		for seq := 1; seq <= total; seq++ {
			if !s.seen[device][seq] {
				missing = append(missing, seq)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// drain hands every message of sub to handle until the test ends.
func drain(t *testing.T, sub *brokertest.Subscriber, handle func(brokertest.Message)) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case m := <-sub.Messages:
				handle(m)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// movedResult is the error of a command that reached the forwarding hop
// limit (mqttbridge's resultMoved, as docs/DEPLOY.md gives it).
const movedResult = "the device moved between gateways while the command followed it; send it again"

type fleetResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

func parseFleetResult(t *testing.T, m brokertest.Message) fleetResult {
	t.Helper()
	var r fleetResult
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		t.Fatalf("result %s: %q", m.Topic, m.Payload)
	}
	return r
}

func nextMessage(ch <-chan brokertest.Message, d time.Duration) (brokertest.Message, bool) {
	if d <= 0 {
		select {
		case m := <-ch:
			return m, true
		default:
			return brokertest.Message{}, false
		}
	}
	select {
	case m := <-ch:
		return m, true
	case <-time.After(d):
		return brokertest.Message{}, false
	}
}

// holds reports whether the instance lists device among its sessions.
func (p *wsgateProc) holds(t *testing.T, device string) bool {
	t.Helper()
	return p.devices(t)[device]
}

// devices lists the devices the instance holds.
func (p *wsgateProc) devices(t *testing.T) map[string]bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/devices", p.cfg.adminPort))
	if err != nil {
		t.Fatalf("%s /devices: %v", p.cfg.id, err)
	}
	defer resp.Body.Close()
	var list []struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("%s /devices: %v", p.cfg.id, err)
	}
	held := map[string]bool{}
	for _, d := range list {
		held[d.ID] = true
	}
	return held
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * mqttTestWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func maxOf(xs []uint64) uint64 {
	var m uint64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// ---- nginx ----

// deployBlock returns the fenced block of lang in docs/DEPLOY.md: the
// configuration the tests run is the one the documentation gives.
func deployBlock(t *testing.T, lang string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```"+lang+"\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatalf("docs/DEPLOY.md has no ```%s block", lang)
	}
	return block
}

// exampleInstances are the instance addresses DEPLOY.md's configurations
// name; the tests put their own in.
var exampleInstances = [2]string{"10.0.0.11:8080", "10.0.0.12:8080"}

// startNginx runs nginx with DEPLOY.md's configuration in front of the
// two WebSocket ports, on a free port, and returns its ws:// URL. It is
// stopped when the test ends.
func startNginx(t *testing.T, ports ...int) string {
	t.Helper()
	bin := brokertest.Require(t, "nginx")
	dir := t.TempDir()
	port := brokertest.FreePort(t)
	site := deployBlock(t, "nginx")
	for i, addr := range exampleInstances {
		site = strings.ReplaceAll(site, addr, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	if !strings.Contains(site, "listen 80;") {
		t.Fatal("DEPLOY.md's nginx configuration no longer listens on 80")
	}
	site = strings.ReplaceAll(site, "listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port))
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	// One process (no master and workers), in the foreground, with every
	// path in the test's directory.
	conf := fmt.Sprintf(`daemon off;
master_process off;
%s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[3]s}
`, user, dir, site)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	out, exited := startHelperProcess(t, "nginx", cmd, func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(log)
	})
	deadline := time.Now().Add(mqttTestWait)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return fmt.Sprintf("ws://127.0.0.1:%d/", port)
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited at start: %s%s", out, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %d", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HAProxy accepts the configuration docs/DEPLOY.md gives (haproxy -c),
// with the test's addresses in it.
func TestDeployHAProxyConfig(t *testing.T) {
	t.Parallel()
	bin := brokertest.Require(t, "haproxy")
	cfg := deployBlock(t, "haproxy")
	for _, addr := range exampleInstances {
		if !strings.Contains(cfg, addr) {
			t.Fatalf("DEPLOY.md's HAProxy configuration no longer names %s", addr)
		}
		cfg = strings.ReplaceAll(cfg, addr, fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t)))
	}
	cfg = strings.ReplaceAll(cfg, "bind :80", fmt.Sprintf("bind 127.0.0.1:%d", brokertest.FreePort(t)))
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte("global\n    log stderr local0\n\n"+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// HAProxy, run with DEPLOY.md's configuration in front of the two
// instances and a third server whose admin address answers nothing: its
// /readyz checks mark the instances up and the third down, and a device
// connects through it.
func testHAProxy(t *testing.T, f *fleet) {
	bin := brokertest.Require(t, "haproxy")
	dir := t.TempDir()
	ports := brokertest.FreePorts(t, 2)
	port, dead := ports[0], ports[1]
	cfg := deployBlock(t, "haproxy")
	for i, addr := range exampleInstances {
		cfg = strings.ReplaceAll(cfg, addr, fmt.Sprintf("127.0.0.1:%d check port %d", f.cfgs[i].wsPort, f.cfgs[i].adminPort))
	}
	cfg = strings.ReplaceAll(cfg, "bind :80", fmt.Sprintf("bind 127.0.0.1:%d", port))
	cfg += fmt.Sprintf("    server gw-dead 127.0.0.1:%d check port %d\n", f.cfgs[0].wsPort, dead)
	sock := filepath.Join(dir, "haproxy.sock")
	path := filepath.Join(dir, "haproxy.cfg")
	global := fmt.Sprintf("global\n    stats socket %s mode 600 level admin\n\n", sock)
	if err := os.WriteFile(path, []byte(global+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, exited := startHelperProcess(t, "haproxy", exec.Command(bin, "-db", "-f", path), nil)
	want := map[string]string{"gw-1": "2", "gw-2": "2", "gw-dead": "0"} // srv_op_state: 2 running, 0 stopped
	var state map[string]string
	waitFor(t, "HAProxy's checks", func() bool {
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", out)
		default:
		}
		state = haproxyServers(sock)
		for name, op := range want {
			if state[name] != op {
				return false
			}
		}
		return true
	})
	ws, _, err := helloSession(fmt.Sprintf("ws://127.0.0.1:%d/", port), "haproxy-1")
	if err != nil {
		t.Fatalf("a device through HAProxy: %v (servers %v)", err, state)
	}
	ws.Close()
}

// haproxyServers reads the operational state of each server of the
// backend wsgate from HAProxy's stats socket; nil if it does not answer.
func haproxyServers(sock string) map[string]string {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("show servers state wsgate\n")); err != nil {
		return nil
	}
	reply, _ := io.ReadAll(c)
	state := map[string]string{}
	for _, line := range strings.Split(string(reply), "\n") {
		// be_id be_name srv_id srv_name srv_addr srv_op_state ...
		if fields := strings.Fields(line); len(fields) > 5 && !strings.HasPrefix(line, "#") {
			state[fields[3]] = fields[5]
		}
	}
	return state
}

// startHelperProcess starts cmd (nginx, haproxy) for the test, killed with
// the test binary should it die without cleaning up (a test timeout
// panics), and stopped with SIGTERM when the test ends; a failed test logs
// its output and what more returns. exited is closed when it exits.
func startHelperProcess(t *testing.T, name string, cmd *exec.Cmd, more func() string) (out *brokertest.Output, exited <-chan struct{}) {
	t.Helper()
	cmd.SysProcAttr = brokertest.DieWithParent()
	out = &brokertest.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			extra := ""
			if more != nil {
				extra = more()
			}
			t.Logf("%s:\n%s%s", name, out, extra)
		}
	})
	return out, done
}
