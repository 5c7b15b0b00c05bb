package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// TestCommandResultsByTheGateway: the gateway answers for every protocol
// what a session does not: "timeout" once CommandTimeout has passed (and a
// late result is then refused), and "device disconnected" for what is
// unanswered when the session ends; a command the session refuses gets no
// result from the gateway (its refusal is the answer).
func TestCommandResultsByTheGateway(t *testing.T) {
	t.Parallel()
	opts := baseOptions()
	opts.CommandTimeout = 200 * time.Millisecond
	gw := startGateway(t, opts)
	ws := gw.dial(t, "/", "echo")
	if got := attach(t, ws, "slow"); got != "attached slow" {
		t.Fatal(got)
	}
	result := func(want string) {
		t.Helper()
		f := gw.sink.next(t)
		if f.Device != "slow" || f.Channel != "cmd/reboot/result" || string(f.Payload) != want {
			t.Errorf("frame %s %s %s, want %s", f.Device, f.Channel, f.Payload, want)
		}
	}

	if err := gw.router.Command(protocols.Command{Device: "slow", ID: "m1", Name: "reboot"}); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "cmd reboot")
	result(`{"id":"m1","ok":false,"error":"timeout"}`)
	writeText(t, ws, `!publish cmd/reboot/result {"id":"m1","ok":true}`)
	readText(t, ws, `nack cmd/reboot/result forbidden: "cmd/reboot/result" is the gateway's own channel`)

	// Answered in time: no result from the gateway.
	if err := gw.router.Command(protocols.Command{Device: "slow", ID: "m2", Name: "reboot"}); err != nil {
		t.Fatal(err)
	}
	readText(t, ws, "cmd reboot")
	writeText(t, ws, `!publish cmd/reboot/result {"id":"m2","ok":true}`)
	readText(t, ws, "ack cmd/reboot/result")
	result(`{"id":"m2","ok":true}`)

	// Unanswered when the session ends.
	opts.CommandTimeout = time.Hour
	gw2 := startGateway(t, opts)
	ws2 := gw2.dial(t, "/", "echo")
	if got := attach(t, ws2, "leaving"); got != "attached leaving" {
		t.Fatal(got)
	}
	if err := gw2.router.Command(protocols.Command{Device: "leaving", ID: "m3", Name: "open"}); err != nil {
		t.Fatal(err)
	}
	readText(t, ws2, "cmd open")
	ws2.Close()
	if f := gw2.sink.next(t); f.Channel != "cmd/open/result" || string(f.Payload) != `{"id":"m3","ok":false,"error":"device disconnected"}` {
		t.Errorf("frame %s %s", f.Channel, f.Payload)
	}

	// A command the session refuses: its error is the answer.
	if err := gw.router.Command(protocols.Command{Device: "slow", ID: "m4", Name: "panic"}); err == nil || !strings.Contains(err.Error(), "panic") {
		t.Errorf("a refused command: %v", err)
	}
	select {
	case f := <-gw.sink.frames:
		t.Errorf("the gateway answered a refused command: %s %s", f.Channel, f.Payload)
	case <-time.After(600 * time.Millisecond): // three of gw's command timeouts
	}
}
