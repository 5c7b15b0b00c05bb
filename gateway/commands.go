package gateway

import (
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// The gateway answers for every protocol the commands a session never
// answers: a command unanswered after CommandTimeout gets the result
// "timeout", and those still unanswered when the session ends get "device
// disconnected". What a session owes is also the only thing it may publish
// on a cmd/ channel: a result the device forged, or one for a command that
// already timed out, is refused.

// Results the gateway publishes for a session.
const (
	resultTimeout      = "timeout"
	resultDisconnected = "device disconnected"
)

// owedCommands are the commands handed to a session and not answered yet.
// A connection has them only while commands are in flight.
type owedCommands struct {
	byID  map[string]owedCommand
	timer *time.Timer // for the earliest deadline
	next  time.Time   // when timer fires; zero when stopped
}

type owedCommand struct {
	name     string
	deadline time.Time
}

// maxOwed bounds the commands a connection may owe at once; past it a
// command is refused busy rather than grow the table.
const maxOwed = 1024

// commandSeq names the commands that come without an id.
var commandSeq atomic.Uint64

// owe records cmd as handed to the session, and returns its id (given one
// when it has none: its result must be told apart from others).
func (c *conn) owe(cmd protocols.Command) string {
	id := cmd.ID
	if id == "" {
		id = "g" + strconv.FormatUint(commandSeq.Add(1), 10)
	}
	deadline := time.Now().Add(c.srv.opts.CommandTimeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owed == nil {
		c.owed = &owedCommands{byID: make(map[string]owedCommand)}
	}
	if len(c.owed.byID) < maxOwed {
		c.owed.byID[id] = owedCommand{name: cmd.Name, deadline: deadline}
		c.scheduleOwedLocked()
	}
	return id
}

// forgive drops a command the session refused: its refusal is the result.
func (c *conn) forgive(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owed != nil {
		delete(c.owed.byID, id)
		c.scheduleOwedLocked()
	}
}

// takeResult reports whether a frame on channel with payload is the result
// of a command the session owes, and marks it answered.
func (c *conn) takeResult(channel string, payload []byte) bool {
	name, isCmd := strings.CutPrefix(channel, "cmd/")
	name, isResult := strings.CutSuffix(name, "/result")
	if !isCmd || !isResult || name == "" {
		return false
	}
	var r struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(payload, &r) != nil || r.ID == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owed == nil {
		return false
	}
	if o, ok := c.owed.byID[r.ID]; !ok || o.name != name {
		return false
	}
	delete(c.owed.byID, r.ID)
	c.scheduleOwedLocked()
	return true
}

// scheduleOwedLocked sets the timer for the earliest deadline, or stops it
// and lets the table go when nothing is owed.
func (c *conn) scheduleOwedLocked() {
	o := c.owed
	if len(o.byID) == 0 {
		if o.timer != nil {
			o.timer.Stop()
		}
		c.owed = nil
		return
	}
	var first time.Time
	for _, oc := range o.byID {
		if first.IsZero() || oc.deadline.Before(first) {
			first = oc.deadline
		}
	}
	if first.Equal(o.next) {
		return
	}
	o.next = first
	if o.timer == nil {
		o.timer = time.AfterFunc(time.Until(first), c.expireOwed)
	} else {
		o.timer.Reset(time.Until(first))
	}
}

// expireOwed answers the commands whose deadline has passed.
func (c *conn) expireOwed() {
	now := time.Now()
	var expired []protocols.Command
	c.mu.Lock()
	device := c.device
	if c.owed != nil {
		c.owed.next = time.Time{}
		for id, oc := range c.owed.byID {
			if !oc.deadline.After(now) {
				expired = append(expired, protocols.Command{ID: id, Name: oc.name})
				delete(c.owed.byID, id)
			}
		}
		c.scheduleOwedLocked()
	}
	c.mu.Unlock()
	for _, cmd := range expired {
		c.answer(device, cmd, resultTimeout)
	}
}

// settleOwed answers, when the session has ended, what it still owed.
func (c *conn) settleOwed(device string) {
	c.mu.Lock()
	var left []protocols.Command
	if c.owed != nil {
		for id, oc := range c.owed.byID {
			left = append(left, protocols.Command{ID: id, Name: oc.name})
		}
		if c.owed.timer != nil {
			c.owed.timer.Stop()
		}
		c.owed = nil
	}
	c.mu.Unlock()
	for _, cmd := range left {
		c.answer(device, cmd, resultDisconnected)
	}
}

// answer publishes a failed result for cmd on the session's behalf.
func (c *conn) answer(device string, cmd protocols.Command, reason string) {
	f, err := protocols.ResultFrame(cmd.Name, protocols.Result{ID: cmd.ID, OK: false, Error: reason})
	if err == nil {
		f.Device = device
		err = c.srv.router.Publish(f)
	}
	if err != nil {
		c.logAt(slog.LevelWarn, "a command's result could not be published", "device", device, "command", cmd.Name, "id", cmd.ID, "err", err)
	}
}
