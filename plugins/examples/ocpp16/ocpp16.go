// Package ocpp16 is an example wsgate protocol plugin: the charge point side
// of OCPP-J 1.6 (subprotocol "ocpp1.6"). A charge point connects to
// ws://gateway/ocpp/<identity>; each CALL it makes is published on the
// channel named after its action and answered once the gateway has the
// frame safe, and commands from MQTT become CALLs to the charge point.
package ocpp16

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// OCPP-J message types.
const (
	call       = 2
	callResult = 3
	callError  = 4
)

// Protocol implements protocols.Protocol.
type Protocol struct{}

func (Protocol) Name() string { return "ocpp1.6" }

func (Protocol) NewSession(_ context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	id := path.Base(info.Path) // the charge point identity ends the URL
	if err := out.Attach(protocols.Device{ID: id}); err != nil {
		return nil, fmt.Errorf("charge point identity %q: %w", id, err)
	}
	return &session{out: out, pending: map[string]string{}}, nil
}

// session needs no lock: the gateway never calls its methods concurrently.
type session struct {
	out     protocols.Outlet
	pending map[string]string // our CALL ids -> command names
}

func (s *session) OnMessage(m protocols.Message) error {
	var msg []json.RawMessage
	if m.Type != protocols.Text || json.Unmarshal(m.Data, &msg) != nil || len(msg) < 3 {
		return &protocols.CloseError{Code: protocols.CloseUnsupportedData, Reason: "not an OCPP-J message"}
	}
	var kind int
	var id string
	if json.Unmarshal(msg[0], &kind) != nil || json.Unmarshal(msg[1], &id) != nil {
		return &protocols.CloseError{Code: protocols.CloseUnsupportedData, Reason: "bad OCPP-J header"}
	}
	switch kind {
	case call:
		var action string
		if json.Unmarshal(msg[2], &action) != nil || len(msg) != 4 {
			return s.send(callError, id, "FormationViolation", "CALL is [2, id, action, payload]", json.RawMessage("{}"))
		}
		return s.call(id, action, msg[3])
	case callResult, callError:
		name, ok := s.pending[id]
		delete(s.pending, id)
		if !ok {
			return nil // an answer to nothing we asked: ignore, as OCPP-J suggests
		}
		r := protocols.Result{ID: id, OK: kind == callResult, Data: msg[2]}
		if kind == callError { // [4, id, errorCode, errorDescription, details]
			var code, description string
			_ = json.Unmarshal(msg[2], &code)
			if len(msg) > 3 {
				_ = json.Unmarshal(msg[3], &description)
			}
			r.Data, r.Error = nil, code+": "+description
		}
		f, err := protocols.ResultFrame(name, r)
		if err != nil {
			return err
		}
		return s.out.Publish(f)
	}
	return s.send(callError, id, "MessageTypeNotSupported", "", json.RawMessage("{}"))
}

// call publishes a charge point's request and answers it once the frame is
// safe, so a charge point that gets no answer sends it again.
func (s *session) call(id, action string, payload json.RawMessage) error {
	answer, known := answers[action]
	if !known {
		return s.send(callError, id, "NotImplemented", action+" is not supported", json.RawMessage("{}"))
	}
	return s.out.Publish(protocols.Frame{
		Channel: action, Payload: append([]byte(nil), payload...), QoS: 1,
		Ack: func(err error) {
			if err != nil {
				_ = s.send(callError, id, "InternalError", "not stored: "+err.Error(), json.RawMessage("{}"))
				return
			}
			_ = s.send(callResult, id, answer())
		},
	})
}

// answers are the Central System's replies to the actions it accepts.
var answers = map[string]func() any{
	"BootNotification": func() any {
		return map[string]any{"status": "Accepted", "currentTime": now(), "interval": 300}
	},
	"Heartbeat":          func() any { return map[string]any{"currentTime": now()} },
	"StatusNotification": func() any { return struct{}{} },
	"MeterValues":        func() any { return struct{}{} },
	"Authorize":          func() any { return map[string]any{"idTagInfo": map[string]string{"status": "Accepted"}} },
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// OnCommand sends a command from MQTT to the charge point as a CALL.
func (s *session) OnCommand(cmd protocols.Command) error {
	args := cmd.Args
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	s.pending[cmd.ID] = cmd.Name
	return s.send(call, cmd.ID, cmd.Name, args)
}

func (s *session) Close(error) {}

// send writes one OCPP-J message: [kind, id, fields...].
func (s *session) send(kind int, id string, fields ...any) error {
	data, err := json.Marshal(append([]any{kind, id}, fields...))
	if err != nil {
		return err
	}
	return s.out.Send(protocols.Message{Type: protocols.Text, Data: data})
}
