package plugins

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

// These tests hold the plugin path to the contract a built-in protocol
// lives by: the same protocols.Protocol behaves the same in both
// deployments.

func TestNewSessionErrorReachesTheDevice(t *testing.T) {
	log, logged := captureLog()
	e, err := newEnv(t, Options{Log: log}, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path       string
		wantCode   int
		wantReason string
	}{
		{"/refuse/4001/not-registered", 4001, "not-registered"},
		{"/refuse/1008/who-are-you", protocols.ClosePolicyViolation, "who-are-you"},
		{"/fail", protocols.CloseInternalError, "no such device"},
		{"/panic-in/NewSession", protocols.CloseInternalError, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ws := e.dial(t, tt.path, "test-echo")
			ce := readClose(t, ws)
			if ce.Code != tt.wantCode || ce.Text != tt.wantReason {
				t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Text, tt.wantCode, tt.wantReason)
			}
			local := ws.LocalAddr().String() // the gateway's view of the device
			waitFor(t, "the refusal in the log", func() bool {
				return logged(`level=INFO msg="session refused"`) && logged("remote="+local)
			})
		})
	}
	// None of it cost the other sessions their plugin.
	ws := e.dial(t, "/", "test-echo")
	send(t, ws, "still here")
	expect(t, ws, "still here")
	if s := e.host.Status()[0]; s.Restarts != 0 {
		t.Errorf("the plugin restarted %d times", s.Restarts)
	}
}

func TestAttachReturnsTheGatewaysAnswer(t *testing.T) {
	_, p := startHost(t, Options{})
	tests := []struct {
		name    string
		gateway error
		want    string
	}{
		{"accepted", nil, "attached dev-1"},
		{"unauthorized", fmt.Errorf("%w: unknown device or wrong token", protocols.ErrUnauthorized), "attach refused unauthorized"},
		{"forbidden", fmt.Errorf("%w: not on this listener", protocols.ErrForbidden), "attach refused forbidden"},
		{"busy", fmt.Errorf("%w: token check queue full", protocols.ErrBusy), "attach refused busy"},
		{"other", errors.New("session already attached as dev-0"), "attach refused other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := &recorder{attach: func(protocols.Device) error { return tt.gateway }}
			s := open(t, p, protocols.SessionInfo{Path: "/"}, out)
			if err := s.OnMessage(text("!attach dev-1")); err != nil {
				t.Fatal(err)
			}
			out.waitSent(t, tt.want)
		})
	}
}

func TestGoingAwayReachesThePluginSession(t *testing.T) {
	_, p := startHost(t, Options{})
	tests := []struct {
		path      string
		wantSent  string
		wantClose closeFrame
	}{
		{"/polite", "going away", closeFrame{protocols.CloseNormal, "bye"}},
		// A session without a closing handshake of its own closes as the
		// gateway closes built-in ones.
		{"/", "", closeFrame{protocols.CloseGoingAway, "going away"}},
		{"/panic-in/GoingAway", "", closeFrame{protocols.CloseGoingAway, "going away"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			out := &recorder{}
			s := open(t, p, protocols.SessionInfo{Path: tt.path}, out)
			g, ok := s.(protocols.GoingAway)
			if !ok {
				t.Fatal("a plugin's session does not implement protocols.GoingAway")
			}
			g.GoingAway()
			if got := out.waitClose(t); got != tt.wantClose {
				t.Errorf("closed with %+v, want %+v", got, tt.wantClose)
			}
			if tt.wantSent != "" {
				out.waitSent(t, tt.wantSent)
			}
		})
	}
}

func TestGoingAwayAtGatewayShutdown(t *testing.T) {
	e, err := newEnv(t, Options{}, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	ws := e.dial(t, "/polite", "test-echo")
	send(t, ws, "hello")
	expect(t, ws, "hello")
	shutdown := make(chan error, 1)
	go func() { shutdown <- e.server.Shutdown(t.Context()) }()
	expect(t, ws, "going away")
	if ce := readClose(t, ws); ce.Code != protocols.CloseNormal || ce.Text != "bye" {
		t.Fatalf("closed with %d %q, want the session's own 1000 \"bye\"", ce.Code, ce.Text)
	}
	ws.Close()
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
}

func TestTLSStateReachesThePluginSession(t *testing.T) {
	_, p := startHost(t, Options{})
	cert := selfSigned(t, "device-7")
	tests := []struct {
		name string
		tls  *tls.ConnectionState
		want string
	}{
		{"plain", nil, "tls none"},
		{"server only", &tls.ConnectionState{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			ServerName: "gw.example"}, "tls 0x0303 0xc02b gw.example -"},
		{"client certificate", &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256,
			ServerName: "gw.example", PeerCertificates: []*x509.Certificate{cert}}, "tls 0x0304 0x1301 gw.example device-7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := &recorder{}
			s := open(t, p, protocols.SessionInfo{Path: "/", TLS: tt.tls}, out)
			if err := s.OnMessage(text("!tls")); err != nil {
				t.Fatal(err)
			}
			out.waitSent(t, tt.want)
		})
	}
}

