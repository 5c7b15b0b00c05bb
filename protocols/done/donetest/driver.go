// Package donetest speaks done as a device, for the protocol contract suite
// (protocols/protocoltest).
package donetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/protocols/protocoltest"
)

// Driver is done's protocoltest.Driver.
type Driver struct{}

// Path implements protocoltest.Driver: done devices name themselves in
// their hello.
func (Driver) Path(string) string { return "/" }

// Attach says hello and waits for the welcome.
func (Driver) Attach(t testing.TB, c *protocoltest.Conn, device string) {
	t.Helper()
	c.Write(t, fmt.Appendf(nil, `{"op":"hello","id":%q}`, device))
	if msg := c.Read(t); !bytes.Contains(msg, []byte(`"op":"welcome"`)) {
		t.Fatalf("hello answered %s", msg)
	}
}

// Publish sends a QoS 1 pub and waits for its ack.
func (Driver) Publish(t testing.TB, c *protocoltest.Conn, seq int) {
	t.Helper()
	c.Write(t, fmt.Appendf(nil, `{"op":"pub","ch":"contract","data":{"n":%d},"seq":%d}`, seq, seq))
	ack := fmt.Appendf(nil, `{"op":"ack","seq":%d}`, seq)
	if msg := c.ReadUntil(t, func(m []byte) bool { return bytes.Contains(m, []byte(`"seq"`)) }); !bytes.Equal(msg, ack) {
		t.Fatalf("pub %d answered %s", seq, msg)
	}
}

// Command implements protocoltest.Driver.
func (Driver) Command() (string, json.RawMessage) {
	return "set-interval", json.RawMessage(`{"s":60}`)
}

// Answer reads a cmd and answers res ok.
func (Driver) Answer(t testing.TB, c *protocoltest.Conn) {
	t.Helper()
	var cmd struct{ Op, ID string }
	msg := c.ReadUntil(t, func(m []byte) bool { return bytes.Contains(m, []byte(`"op":"cmd"`)) })
	if err := json.Unmarshal(msg, &cmd); err != nil {
		t.Fatal(err)
	}
	c.Write(t, fmt.Appendf(nil, `{"op":"res","id":%q,"ok":true}`, cmd.ID))
}

var _ protocoltest.Driver = Driver{}
