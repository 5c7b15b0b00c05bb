package done

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// fakeOutlet records what a session does. The WebSocket side is tested in
// the gateway; here the session is driven directly.
type fakeOutlet struct {
	mu       sync.Mutex
	sent     []protocols.Message
	frames   []protocols.Frame
	attached []string
	tokens   []string // the token of each Attach
	// descriptions holds the description of each Attach.
	descriptions []*protocols.Description
	closes       []closeCall

	attachErr error
	sendErr   error
	// publish, when set, decides what Publish returns; the frame is recorded
	// only when it returns nil.
	publish func(protocols.Frame) error
}

type closeCall struct {
	code   int
	reason string
}

func (o *fakeOutlet) Attach(d protocols.Device) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.attachErr != nil {
		return o.attachErr
	}
	o.attached = append(o.attached, d.ID)
	o.tokens = append(o.tokens, d.Token)
	o.descriptions = append(o.descriptions, d.Description)
	return nil
}

func (o *fakeOutlet) Send(m protocols.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sendErr != nil {
		return o.sendErr
	}
	m.Data = bytes.Clone(m.Data)
	o.sent = append(o.sent, m)
	return nil
}

func (o *fakeOutlet) Publish(f protocols.Frame) error {
	o.mu.Lock()
	publish := o.publish
	o.mu.Unlock()
	if publish != nil {
		if err := publish(f); err != nil {
			return err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	f.Device = "d1"
	if len(o.attached) > 0 {
		f.Device = o.attached[0]
	}
	o.frames = append(o.frames, f)
	return nil
}

func (o *fakeOutlet) Close(code int, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closes = append(o.closes, closeCall{code, reason})
}

var _ protocols.Outlet = (*fakeOutlet)(nil)

func (o *fakeOutlet) setPublish(f func(protocols.Frame) error) {
	o.mu.Lock()
	o.publish = f
	o.mu.Unlock()
}

// takeSent returns the messages sent since the last call, decoded; each
// must be a text message holding a JSON object with a string "op".
func (o *fakeOutlet) takeSent(t testing.TB) []map[string]any {
	t.Helper()
	o.mu.Lock()
	sent := o.sent
	o.sent = nil
	o.mu.Unlock()
	out := make([]map[string]any, 0, len(sent))
	for _, m := range sent {
		out = append(out, decodeSent(t, m))
	}
	return out
}

// takeSentRaw returns the messages sent so far as text, and forgets them.
func (o *fakeOutlet) takeSentRaw() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, m := range o.sent {
		out = append(out, string(m.Data))
	}
	o.sent = nil
	return out
}

// decodeSent checks that m is a well-formed gateway message and decodes it
// with numbers kept as json.Number.
func decodeSent(t testing.TB, m protocols.Message) map[string]any {
	t.Helper()
	if m.Type != protocols.Text {
		t.Fatalf("sent a %v message, want text: %q", m.Type, m.Data)
	}
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil || dec.More() || !json.Valid(m.Data) {
		t.Fatalf("sent message is not one JSON object (%v): %q", err, m.Data)
	}
	op, ok := v["op"].(string)
	if !ok {
		t.Fatalf("sent message has no string op: %q", m.Data)
	}
	switch op {
	case "welcome", "ack", "nack", "cmd", "error":
	default:
		t.Fatalf("sent message has op %q that the spec does not define: %q", op, m.Data)
	}
	return v
}

func (o *fakeOutlet) takeFrames() []protocols.Frame {
	o.mu.Lock()
	defer o.mu.Unlock()
	f := o.frames
	o.frames = nil
	return f
}

func (o *fakeOutlet) frameCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.frames)
}

func (o *fakeOutlet) takeCloses() []closeCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.closes
	o.closes = nil
	return c
}

// testInfo is the SessionInfo every test session gets.
var testInfo = protocols.SessionInfo{
	ID:          "7f3a",
	Subprotocol: Name,
	RemoteAddr:  "192.0.2.1:40000",
	Path:        "/",
	MaxMessage:  65536,
	Heartbeat:   30 * time.Second,
	Gateway:     "hub-1",
}

// start opens a session with cfg (DefaultConfig changed by edit, if given).
func start(t testing.TB, edit func(*Config)) (protocols.Session, *fakeOutlet) {
	t.Helper()
	return startInfo(t, edit, nil)
}