func TestOutletDoesNotBlock(t *testing.T) {
	log, logged := captureLog()
	_, p := startHost(t, Options{Log: log})
	tests := []struct {
		call string
		want string // what the failed call matched, as the plugin logged it
	}{
		{"send", "send_queue_full=true"},
		{"publish", "busy=true"},
	}
	for _, tt := range tests {
		t.Run(tt.call, func(t *testing.T) {
			// The gateway side takes nothing: the plugin's stream backs up
			// and its outlet fills. The plugin logs once a call has failed;
			// a call that blocked instead would leave it waiting forever.
			hold := make(chan struct{})
			out := &recorder{hold: hold}
			s := open(t, p, protocols.SessionInfo{Path: "/"}, out)
			release := sync.OnceFunc(func() { close(hold) })
			t.Cleanup(release) // before the session's Close, should the test fail
			if err := s.OnMessage(text("!flood " + tt.call)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the flood to stop", func() bool { return logged(`msg="flood stopped"`) && logged(tt.want) })
			// Once the gateway takes actions again, the backlog drains and
			// the session goes on.
			release()
			out.waitSent(t, "flood over")
			if err := s.OnMessage(text("after the flood")); err != nil {
				t.Fatal(err)
			}
			out.waitSent(t, "after the flood")
		})
	}
}

func TestSessionPanicClosesOnlyThatSession(t *testing.T) {
	log, logged := captureLog()
	e, err := newEnv(t, Options{Log: log}, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	pid := e.host.Status()[0].PID
	var others []*websocket.Conn
	for i := range 2 {
		ws := e.dial(t, "/", "test-echo")
		send(t, ws, fmt.Sprintf("!attach dev-%d", i))
		expect(t, ws, fmt.Sprintf("attached dev-%d", i))
		others = append(others, ws)
	}
	poisoned := e.dial(t, "/", "test-echo")
	send(t, poisoned, "!panic")
	if ce := readClose(t, poisoned); ce.Code != protocols.CloseInternalError || ce.Text != "internal error" {
		t.Fatalf("the panicking session closed with %d %q, want 1011 \"internal error\"", ce.Code, ce.Text)
	}
	for i, ws := range others {
		send(t, ws, fmt.Sprintf("dev-%d still here", i))
		expect(t, ws, fmt.Sprintf("dev-%d still here", i))
	}
	if s := e.host.Status()[0]; s.PID != pid || s.Restarts != 0 || s.State != "running" {
		t.Errorf("status %+v after a session panic, want the same process (pid %d) running", s, pid)
	}
	waitFor(t, "the panic and its stack in the gateway's log", func() bool {
		return logged(`msg="protocol session panicked"`) && logged(`method=OnMessage`) && logged(`panic="poisoned message"`) &&
			logged("testplugin/main.go")
	})
}

func TestSessionPanicInEveryMethod(t *testing.T) {
	log, logged := captureLog()
	h, p := startHost(t, Options{Log: log})
	pid := h.Status()[0].PID
	internal := closeFrame{protocols.CloseInternalError, "internal error"}
	tests := []struct {
		method    string
		path      string
		poison    func(protocols.Session)
		wantClose *closeFrame // nil: the session is over anyway
	}{
		{"NewSession", "/panic-in/NewSession", nil, &internal},
		{"OnMessage", "/", func(s protocols.Session) { _ = s.OnMessage(text("!panic")) }, &internal},
		{"OnCommand", "/", func(s protocols.Session) { _ = s.OnCommand(protocols.Command{ID: "c1", Name: "panic"}) }, &internal},
		{"Close", "/panic-in/Close", func(s protocols.Session) { s.Close(nil) }, nil},
		{"GoingAway", "/panic-in/GoingAway", func(s protocols.Session) { s.(protocols.GoingAway).GoingAway() },
			&closeFrame{protocols.CloseGoingAway, "going away"}},
	}
	for i, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			out := &recorder{}
			// An address each: panics are blamed on the device, and too many
			// would have it refused.
			info := protocols.SessionInfo{Path: tt.path, RemoteAddr: fmt.Sprintf("192.0.2.%d:40000", i+1)}
			s, err := p.NewSession(t.Context(), info, out)
			if tt.poison == nil {
				if err == nil {
					s.Close(nil)
					t.Fatal("NewSession panicked, yet returned a session")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				tt.poison(s)
				defer s.Close(nil)
			}
			if tt.wantClose != nil {
				if got := out.waitClose(t); got != *tt.wantClose {
					t.Errorf("closed with %+v, want %+v", got, *tt.wantClose)
				}
			}
			waitFor(t, "the panic in the log", func() bool { return logged("method=" + tt.method) })

			// The plugin serves on.
			other := &recorder{}
			o := open(t, p, protocols.SessionInfo{Path: "/"}, other)
			if err := o.OnMessage(text("still here")); err != nil {
				t.Fatal(err)
			}
			other.waitSent(t, "still here")
			if got := h.Status()[0].PID; got != pid {
				t.Fatalf("the plugin process changed: pid %d, was %d", got, pid)
			}
		})
	}
}

