package done

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

func TestHello(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil)
	mustText(t, s, `{"op":"hello","id":"kitchen-sensor","model":"esp32-th","fw":"1.2","extra":{"x":1}}`)
	wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":30,"max":65536}`)
	if want := (&protocols.Description{Model: "esp32-th", Firmware: "1.2"}); len(out.descriptions) != 1 || !reflect.DeepEqual(out.descriptions[0], want) {
		t.Errorf("attached with %+v, want %+v", out.descriptions, want)
	}
	if !slices.Equal(out.attached, []string{"kitchen-sensor"}) {
		t.Errorf("attached %q, want [kitchen-sensor]", out.attached)
	}
	if c := out.takeCloses(); len(c) > 0 {
		t.Errorf("closed %v", c)
	}
	if f := out.takeFrames(); len(f) > 0 {
		t.Errorf("hello published %+v", f)
	}

	// A second hello is an error, and the session goes on.
	mustText(t, s, `{"op":"hello","id":"other"}`)
	wantCode(t, out, "error", CodeBadRequest)
	if len(out.attached) != 1 {
		t.Errorf("attached again: %q", out.attached)
	}
}

func TestHelloHeartbeatOff(t *testing.T) {
	t.Parallel()
	out := &fakeOutlet{}
	info := testInfo
	info.Heartbeat, info.MaxMessage = 0, 1024
	s, err := New(DefaultConfig()).NewSession(t.Context(), info, out)
	if err != nil {
		t.Fatal(err)
	}
	mustText(t, s, `{"op":"hello","id":"d1"}`)
	wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":0,"max":1024}`)
}

func TestHelloValidIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "A.b_c-9", longString(128), "0", "-", "..", "_"} {
		s, out := start(t, nil)
		mustText(t, s, `{"op":"hello","id":"`+id+`"}`)
		if got := out.takeSent(t); len(got) != 1 || got[0]["op"] != "welcome" {
			t.Errorf("hello %q: sent %v, want a welcome", id, got)
		}
		if !slices.Equal(out.attached, []string{id}) {
			t.Errorf("hello %q: attached %q", id, out.attached)
		}
	}
}

func TestHelloInvalidID(t *testing.T) {
	t.Parallel()
	for _, hello := range []string{
		`{"op":"hello"}`,
		`{"op":"hello","id":""}`,
		`{"op":"hello","id":"` + longString(129) + `"}`,
		`{"op":"hello","id":"a b"}`,
		`{"op":"hello","id":"a/b"}`,
		`{"op":"hello","id":"a+b"}`,
		`{"op":"hello","id":"#"}`,
		`{"op":"hello","id":"$SYS"}`,
		`{"op":"hello","id":"dévice"}`,
		`{"op":"hello","id":"a\u0000b"}`,
		`{"op":"hello","id":"a:b"}`,
		`{"op":"hello","id":null}`,
	} {
		s, out := start(t, nil)
		err := s.OnMessage(text(hello))
		wantClose(t, err, protocols.ClosePolicyViolation)
		wantCode(t, out, "error", CodeBadRequest)
		if len(out.attached) > 0 {
			t.Errorf("%s attached %q", hello, out.attached)
		}
	}
}

func TestHelloWrongType(t *testing.T) {
	t.Parallel()
	for _, hello := range []string{`{"op":"hello","id":5}`, `{"op":"hello","id":"d1","token":1}`, `{"op":1,"id":"d1"}`} {
		s, out := start(t, nil)
		wantClose(t, s.OnMessage(text(hello)), protocols.ClosePolicyViolation)
		wantCode(t, out, "error", CodeBadRequest)
		if len(out.attached) > 0 {
			t.Errorf("%s attached %q", hello, out.attached)
		}
	}
}

func TestFirstMessageNotHello(t *testing.T) {
	t.Parallel()
	for _, first := range []string{
		`{"op":"pub","ch":"telemetry","data":1,"seq":1}`,
		`{"op":"res","id":"c1","ok":true}`,
		`{"op":"bye"}`,
		`{"op":"welcome","session":"x"}`,
		`{"op":"HELLO","id":"d1"}`,
		`{"id":"d1"}`,
		`{}`,
		`null`,
		`[{"op":"hello","id":"d1"}]`,
		`"hello"`,
		`42`,
	} {
		s, out := start(t, nil)
		wantClose(t, s.OnMessage(text(first)), protocols.ClosePolicyViolation)
		wantCode(t, out, "error", CodeBadRequest)
		if len(out.attached) > 0 || out.frameCount() > 0 {
			t.Errorf("%s: attached %q, published %d", first, out.attached, out.frameCount())
		}
	}
}

func TestFirstMessageMalformed(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil)
	wantClose(t, s.OnMessage(text(`{"op":"hello","id":"d1"`)), protocols.CloseInvalidPayload)
	wantNothing(t, out)

	s, out = start(t, nil)
	err := s.OnMessage(protocols.Message{Type: protocols.Binary, Data: []byte{0xa1, 0x62, 0x6f, 0x70}})
	wantClose(t, err, protocols.CloseUnsupportedData)
	wantNothing(t, out)
}

