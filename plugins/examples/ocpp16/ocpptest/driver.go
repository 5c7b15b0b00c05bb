// Package ocpptest speaks OCPP-J 1.6 as a charge point, for the protocol
// contract suite (protocols/protocoltest).
package ocpptest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/wsgate/wsgate/protocols/protocoltest"
)

// Driver is the OCPP 1.6 example's protocoltest.Driver.
type Driver struct{}

// Path implements protocoltest.Driver: the identity ends the URL.
func (Driver) Path(device string) string { return "/ocpp/" + device }

// Attach boots the charge point: the session attached at its start, and
// the answer to BootNotification shows it is running.
func (d Driver) Attach(t testing.TB, c *protocoltest.Conn, _ string) {
	t.Helper()
	d.call(t, c, "boot", "BootNotification", `{"chargePointVendor":"wsgate","chargePointModel":"contract"}`)
}

// Publish sends a Heartbeat, which is published, and waits for its answer.
func (d Driver) Publish(t testing.TB, c *protocoltest.Conn, seq int) {
	t.Helper()
	d.call(t, c, fmt.Sprintf("hb-%d", seq), "Heartbeat", `{}`)
}

func (Driver) call(t testing.TB, c *protocoltest.Conn, id, action, payload string) {
	t.Helper()
	c.Write(t, fmt.Appendf(nil, `[2,%q,%q,%s]`, id, action, payload))
	for {
		var msg []json.RawMessage
		if json.Unmarshal(c.Read(t), &msg) != nil || len(msg) < 3 {
			continue
		}
		var kind int
		var got string
		_ = json.Unmarshal(msg[0], &kind)
		_ = json.Unmarshal(msg[1], &got)
		if got != id {
			continue
		}
		if kind != 3 {
			t.Fatalf("%s answered with %s", action, msg[2])
		}
		return
	}
}

// Command implements protocoltest.Driver.
func (Driver) Command() (string, json.RawMessage) { return "ClearCache", json.RawMessage(`{}`) }

// Answer reads the CALL a command became and accepts it.
func (Driver) Answer(t testing.TB, c *protocoltest.Conn) {
	t.Helper()
	for {
		var msg []json.RawMessage
		if json.Unmarshal(c.Read(t), &msg) != nil || len(msg) != 4 {
			continue
		}
		var kind int
		var id string
		_ = json.Unmarshal(msg[0], &kind)
		_ = json.Unmarshal(msg[1], &id)
		if kind == 2 {
			c.Write(t, fmt.Appendf(nil, `[3,%q,{"status":"Accepted"}]`, id))
			return
		}
	}
}

var _ protocoltest.Driver = Driver{}