func TestHungPluginIsReplaced(t *testing.T) {
	opts := Options{RestartMin: 20 * time.Millisecond, HealthInterval: 50 * time.Millisecond, HealthTimeout: 200 * time.Millisecond}
	e, err := newEnv(t, opts, []string{"test-echo"}, spec(t, testPlugin))
	if err != nil {
		t.Fatal(err)
	}
	ws := e.dial(t, "/", "test-echo")
	send(t, ws, "before")
	expect(t, ws, "before")
	pid := e.host.Status()[0].PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Should the test fail first, a running process lets Close end it.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	send(t, ws, "anyone?")
	expectClose(t, ws, protocols.CloseInternalError)
	waitFor(t, "the stopped process to be killed", func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) })
	waitFor(t, "a new process", func() bool {
		s := e.host.Status()[0]
		return s.State == "running" && s.PID != pid
	})
	fresh := e.dial(t, "/", "test-echo")
	send(t, fresh, "after")
	expect(t, fresh, "after")
}

// startHost runs testplugin in a host of its own, for tests that drive its
// sessions directly.
func startHost(t *testing.T, opts Options) (*Host, protocols.Protocol) {
	t.Helper()
	registry, err := protocols.NewRegistry([]string{"test-echo"})
	if err != nil {
		t.Fatal(err)
	}
	opts.Registry = registry
	if opts.Log == nil {
		opts.Log = quietLog()
	}
	h := NewHost(opts)
	t.Cleanup(h.Close)
	if err := h.Start([]Spec{spec(t, testPlugin)}); err != nil {
		t.Fatal(err)
	}
	p, ok := registry.Lookup("test-echo")
	if !ok {
		t.Fatal("test-echo is not registered")
	}
	return h, p
}

// open starts a session of p whose gateway side is out; it is closed when
// the test ends.
func open(t *testing.T, p protocols.Protocol, info protocols.SessionInfo, out protocols.Outlet) protocols.Session {
	t.Helper()
	if info.RemoteAddr == "" {
		info.RemoteAddr = "198.51.100.1:40000"
	}
	s, err := p.NewSession(t.Context(), info, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(nil) })
	return s
}

func text(s string) protocols.Message {
	return protocols.Message{Type: protocols.Text, Data: []byte(s)}
}

// recorder is the gateway side of a session a test drives directly: it
// records what the plugin does. While hold is open, every call waits for
// it to close: a gateway that takes nothing.
type recorder struct {
	attach func(protocols.Device) error
	hold   chan struct{}

	mu     sync.Mutex
	sent   []string
	closes []closeFrame
}

type closeFrame struct {
	code   int
	reason string
}

func (r *recorder) wait() {
	if r.hold != nil {
		<-r.hold
	}
}

func (r *recorder) Attach(d protocols.Device) error {
	r.wait()
	if r.attach != nil {
		return r.attach(d)
	}
	return nil
}

func (r *recorder) Send(m protocols.Message) error {
	r.wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, string(m.Data))
	return nil
}