// TestHelloToken: the hello's token goes to Attach, where the gateway
// checks it; a device the gateway refuses gets unauthorized and 1008, and
// the reason does not repeat the token.
func TestHelloToken(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil)
	mustText(t, s, `{"op":"hello","id":"kitchen-sensor","token":"s3cret","model":"esp32-th"}`)
	if len(out.tokens) != 1 || out.tokens[0] != "s3cret" {
		t.Errorf("tokens given to Attach: %q", out.tokens)
	}

	s, out = start(t, nil)
	out.attachErr = fmt.Errorf("%w: wrong token", protocols.ErrUnauthorized)
	err := s.OnMessage(text(`{"op":"hello","id":"kitchen-sensor","token":"s3cret"}`))
	wantClose(t, err, protocols.ClosePolicyViolation)
	m := wantCode(t, out, "error", CodeUnauthorized)
	if strings.Contains(fmt.Sprint(m["reason"]), "s3cret") {
		t.Errorf("the reason reveals the token: %v", m)
	}
}

// TestPlainTokensRefused: the plain-text tokens of earlier versions are
// refused by check, with what to do instead.
func TestPlainTokensRefused(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.Tokens = map[string]string{"kitchen-sensor": "s3cret"}
	err := c.Validate(module.Settings{})
	if err == nil || !strings.Contains(err.Error(), "tokens: plain-text tokens are no longer accepted") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Validate = %v", err)
	}
}

func TestHelloWithoutTokensIgnoresToken(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil)
	mustText(t, s, `{"op":"hello","id":"d1","token":"anything"}`)
	if got := out.takeSent(t); len(got) != 1 || got[0]["op"] != "welcome" {
		t.Errorf("sent %v, want a welcome", got)
	}
}

func TestHelloAttachFails(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil)
	out.attachErr = protocols.ErrClosed
	err := s.OnMessage(text(`{"op":"hello","id":"d1"}`))
	var ce *protocols.CloseError
	if err == nil || errors.As(err, &ce) || !errors.Is(err, protocols.ErrClosed) {
		t.Fatalf("err = %v, want the attach error (close 1011)", err)
	}
	wantCode(t, out, "error", CodeInternal)
}

func TestPubAck(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	mustText(t, s, `{"op":"pub","ch":"telemetry","data":{"t":21.5,"rh":40},"seq":1}`)
	f := oneFrame(t, out)
	if f.Channel != "telemetry" || string(f.Payload) != `{"t":21.5,"rh":40}` || f.QoS != 1 || f.Retain || f.Ack == nil {
		t.Fatalf("frame = %+v", f)
	}
	wantSent(t, out) // no ack before the guarantee holds
	f.Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":1}`)

	// retain and explicit qos 1, seq as high as it goes.
	mustText(t, s, `{"op":"pub","ch":"sensors/temp","data":21.5,"seq":18446744073709551615,"qos":1,"retain":true,"ts":1700000000000}`)
	f = oneFrame(t, out)
	if f.Channel != "sensors/temp" || string(f.Payload) != `21.5` || f.QoS != 1 || !f.Retain || f.Ack == nil {
		t.Fatalf("frame = %+v", f)
	}
	f.Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":18446744073709551615}`)

	// seq 0 is a seq like any other.
	mustText(t, s, `{"op":"pub","ch":"x","data":0,"seq":0}`)
	oneFrame(t, out).Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":0}`)
}

func TestPubAckFromAnotherGoroutine(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for seq := range 50 {
		mustText(t, s, fmt.Sprintf(`{"op":"pub","ch":"t","data":%d,"seq":%d}`, seq, seq))
	}
	frames := out.takeFrames()
	if len(frames) != 50 {
		t.Fatalf("published %d, want 50", len(frames))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, f := range frames {
			f.Ack(nil)
		}
	}()
	// The device keeps sending while acks arrive.
	for seq := 50; seq < 100; seq++ {
		mustText(t, s, fmt.Sprintf(`{"op":"pub","ch":"t","data":%d,"seq":%d}`, seq, seq))
	}
	<-done
	for _, f := range out.takeFrames() {
		f.Ack(nil)
	}
	acked := map[string]bool{}
	for _, m := range out.takeSent(t) {
		if m["op"] != "ack" {
			t.Fatalf("sent %v", m)
		}
		acked[fmt.Sprint(m["seq"])] = true
	}
	if len(acked) != 100 {
		t.Errorf("acked %d seqs, want 100", len(acked))
	}
}

func TestPubWithoutSeq(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	mustText(t, s, `{"op":"pub","ch":"telemetry","data":1}`)
	f := oneFrame(t, out)
	if f.QoS != 1 || f.Ack != nil {
		t.Errorf("frame = %+v, want QoS 1 without an ack callback", f)
	}
	wantSent(t, out)
	// Twice is published twice: without a seq there is nothing to dedup by.
	mustText(t, s, `{"op":"pub","ch":"telemetry","data":1}`)
	oneFrame(t, out)
}