// startInfo is start with testInfo changed by editInfo, if given.
func startInfo(t testing.TB, edit func(*Config), editInfo func(*protocols.SessionInfo)) (protocols.Session, *fakeOutlet) {
	t.Helper()
	cfg := DefaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(module.Settings{}); err != nil {
		t.Fatalf("test config: %v", err)
	}
	info := testInfo
	if editInfo != nil {
		editInfo(&info)
	}
	out := &fakeOutlet{}
	s, err := New(cfg).NewSession(t.Context(), info, out)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close(nil) })
	return s, out
}

// started opens a session and completes a hello as device d1.
func started(t testing.TB, edit func(*Config)) (protocols.Session, *fakeOutlet) {
	t.Helper()
	s, out := start(t, edit)
	hello(t, s, out)
	return s, out
}

// hello says hello as device d1.
func hello(t testing.TB, s protocols.Session, out *fakeOutlet) {
	t.Helper()
	mustText(t, s, `{"op":"hello","id":"d1"}`)
	if got := out.takeSent(t); len(got) != 1 || got[0]["op"] != "welcome" {
		t.Fatalf("hello got %v, want a welcome", got)
	}
}

func text(s string) protocols.Message {
	return protocols.Message{Type: protocols.Text, Data: []byte(s)}
}

// mustText delivers a text message that must not end the session.
func mustText(t testing.TB, s protocols.Session, msg string) {
	t.Helper()
	if err := s.OnMessage(text(msg)); err != nil {
		t.Fatalf("OnMessage(%s): %v", msg, err)
	}
}

// wantClose checks that err asks for a close with code.
func wantClose(t testing.TB, err error, code int) {
	t.Helper()
	var ce *protocols.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a close %d", err, code)
	}
	if ce.Code != code {
		t.Fatalf("close code %d (%s), want %d", ce.Code, ce.Reason, code)
	}
	if ce.Reason == "" || len(ce.Reason) > 123 {
		t.Errorf("close reason %q does not fit a close frame", ce.Reason)
	}
}

// wantSent checks that exactly the messages want (JSON, compared as values)
// were sent since the last check.
func wantSent(t testing.TB, out *fakeOutlet, want ...string) {
	t.Helper()
	got := out.takeSent(t)
	if len(got) != len(want) {
		t.Fatalf("sent %d messages %v, want %d: %v", len(got), got, len(want), want)
	}
	for i := range want {
		w := jsonValue(t, []byte(want[i]))
		if !reflect.DeepEqual(any(got[i]), w) {
			t.Errorf("message %d = %v, want %s", i, got[i], want[i])
		}
	}
}

// wantCode checks that exactly one message was sent: op (error or nack)
// with the code, and for a nack the seq; the reason must say something.
func wantCode(t testing.TB, out *fakeOutlet, op, code string, seq ...uint64) map[string]any {
	t.Helper()
	got := out.takeSent(t)
	if len(got) != 1 {
		t.Fatalf("sent %v, want one %s %s", got, op, code)
	}
	m := got[0]
	if m["op"] != op || m["code"] != code {
		t.Fatalf("sent %v, want op %s code %s", m, op, code)
	}
	if r, _ := m["reason"].(string); r == "" {
		t.Errorf("%s %s without a reason: %v", op, code, m)
	}
	if op == "nack" {
		if len(seq) != 1 || m["seq"] != json.Number(fmt.Sprint(seq[0])) {
			t.Errorf("nack %v, want seq %v", m, seq)
		}
	} else if _, has := m["seq"]; has {
		t.Errorf("error carries a seq: %v", m)
	}
	return m
}

func wantNothing(t testing.TB, out *fakeOutlet) {
	t.Helper()
	if got := out.takeSent(t); len(got) > 0 {
		t.Errorf("sent %v, want nothing", got)
	}
	if f := out.takeFrames(); len(f) > 0 {
		t.Errorf("published %d frames, want none: %+v", len(f), f)
	}
}

func jsonValue(t testing.TB, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("test JSON %q: %v", data, err)
	}
	return v
}

// oneFrame returns the single frame published since the last check.
func oneFrame(t testing.TB, out *fakeOutlet) protocols.Frame {
	t.Helper()
	f := out.takeFrames()
	if len(f) != 1 {
		t.Fatalf("published %d frames, want 1: %+v", len(f), f)
	}
	return f[0]
}

func longString(n int) string { return strings.Repeat("a", n) }