func (r *recorder) Publish(f protocols.Frame) error {
	r.wait()
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

func (r *recorder) Close(code int, reason string) {
	r.wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closes = append(r.closes, closeFrame{code, reason})
}

func (r *recorder) waitSent(t *testing.T, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%q to be sent", want), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return slices.Contains(r.sent, want)
	})
}

// waitClose returns the first close.
func (r *recorder) waitClose(t *testing.T) closeFrame {
	t.Helper()
	var first closeFrame
	waitFor(t, "a close", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.closes) == 0 {
			return false
		}
		first = r.closes[0]
		return true
	})
	return first
}

// selfSigned makes a certificate for a device named cn.
func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// keeper keeps the data of every Send and the payload of every Publish as
// given, without copying, as the gateway's queues do.
type keeper struct {
	mu        sync.Mutex
	sent      [][]byte
	published map[string][]byte // by channel
}

func (k *keeper) Attach(protocols.Device) error { return nil }
func (k *keeper) Close(int, string)             {}

func (k *keeper) Send(m protocols.Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sent = append(k.sent, m.Data)
	return nil
}

func (k *keeper) Publish(f protocols.Frame) error {
	k.mu.Lock()
	k.published[f.Channel] = f.Payload
	k.mu.Unlock()
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

func (k *keeper) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.sent)
}