func TestPubQoS0(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for _, pub := range []string{
		`{"op":"pub","ch":"telemetry","data":1,"qos":0}`,
		`{"op":"pub","ch":"telemetry","data":2,"qos":0,"seq":7}`,
	} {
		mustText(t, s, pub)
		f := oneFrame(t, out)
		if f.QoS != 0 || f.Ack != nil {
			t.Errorf("%s: frame %+v, want QoS 0 without an ack callback", pub, f)
		}
		wantSent(t, out)
	}
	// A repeated qos 0 seq is neither published again nor acked.
	mustText(t, s, `{"op":"pub","ch":"telemetry","data":2,"qos":0,"seq":7}`)
	wantNothing(t, out)
}

func TestPubNackBusyThenRetry(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	const pub = `{"op":"pub","ch":"telemetry","data":{"n":1},"seq":5}`
	mustText(t, s, pub)
	f := oneFrame(t, out)
	f.Ack(fmt.Errorf("spool: %w", protocols.ErrBusy))
	wantCode(t, out, "nack", CodeBusy, 5)

	// The device may retry: the same seq is published again.
	mustText(t, s, pub)
	f = oneFrame(t, out)
	if string(f.Payload) != `{"n":1}` {
		t.Errorf("payload %s", f.Payload)
	}
	f.Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":5}`)

	// And once acked it is not published a third time.
	mustText(t, s, pub)
	wantSent(t, out, `{"op":"ack","seq":5}`)
	if n := out.frameCount(); n != 0 {
		t.Errorf("published %d more", n)
	}
}

func TestPubNackInternal(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":9}`)
	oneFrame(t, out).Ack(errors.New("broker refused"))
	m := wantCode(t, out, "nack", CodeInternal, 9)
	if !strings.Contains(m["reason"].(string), "broker refused") {
		t.Errorf("reason %v", m["reason"])
	}
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":9}`)
	oneFrame(t, out)
}

func TestPubRepeatedSeqInFlight(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	const pub = `{"op":"pub","ch":"t","data":1,"seq":3}`
	mustText(t, s, pub)
	f := oneFrame(t, out)
	mustText(t, s, pub)
	mustText(t, s, `{"op":"pub","ch":"t","data":"different","seq":3}`)
	wantNothing(t, out)
	f.Ack(nil)
	// Every copy gets its ack.
	wantSent(t, out, `{"op":"ack","seq":3}`, `{"op":"ack","seq":3}`, `{"op":"ack","seq":3}`)

	// A repeated seq whose original is nacked is nacked with it, and may
	// be sent again.
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":4}`)
	f = oneFrame(t, out)
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":4}`)
	f.Ack(protocols.ErrBusy)
	got := out.takeSent(t)
	if len(got) != 2 || got[0]["op"] != "nack" || got[1]["op"] != "nack" || got[0]["code"] != CodeBusy {
		t.Fatalf("sent %v, want two nacks busy", got)
	}
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":4}`)
	oneFrame(t, out)
}

func TestPubRepeatedSeqAfterAck(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for seq := 1; seq <= 3; seq++ {
		mustText(t, s, fmt.Sprintf(`{"op":"pub","ch":"t","data":%d,"seq":%d}`, seq, seq))
		oneFrame(t, out).Ack(nil)
		wantSent(t, out, fmt.Sprintf(`{"op":"ack","seq":%d}`, seq))
	}
	// Repeats, in any order, are acked again and not published.
	for _, seq := range []int{2, 1, 3, 3} {
		mustText(t, s, fmt.Sprintf(`{"op":"pub","ch":"t","data":%d,"seq":%d}`, seq, seq))
		wantSent(t, out, fmt.Sprintf(`{"op":"ack","seq":%d}`, seq))
		if n := out.frameCount(); n != 0 {
			t.Fatalf("seq %d published again", seq)
		}
	}
	// A seq below the highest that was never sent is new.
	mustText(t, s, `{"op":"pub","ch":"t","data":0,"seq":0}`)
	oneFrame(t, out)
}

// TestPubRetryOutsideWindow: a pub nacked while the device's seq moved more
// than the window ahead must still be published when retried, never acked
// without being published.
func TestPubRetryOutsideWindow(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	mustText(t, s, `{"op":"pub","ch":"t","data":"first","seq":1}`)
	first := oneFrame(t, out)
	mustText(t, s, `{"op":"pub","ch":"t","data":"later","seq":5000}`)
	oneFrame(t, out).Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":5000}`)

	// Repeated while still in flight: acked with the original, not published.
	mustText(t, s, `{"op":"pub","ch":"t","data":"first","seq":1}`)
	wantNothing(t, out)

	first.Ack(protocols.ErrBusy)
	got := out.takeSent(t)
	if len(got) != 2 || got[0]["op"] != "nack" || got[1]["op"] != "nack" {
		t.Fatalf("sent %v, want two nacks", got)
	}
	mustText(t, s, `{"op":"pub","ch":"t","data":"first","seq":1}`)
	f := oneFrame(t, out)
	if string(f.Payload) != `"first"` {
		t.Errorf("payload %s", f.Payload)
	}
	f.Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":1}`)
}

func TestPubInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, fields string }{
		{"plus segment", `"ch":"sensors/+","data":1`},
		{"hash segment", `"ch":"sensors/#","data":1`},
		{"plus inside", `"ch":"a+b","data":1`},
		{"hash alone", `"ch":"#","data":1`},
		{"dollar prefix", `"ch":"$x","data":1`},
		{"dollar later", `"ch":"a/$x","data":1`},
		{"empty segment", `"ch":"a//b","data":1`},
		{"leading slash", `"ch":"/a","data":1`},
		{"trailing slash", `"ch":"a/","data":1`},
		{"empty", `"ch":"","data":1`},
		{"missing ch", `"data":1`},
		{"cmd", `"ch":"cmd","data":1`},
		{"cmd subtree", `"ch":"cmd/x","data":1`},
		{"cmd result", `"ch":"cmd/x/result","data":1`},
		{"status", `"ch":"status","data":1`},
		{"status subtree", `"ch":"status/x","data":1`},
		{"space", `"ch":"a b","data":1`},
		{"non-ascii", `"ch":"température","data":1`},
		{"nul", `"ch":"a\u0000","data":1`},
		{"too long", `"ch":"` + longString(257) + `","data":1`},
		{"missing data", `"ch":"t"`},
		{"qos 2", `"ch":"t","data":1,"qos":2`},
		{"qos -1", `"ch":"t","data":1,"qos":-1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, out := started(t, nil)
			mustText(t, s, `{"op":"pub",`+tt.fields+`,"seq":11}`)
			wantCode(t, out, "nack", CodeBadRequest, 11)
			wantNothing(t, out)
			mustText(t, s, `{"op":"pub",`+tt.fields+`}`)
			wantCode(t, out, "error", CodeBadRequest)
			wantNothing(t, out)
			// The session goes on and the rejected seq is still free.
			mustText(t, s, `{"op":"pub","ch":"ok","data":1,"seq":11}`)
			oneFrame(t, out)
		})
	}
}

func TestPubValidChannels(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for _, ch := range []string{"t", "sensors/temp", "a/b/c/d", "A.b_c-9", "cmds", "statuses", "x/cmd", "x/status", longString(256)} {
		mustText(t, s, `{"op":"pub","ch":"`+ch+`","data":1,"qos":0}`)
		if f := out.takeFrames(); len(f) != 1 || f[0].Channel != ch {
			t.Errorf("ch %q: frames %+v", ch, f)
		}
		wantSent(t, out)
	}
}

func TestPubMaxInflight(t *testing.T) {
	t.Parallel()
	s, out := started(t, func(c *Config) { c.MaxInflight, c.InflightWait = 2, 0 })
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":1}`)
	mustText(t, s, `{"op":"pub","ch":"t","data":2,"seq":2}`)
	frames := out.takeFrames()
	if len(frames) != 2 {
		t.Fatalf("published %d, want 2", len(frames))
	}
	mustText(t, s, `{"op":"pub","ch":"t","data":3,"seq":3}`)
	wantCode(t, out, "nack", CodeBusy, 3)
	wantNothing(t, out)

	// qos 0 does not wait for acks and is not limited.
	mustText(t, s, `{"op":"pub","ch":"t","data":0,"seq":100,"qos":0}`)
	oneFrame(t, out)
	// A repeat of an in-flight seq is not a new pub either.
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":1}`)
	wantNothing(t, out)

	frames[0].Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":1}`, `{"op":"ack","seq":1}`)
	// Room again: the nacked seq 3 goes through now.
	mustText(t, s, `{"op":"pub","ch":"t","data":3,"seq":3}`)
	oneFrame(t, out)
}

// TestPubWaitsForASlot: a pub beyond max_inflight waits for an ack instead
// of being nacked (the gateway leaves the connection unread meanwhile), and
// is nacked busy only when no ack comes within inflight_wait.
func TestPubWaitsForASlot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ackErr  error // what the waiting pub's predecessor is settled with
		settle  bool  // whether it is settled at all
		wantOps []string
	}{
		{"an ack frees the slot", nil, true, []string{`{"op":"ack","seq":1}`}},
		{"a nack frees it too", fmt.Errorf("queue: %w", protocols.ErrBusy), true, nil},
		{"no ack within the wait", nil, false, []string{`{"op":"nack","seq":2,"code":"busy","reason":"too many pubs awaiting their ack"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wait := time.Minute // the pub is settled long before
			if !tt.settle {
				wait = 50 * time.Millisecond
			}
			s, out := started(t, func(c *Config) { c.MaxInflight, c.InflightWait = 1, wait })
			mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":1}`)
			first := oneFrame(t, out)
			settled := make(chan struct{})
			go func() {
				defer close(settled)
				// Whether this runs before or while the next pub waits,
				// that pub must go through.
				if tt.settle {
					first.Ack(tt.ackErr)
				}
			}()
			mustText(t, s, `{"op":"pub","ch":"t","data":2,"seq":2}`)
			<-settled
			sent := out.takeSentRaw()
			if tt.settle {
				if len(out.takeFrames()) != 1 {
					t.Fatal("the waiting pub was not published")
				}
				if tt.ackErr != nil {
					// The nack of seq 1 is all the device got; seq 2 is in flight.
					if len(sent) != 1 || !strings.Contains(sent[0], `"seq":1`) || !strings.Contains(sent[0], `"nack"`) {
						t.Errorf("sent %q, want the nack of seq 1", sent)
					}
					return
				}
			}
			if !reflect.DeepEqual(sent, tt.wantOps) {
				t.Errorf("sent %q, want %q", sent, tt.wantOps)
			}
		})
	}
}

func TestPubPublishError(t *testing.T) {
	t.Parallel()
	busy := fmt.Errorf("router: %w", protocols.ErrBusy)
	tests := []struct {
		name string
		pub  string
		err  error
		op   string
		code string
	}{
		{"qos 1 seq busy", `{"op":"pub","ch":"t","data":1,"seq":4}`, busy, "nack", CodeBusy},
		{"qos 1 seq other", `{"op":"pub","ch":"t","data":1,"seq":4}`, errors.New("no route"), "nack", CodeInternal},
		{"qos 1 seq target offline", `{"op":"pub","ch":"t","data":1,"seq":4}`, fmt.Errorf("local device relay: %w", protocols.ErrDeviceOffline), "nack", CodeBusy},
		{"qos 0 seq busy", `{"op":"pub","ch":"t","data":1,"seq":4,"qos":0}`, busy, "error", CodeBusy},
		{"qos 0 seq other", `{"op":"pub","ch":"t","data":1,"seq":4,"qos":0}`, errors.New("no route"), "error", CodeInternal},
		{"no seq busy", `{"op":"pub","ch":"t","data":1}`, busy, "error", CodeBusy},
		{"no seq other", `{"op":"pub","ch":"t","data":1}`, errors.New("no route"), "error", CodeInternal},
		{"qos 1 seq invalid frame", `{"op":"pub","ch":"t","data":1,"seq":4}`, fmt.Errorf("%w: topic too long", protocols.ErrInvalidFrame), "nack", CodeBadRequest},
		{"no seq invalid frame", `{"op":"pub","ch":"t","data":1}`, fmt.Errorf("%w: topic too long", protocols.ErrInvalidFrame), "error", CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, out := started(t, func(c *Config) { c.MaxInflight = 1 })
			out.setPublish(func(protocols.Frame) error { return tt.err })
			mustText(t, s, tt.pub)
			var seq []uint64
			if tt.op == "nack" {
				seq = []uint64{4}
			}
			wantCode(t, out, tt.op, tt.code, seq...)
			wantNothing(t, out)

			// The refused pub is not in flight and its seq is free again.
			out.setPublish(nil)
			mustText(t, s, tt.pub)
			oneFrame(t, out)
		})
	}
}

func TestPubEnvelope(t *testing.T) {
	t.Parallel()
	s, out := started(t, func(c *Config) { c.Envelope = true })
	tests := []struct{ pub, payload string }{
		{`{"op":"pub","ch":"t","data":{"t":21.5},"seq":7,"ts":1700000000000}`, `{"seq":7,"ts":1700000000000,"data":{"t":21.5}}`},
		{`{"op":"pub","ch":"t","data":[1, 2],"seq":8}`, `{"seq":8,"data":[1, 2]}`},
		{`{"op":"pub","ch":"t","data":"x","ts":-5}`, `{"ts":-5,"data":"x"}`},
		{`{"op":"pub","ch":"t","data":null,"qos":0}`, `{"data":null}`},
		{`{"op":"pub","ch":"t","data":1,"seq":18446744073709551615,"ts":9223372036854775807}`, `{"seq":18446744073709551615,"ts":9223372036854775807,"data":1}`},
	}
	for _, tt := range tests {
		mustText(t, s, tt.pub)
		f := oneFrame(t, out)
		if string(f.Payload) != tt.payload {
			t.Errorf("%s: payload %s, want %s", tt.pub, f.Payload, tt.payload)
		}
		if !json.Valid(f.Payload) {
			t.Errorf("payload %s is not JSON", f.Payload)
		}
	}
}

func TestPubPayloadUnchanged(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for _, data := range []string{
		`{"t":21.5,"rh":40}`,
		`{ "t" : 21.50 ,  "rh":4e1 }`,
		"{\n\t\"nested\": {\"a\": [1, 2, {\"b\": null}]}\n}",
		`"caf\u00e9 é \"quoted\" <tag> &"`,
		`123456789012345678901234567890`,
		`-0.0e-10`,
		`[]`,
		`{}`,
		`true`,
		`null`,
		`"` + strings.Repeat("x", 4000) + `"`,
		`{"dup":1,"dup":2}`,
	} {
		mustText(t, s, `{"op":"pub","ch":"t","data":`+data+`,"qos":0}`)
		f := oneFrame(t, out)
		if string(f.Payload) != data {
			t.Errorf("payload\n%q, want\n%q", f.Payload, data)
		}
	}
}