// The gateway decodes each batch of the plugin's actions into the previous
// batch's: what it hands on (message data, frame payloads) must not be
// overwritten by the batches after it.
func TestPayloadsOutliveTheirBatch(t *testing.T) {
	_, p := startHost(t, Options{})
	out := &keeper{published: make(map[string][]byte)}
	s := open(t, p, protocols.SessionInfo{Path: "/"}, out)
	const n = 3000
	echo := func(i int) string { return fmt.Sprintf("echo %d %s", i, strings.Repeat("e", i%97)) }
	payload := func(i int) string { return fmt.Sprintf("data-%d-%s", i, strings.Repeat("p", i%89)) }
	want := make(map[string]bool) // what must have been sent, each once
	for i := range n {
		msg := echo(i)
		if i%2 == 1 {
			msg = fmt.Sprintf("!publish ch%d %s", i, payload(i))
			want[fmt.Sprintf("ack ch%d", i)] = true
		} else {
			want[msg] = true
		}
		if err := s.OnMessage(text(msg)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every answer", func() bool { return out.count() == n })
	out.mu.Lock()
	defer out.mu.Unlock()
	for _, data := range out.sent {
		if !want[string(data)] {
			t.Fatalf("sent %q: not one of the answers, or twice", data)
		}
		delete(want, string(data))
	}
	for i := 1; i < n; i += 2 {
		ch := fmt.Sprintf("ch%d", i)
		if got := string(out.published[ch]); got != payload(i) {
			t.Fatalf("frame on %s: payload %q, want %q", ch, got, payload(i))
		}
	}
}

// A plugin's QoS is a uint32 on the wire: one beyond a byte must stay out
// of MQTT's range (the bridge refuses it) rather than wrap into a valid one.
func TestQoSOfAPluginFrame(t *testing.T) {
	for _, tc := range []struct {
		wire uint32
		want byte
	}{{0, 0}, {1, 1}, {2, 2}, {3, 3}, {255, 255}, {256, 255}, {257, 255}, {1<<32 - 1, 255}} {
		if got := qosOf(tc.wire); got != tc.want {
			t.Errorf("qosOf(%d) = %d, want %d", tc.wire, got, tc.want)
		}
	}
}

// Many sessions share one plugin's link: each gets its own messages back,
// all of them and in order, while the others' interleave with them.
func TestLinkCarriesManySessions(t *testing.T) {
	_, p := startHost(t, Options{})
	const sessions, messages = 20, 50
	recs := make([]*recorder, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		recs[i] = &recorder{}
		s := open(t, p, protocols.SessionInfo{ID: fmt.Sprint("s", i)}, recs[i])
		wg.Go(func() {
			for j := range messages {
				if err := s.OnMessage(text(fmt.Sprintf("s%d-%d", i, j))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, r := range recs {
		r.waitSent(t, fmt.Sprintf("s%d-%d", i, messages-1))
		r.mu.Lock()
		got := slices.Clone(r.sent)
		r.mu.Unlock()
		for j, m := range got {
			if want := fmt.Sprintf("s%d-%d", i, j); m != want {
				t.Fatalf("session %d: message %d is %q, want %q (all: %q)", i, j, m, want, got)
			}
		}
	}
}

// A session whose gateway side does not take its actions holds up no other
// session of the plugin: each carries out its actions on its own goroutine.
func TestLinkSessionWaitingHoldsUpNoOther(t *testing.T) {
	_, p := startHost(t, Options{})
	stuck := &recorder{hold: make(chan struct{})}
	defer close(stuck.hold)
	s1 := open(t, p, protocols.SessionInfo{ID: "stuck"}, stuck)
	if err := s1.OnMessage(text("blocked")); err != nil {
		t.Fatal(err)
	}
	free := &recorder{}
	s2 := open(t, p, protocols.SessionInfo{ID: "free"}, free)
	for i := range 100 {
		if err := s2.OnMessage(text(fmt.Sprint("free-", i))); err != nil {
			t.Fatal(err)
		}
	}
	free.waitSent(t, "free-99")
}

// A broken link is a broken plugin: its sessions close with 1011 and the
// process is replaced, even though it still runs and answers its probes.
func TestBrokenLinkReplacesThePlugin(t *testing.T) {
	h, p := startHost(t, Options{RestartMin: 20 * time.Millisecond})
	rec := &recorder{}
	s := open(t, p, protocols.SessionInfo{ID: "before"}, rec)
	if err := s.OnMessage(text("hello")); err != nil {
		t.Fatal(err)
	}
	rec.waitSent(t, "hello")
	before := h.Status()[0]
	h.plugins[0].running().link.conn.Close()
	if c := rec.waitClose(t); c.code != protocols.CloseInternalError {
		t.Fatalf("closed with %d %q, want 1011", c.code, c.reason)
	}
	waitFor(t, "a new process", func() bool {
		st := h.Status()[0]
		return st.State == "running" && st.PID != before.PID && st.Restarts == 1
	})
	fresh := &recorder{}
	s = open(t, p, protocols.SessionInfo{ID: "after"}, fresh)
	if err := s.OnMessage(text("again")); err != nil {
		t.Fatal(err)
	}
	fresh.waitSent(t, "again")
}

// When the connection ends while the plugin is still in NewSession, the
// plugin's NewSession sees its context end, as a built-in protocol's would.
func TestAbandonedOpenEndsThePluginsContext(t *testing.T) {
	log, logged := captureLog()
	_, p := startHost(t, Options{Log: log})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	rec := &recorder{}
	_, err := p.NewSession(ctx, protocols.SessionInfo{ID: "slow", Path: "/slow-open", RemoteAddr: "198.51.100.1:40000"}, rec)
	if err == nil || !strings.Contains(err.Error(), "connection ended") {
		t.Fatalf("NewSession: %v, want the connection's end", err)
	}
	waitFor(t, "the plugin to give up its NewSession", func() bool { return logged("open abandoned") })
}

// A plugin that crashes and is restarted leaves no file descriptor behind
// in the gateway: its link, among others, is closed with it.
func TestRestartsLeaveNoDescriptors(t *testing.T) {
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd here:", err)
		}
		return len(entries)
	}
	h, p := startHost(t, Options{RestartMin: 10 * time.Millisecond})
	before := count()
	for i := range 3 {
		rec := &recorder{}
		s := open(t, p, protocols.SessionInfo{ID: fmt.Sprint("crash-", i)}, rec)
		if err := s.OnMessage(text("!exit")); err != nil {
			t.Fatal(err)
		}
		rec.waitClose(t)
		waitFor(t, "the plugin to restart", func() bool {
			st := h.Status()[0]
			return st.State == "running" && st.Restarts == i+1
		})
	}
	waitFor(t, "the descriptors of the old processes to close", func() bool { return count() <= before })
}

// The link is the plugin's alone: another child of the gateway (a device
// driver's command, say) inherits no end of it.
func TestLinkNotInheritedByOtherChildren(t *testing.T) {
	startHost(t, Options{})
	out, err := exec.Command("/bin/sh", "-c", "ls -l /proc/self/fd").CombinedOutput()
	if err != nil {
		t.Skipf("cannot list a child's descriptors here: %v: %s", err, out)
	}
	if strings.Contains(string(out), "socket:") {
		t.Fatalf("a child of the gateway holds a socket:\n%s", out)
	}
}