func TestPubPayloadDoesNotAlias(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	buf := []byte(`{"op":"pub","ch":"t","data":{"v":1},"qos":0}`)
	if err := s.OnMessage(protocols.Message{Type: protocols.Text, Data: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, strings.Repeat("x", len(buf))) // the reader reuses its buffer
	mustText(t, s, `{"op":"pub","ch":"t","data":{"v":2},"qos":0}`)
	frames := out.takeFrames()
	if len(frames) != 2 || string(frames[0].Payload) != `{"v":1}` || string(frames[1].Payload) != `{"v":2}` {
		t.Errorf("frames %+v", frames)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"qos":0,"future":{"x":[1]},"prio":"high"}`)
	oneFrame(t, out)
	wantSent(t, out)
}

// sendCommand delivers a command and returns the cmd message it sent.
func sendCommand(t *testing.T, s protocols.Session, out *fakeOutlet, cmd protocols.Command) map[string]any {
	t.Helper()
	if err := s.OnCommand(cmd); err != nil {
		t.Fatalf("OnCommand(%+v): %v", cmd, err)
	}
	got := out.takeSent(t)
	if len(got) != 1 || got[0]["op"] != "cmd" {
		t.Fatalf("OnCommand sent %v, want one cmd", got)
	}
	return got[0]
}

// wantResult checks that the frames published since the last check are
// results with these payloads, in any order.
func wantResults(t *testing.T, out *fakeOutlet, command string, payloads ...string) {
	t.Helper()
	frames := out.takeFrames()
	if len(frames) != len(payloads) {
		t.Fatalf("published %d frames, want %d results", len(frames), len(payloads))
	}
	var got []any
	for _, f := range frames {
		if f.Channel != "cmd/"+command+"/result" || f.QoS != 1 || f.Retain {
			t.Errorf("result frame %+v", f)
		}
		got = append(got, jsonValue(t, f.Payload))
	}
	for _, p := range payloads {
		w := jsonValue(t, []byte(p))
		i := slices.IndexFunc(got, func(g any) bool { return reflect.DeepEqual(g, w) })
		if i < 0 {
			t.Errorf("no result %s among %v", p, got)
			continue
		}
		got = slices.Delete(got, i, i+1)
	}
}

func TestCommand(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	if err := s.OnCommand(protocols.Command{Device: "d1", ID: "c1", Name: "set-interval", Args: json.RawMessage(`{"s":60}`)}); err != nil {
		t.Fatal(err)
	}
	wantSent(t, out, `{"op":"cmd","id":"c1","name":"set-interval","args":{"s":60}}`)
	wantNothing(t, out)

	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	wantResults(t, out, "set-interval", `{"id":"c1","ok":true}`)
	wantSent(t, out)

	// Answered once: a second res is unknown.
	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	wantCode(t, out, "error", CodeNotFound)
	wantNothing(t, out)
}

func TestCommandShapes(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	wantSent(t, out)
	m := sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "r", Name: "reboot"})
	if _, has := m["args"]; has || m["id"] != "r" || m["name"] != "reboot" {
		t.Errorf("cmd without args = %v", m)
	}
	m = sendCommand(t, s, out, protocols.Command{Device: "d1", Name: "ping", Args: json.RawMessage(`[1,"two"]`)})
	id, _ := m["id"].(string)
	if id == "" || id == "r" {
		t.Errorf("cmd without id got id %q", id)
	}
	m2 := sendCommand(t, s, out, protocols.Command{Device: "d1", Name: "ping"})
	if m2["id"] == id {
		t.Errorf("two commands got the same id %q", id)
	}
	mustText(t, s, `{"op":"res","id":"`+id+`","ok":false,"error":"not now","data":{"code":7}}`)
	wantResults(t, out, "ping", `{"id":"`+id+`","ok":false,"error":"not now","data":{"code":7}}`)
	mustText(t, s, `{"op":"res","id":"r","ok":true,"data":[1, 2]}`)
	wantResults(t, out, "reboot", `{"id":"r","ok":true,"data":[1,2]}`)
}

func TestCommandRefused(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	if err := s.OnCommand(protocols.Command{Device: "d1", ID: "c1", Name: "x", Args: json.RawMessage(`{"s":`)}); err == nil {
		t.Error("invalid args accepted")
	}
	wantNothing(t, out)

	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c1", Name: "x"})
	if err := s.OnCommand(protocols.Command{Device: "d1", ID: "c1", Name: "y"}); err == nil {
		t.Error("a second pending command with id c1 was accepted")
	}
	wantNothing(t, out)

	// A command that cannot be sent is not pending.
	out.sendErr = protocols.ErrSendQueueFull
	if err := s.OnCommand(protocols.Command{Device: "d1", ID: "c2", Name: "x"}); !errors.Is(err, protocols.ErrSendQueueFull) {
		t.Errorf("OnCommand with a full queue = %v", err)
	}
	out.sendErr = nil
	mustText(t, s, `{"op":"res","id":"c2","ok":true}`)
	wantCode(t, out, "error", CodeNotFound)
	wantNothing(t, out)
}

func TestResInvalid(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c1", Name: "x"})

	for _, res := range []string{`{"op":"res","id":"c1"}`, `{"op":"res","id":"c1","ok":null}`} {
		mustText(t, s, res)
		wantCode(t, out, "error", CodeBadRequest)
		wantNothing(t, out)
	}
	mustText(t, s, `{"op":"res","id":"c1","ok":"true"}`)
	wantCode(t, out, "error", CodeBadRequest)
	for _, res := range []string{`{"op":"res","id":"nope","ok":true}`, `{"op":"res","ok":true}`, `{"op":"res","id":"C1","ok":true}`} {
		mustText(t, s, res)
		wantCode(t, out, "error", CodeNotFound)
		wantNothing(t, out)
	}
	// The command still waits for its answer.
	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	wantResults(t, out, "x", `{"id":"c1","ok":true}`)
}

func TestResPublishFails(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c1", Name: "x"})
	out.setPublish(func(protocols.Frame) error { return protocols.ErrBusy })
	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	wantCode(t, out, "error", CodeInternal)
}

// TestCommandForgottenAtTheGatewaysTimeout: the gateway answers a command
// that times out; the session forgets it then (a late res is not-found)
// and publishes nothing of its own.
func TestCommandForgottenAtTheGatewaysTimeout(t *testing.T) {
	t.Parallel()
	s, out := startInfo(t, nil, func(i *protocols.SessionInfo) { i.CommandTimeout = 20 * time.Millisecond })
	hello(t, s, out)
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c1", Name: "slow"})
	time.Sleep(200 * time.Millisecond) // ten of the gateway's timeouts
	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	wantCode(t, out, "error", CodeNotFound)
	wantNothing(t, out)
}

// TestCloseForgetsPendingCommands: the gateway answers the commands
// pending when a session ends; the session publishes nothing for them.
func TestCloseForgetsPendingCommands(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "a", Name: "x"})
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "b", Name: "x"})
	mustText(t, s, `{"op":"res","id":"b","ok":true}`)
	wantResults(t, out, "x", `{"id":"b","ok":true}`)

	s.Close(errors.New("read: connection reset"))
	wantNothing(t, out)
	if err := s.OnCommand(protocols.Command{Device: "d1", ID: "d", Name: "x"}); !errors.Is(err, protocols.ErrDeviceOffline) {
		t.Errorf("OnCommand after Close = %v, want ErrDeviceOffline", err)
	}
	s.Close(nil) // twice is harmless
	wantNothing(t, out)
}

func TestMaxPendingCommands(t *testing.T) {
	t.Parallel()
	s, out := started(t, func(c *Config) { c.MaxPendingCommands = 2 })
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c1", Name: "x"})
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c2", Name: "x"})
	if err := s.OnCommand(protocols.Command{Device: "d1", ID: "c3", Name: "x"}); !errors.Is(err, protocols.ErrBusy) {
		t.Errorf("third command = %v, want ErrBusy", err)
	}
	wantNothing(t, out)
	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	out.takeFrames()
	sendCommand(t, s, out, protocols.Command{Device: "d1", ID: "c3", Name: "x"})
}

func TestUnknownOp(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for _, msg := range []string{`{"op":"subscribe","ch":"x"}`, `{"op":"PUB","ch":"t","data":1}`, `{"op":"welcome"}`, `{"op":"ack","seq":1}`} {
		mustText(t, s, msg)
		m := wantCode(t, out, "error", CodeBadRequest)
		if !strings.Contains(m["reason"].(string), "unknown op") {
			t.Errorf("%s: reason %v", msg, m["reason"])
		}
		wantNothing(t, out)
	}
	// The session continues.
	mustText(t, s, `{"op":"pub","ch":"t","data":1,"seq":1}`)
	oneFrame(t, out)
}

func TestMissingOp(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for _, msg := range []string{`{"ch":"t","data":1}`, `{}`, `{"op":""}`, `{"op":null}`, `null`} {
		mustText(t, s, msg)
		wantCode(t, out, "error", CodeBadRequest)
		wantNothing(t, out)
	}
}

func TestNotAnObject(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	for _, msg := range []string{`[]`, `[{"op":"pub","ch":"t","data":1}]`, `"pub"`, `1`, `-1.5e3`, `true`, ` false `} {
		mustText(t, s, msg)
		wantCode(t, out, "error", CodeBadRequest)
		wantNothing(t, out)
	}
}

func TestInvalidJSON(t *testing.T) {
	t.Parallel()
	for _, msg := range []string{
		``, ` `, `{`, `}`, `{"op":"pub"`, `{"op":}`, `{op:"pub"}`, `{'op':'pub'}`,
		`{"op":"pub",}`, `{"op":"pub"} {"op":"pub"}`, `{"op":"pub"} x`, `nul`, `{"op":"pub","data":01}`,
		`{"op":"pub","data":NaN}`, "{\"op\":\"pu\nb\"}", `{"op":"\x"}`,
	} {
		s, out := started(t, nil)
		wantClose(t, s.OnMessage(text(msg)), protocols.CloseInvalidPayload)
		wantNothing(t, out)
	}
}

func TestBinaryMessage(t *testing.T) {
	t.Parallel()
	s, out := started(t, nil)
	err := s.OnMessage(protocols.Message{Type: protocols.Binary, Data: []byte(`{"op":"pub","ch":"t","data":1}`)})
	wantClose(t, err, protocols.CloseUnsupportedData)
	wantNothing(t, out)
}

func TestWrongFieldTypes(t *testing.T) {
	t.Parallel()
	for _, msg := range []string{
		`{"op":"pub","ch":"t","data":1,"seq":"x"}`,
		`{"op":"pub","ch":"t","data":1,"seq":-1}`,
		`{"op":"pub","ch":"t","data":1,"seq":1.5}`,
		`{"op":"pub","ch":"t","data":1,"seq":18446744073709551616}`,
		`{"op":"pub","ch":"t","data":1,"qos":"1"}`,
		`{"op":"pub","ch":"t","data":1,"qos":true}`,
		`{"op":"pub","ch":"t","data":1,"retain":"yes"}`,
		`{"op":"pub","ch":"t","data":1,"ts":"now"}`,
		`{"op":"pub","ch":1,"data":1}`,
		`{"op":"pub","ch":["t"],"data":1}`,
		`{"op":["pub"],"ch":"t","data":1}`,
		`{"op":"res","id":1,"ok":true}`,
		`{"op":"res","id":"c1","ok":1}`,
		`{"op":"res","id":"c1","ok":true,"error":false}`,
		`{"op":"bye","reason":1}`,
	} {
		s, out := started(t, nil)
		mustText(t, s, msg)
		wantCode(t, out, "error", CodeBadRequest)
		wantNothing(t, out)
		if c := out.takeCloses(); len(c) > 0 {
			t.Errorf("%s closed %v", msg, c)
		}
	}
}

func TestBye(t *testing.T) {
	t.Parallel()
	for _, bye := range []string{`{"op":"bye"}`, `{"op":"bye","reason":"going to sleep"}`} {
		s, out := started(t, nil)
		mustText(t, s, bye)
		if c := out.takeCloses(); len(c) != 1 || c[0].code != protocols.CloseNormal {
			t.Errorf("%s: closes %v, want one 1000", bye, c)
		}
		wantNothing(t, out)
	}
}

func TestExampleConversation(t *testing.T) {
	t.Parallel()
	s, out := start(t, nil) // the gateway checks the token (gateway/auth)
	mustText(t, s, `{"op":"hello","id":"kitchen-sensor","token":"s3cret","model":"esp32-th"}`)
	wantSent(t, out, `{"op":"welcome","session":"7f3a","heartbeat":30,"max":65536}`)
	mustText(t, s, `{"op":"pub","ch":"telemetry","data":{"t":21.5,"rh":40},"seq":1}`)
	f := oneFrame(t, out)
	if f.Device != "kitchen-sensor" || f.Channel != "telemetry" || string(f.Payload) != `{"t":21.5,"rh":40}` {
		t.Errorf("frame %+v", f)
	}
	f.Ack(nil)
	wantSent(t, out, `{"op":"ack","seq":1}`)
	if err := s.OnCommand(protocols.Command{Device: "kitchen-sensor", ID: "c1", Name: "set-interval", Args: json.RawMessage(`{"s":60}`)}); err != nil {
		t.Fatal(err)
	}
	wantSent(t, out, `{"op":"cmd","id":"c1","name":"set-interval","args":{"s":60}}`)
	mustText(t, s, `{"op":"res","id":"c1","ok":true}`)
	wantResults(t, out, "set-interval", `{"id":"c1","ok":true}`)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(module.Settings{}); err != nil {
		t.Errorf("DefaultConfig invalid: %v", err)
	}
	bad := Config{}
	err := bad.Validate(module.Settings{})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"max_inflight:", "max_pending_commands:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, missing %q", err, want)
		}
	}
}

func TestValidDeviceID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"a": true, longString(128): true, "A-z_0.9": true,
		"": false, longString(129): false, "a b": false, "a/b": false, "é": false, "a\x00": false,
	} {
		if got := ValidDeviceID(id); got != want {
			t.Errorf("ValidDeviceID(%q) = %v", id, got)
		}
	}
}

// TestIdleSessionSmall: every connected device keeps its session for as long
// as it is connected, so what an idle one holds counts per device. After a
// hello it holds no dedup window, no inflight map and nothing of the
// decoded message.
func TestIdleSessionSmall(t *testing.T) {
	t.Parallel()
	if size, limit := unsafe.Sizeof(session{}), 18*unsafe.Sizeof(uintptr(0)); size > limit {
		t.Errorf("session is %d bytes, want at most %d", size, limit)
	}
	ps, _ := started(t, nil)
	s := ps.(*session)
	if s.window != nil || s.inflight != nil || s.pending != nil {
		t.Errorf("idle session holds window %v, inflight %v, pending %v", s.window != nil, s.inflight, s.pending)
	}
}
