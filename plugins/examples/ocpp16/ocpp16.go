// Package ocpp16 is an example wsgate protocol plugin: the central system
// side of OCPP-J 1.6 (subprotocol "ocpp1.6"), Core profile. A charge point
// connects to ws://gateway/ocpp/<identity>. Each CALL it makes is checked
// against the 1.6 JSON schema of its action, published on the channel named
// after the action and, once the gateway has the frame safe, answered by
// the plugin itself. Commands from MQTT become CALLs to the charge point,
// one at a time, and its answers their results. README.md says what goes
// where.
//
// It depends on the protocols contract only; cmd/wsgate-ocpp16 serves it
// as a plugin, and it compiles into a gateway as it is.
package ocpp16

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/protocols"
)

// Defaults of the Protocol's limits.
const (
	DefaultCallTimeout = 30 * time.Second
	DefaultMaxQueued   = 16
)

// heartbeatInterval is the interval BootNotification asks for, in seconds.
const heartbeatInterval = 300

// Protocol implements protocols.Protocol. The zero value is ready to use.
type Protocol struct {
	// CallTimeout is how long a command may wait for the charge point,
	// queued and on the wire together (DefaultCallTimeout when zero). Keep
	// it no longer than the gateway's command timeout.
	CallTimeout time.Duration
	// MaxQueued bounds the commands waiting behind the one on the wire
	// (DefaultMaxQueued when zero); more are refused.
	MaxQueued int
	// DataTransferVendors are the vendorIds of the DataTransfer requests
	// that something behind MQTT implements: those are answered Accepted,
	// others UnknownVendorId. Compared as OCPP compares CiStrings, ignoring
	// case.
	DataTransferVendors []string
	// Log receives the plugin's notes on charge points; nil discards them.
	Log *slog.Logger

	ids   *transactionIDs // nil: processIDs
	clock clock           // nil: the system's
}

// Name implements protocols.Protocol.
func (Protocol) Name() string { return "ocpp1.6" }

// NewSession implements protocols.Protocol.
func (p Protocol) NewSession(_ context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	identity := path.Base(info.Path) // the charge point identity ends the URL
	if err := out.Attach(protocols.Device{ID: identity}); err != nil {
		if errors.Is(err, protocols.ErrUnauthorized) || errors.Is(err, protocols.ErrForbidden) {
			return nil, &protocols.CloseError{Code: protocols.ClosePolicyViolation, Reason: "charge point " + identity + " not admitted"}
		}
		return nil, fmt.Errorf("charge point identity %q: %w", identity, err)
	}
	s := &session{
		out: out, identity: identity, vendors: p.DataTransferVendors,
		ids: p.ids, clock: p.clock, log: p.Log,
	}
	if s.ids == nil {
		s.ids = processIDs
	}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("charge_point", identity)
	s.outbox = &outbox{
		send:    s.sendCall,
		clock:   s.clock,
		timeout: cmp.Or(p.CallTimeout, DefaultCallTimeout),
		limit:   cmp.Or(p.MaxQueued, DefaultMaxQueued),
		log:     s.log,
	}
	return s, nil
}

// session is one charge point connection. The gateway never calls its
// methods concurrently; what frame acks and timers share is the outbox's.
type session struct {
	out      protocols.Outlet
	identity string
	vendors  []string
	ids      *transactionIDs
	clock    clock
	log      *slog.Logger
	outbox   *outbox
}

// notOCPP closes a connection whose message is not OCPP-J at all: without
// a message id there is nothing to answer.
var notOCPP = &protocols.CloseError{Code: protocols.CloseUnsupportedData, Reason: "not an OCPP-J message"}

// OnMessage implements protocols.Session.
func (s *session) OnMessage(m protocols.Message) error {
	if m.Type != protocols.Text {
		return notOCPP
	}
	kind, id, ok := header(m.Data)
	if !ok {
		return notOCPP
	}
	var elems []json.RawMessage // copies: m.Data is the gateway's again after we return
	if err := json.Unmarshal(m.Data, &elems); err != nil {
		bad := &rpcError{formationViolation, "not valid JSON: " + err.Error()}
		if kind == typeCallResult || kind == typeCallError {
			s.onAnswer(id, func(*outCall) protocols.Result { return protocols.Result{Error: bad.Error()} })
			return nil
		}
		return s.reply(id, bad)
	}
	switch kind {
	case typeCall:
		return s.onCall(id, elems)
	case typeCallResult:
		s.onAnswer(id, func(c *outCall) protocols.Result { return callResult(c, elems) })
		return nil
	case typeCallError:
		s.onAnswer(id, func(*outCall) protocols.Result { return callErrorResult(elems) })
		return nil
	}
	return s.reply(id, &rpcError{formationViolation, fmt.Sprintf("message type %d is not one of OCPP-J 1.6's: 2, 3 or 4", kind)})
}

// onCall handles a CALL of the charge point: checked, published and, once
// the frame is safe, answered.
//
// A charge point should not send a CALL while its previous one awaits our
// answer, but OCPP-J lets it go on once it has given up waiting, after a
// timeout of its own that we cannot see. So a second CALL is not refused:
// each is handled as it arrives and answered by its id when its frame is
// safe. Frames are published in the order the CALLs came.
func (s *session) onCall(id string, elems []json.RawMessage) error {
	var name string
	if len(elems) != 4 || json.Unmarshal(elems[2], &name) != nil {
		return s.reply(id, &rpcError{formationViolation, "a CALL is [2, id, action, payload]"})
	}
	if utf8.RuneCountInString(id) > maxIDLength {
		return s.reply(id, &rpcError{formationViolation, fmt.Sprintf("the message id is longer than %d characters", maxIDLength)})
	}
	a, ok := lookup(name, chargePoint)
	if !ok {
		return s.reply(id, &rpcError{notImplemented, name + " is not supported"})
	}
	req, verr := a.request.validate(elems[3])
	if verr != nil {
		s.log.Info("refused a malformed CALL", "action", name, "err", verr)
		return s.reply(id, verr)
	}
	payload, answer := s.central(name, elems[3], req)

	// The frame's Ack and a failed Publish both report an error; the
	// charge point hears one answer.
	var once sync.Once
	done := func(err error) {
		once.Do(func() {
			if err != nil {
				_ = s.reply(id, &rpcError{internalError, "not stored: " + err.Error()})
				return
			}
			_ = s.send(typeCallResult, id, answer)
		})
	}
	if err := s.out.Publish(protocols.Frame{Channel: name, Payload: payload, QoS: 1, Ack: done}); err != nil {
		done(err)
	}
	return nil
}

// central plays the central system: the frame to publish for a valid
// request and the confirmation to answer it with. The gateway is not an
// authorisation server: every idTag is Accepted, and published so that
// whoever decides can act (with RemoteStopTransaction, say).
func (s *session) central(name string, payload json.RawMessage, req map[string]any) (json.RawMessage, any) {
	accepted := map[string]any{"status": "Accepted"}
	switch name {
	case "BootNotification":
		return payload, map[string]any{"status": "Accepted", "currentTime": s.now(), "interval": heartbeatInterval}
	case "Heartbeat":
		return payload, map[string]any{"currentTime": s.now()}
	case "Authorize":
		return payload, map[string]any{"idTagInfo": accepted}
	case "StartTransaction":
		id := s.ids.next(s.identity, s.clock.Now())
		return withTransactionID(payload, id), map[string]any{"idTagInfo": accepted, "transactionId": id}
	case "StopTransaction":
		// The central system cannot keep a transaction from ending, known
		// to it or not: it acknowledges, with idTagInfo only for an idTag.
		if _, ok := req["idTag"]; ok {
			return payload, map[string]any{"idTagInfo": accepted}
		}
		return payload, struct{}{}
	case "DataTransfer":
		// 1.6 wants UnknownVendorId from a recipient with no
		// implementation for the vendorId; Accepted and Rejected are the
		// vendor's to define. The plugin implements none: only a vendorId
		// the operator says is handled behind MQTT is Accepted.
		vendor := req["vendorId"].(string)
		if slices.ContainsFunc(s.vendors, func(v string) bool { return strings.EqualFold(v, vendor) }) {
			return payload, map[string]any{"status": "Accepted"}
		}
		return payload, map[string]any{"status": "UnknownVendorId"}
	}
	return payload, struct{}{} // StatusNotification, MeterValues
}

// withTransactionID adds the id the plugin assigned to a StartTransaction
// request, so that MQTT consumers can tie to it the MeterValues and the
// StopTransaction that name it. payload is a valid, non-empty JSON object.
func withTransactionID(payload json.RawMessage, id int) json.RawMessage {
	p := strings.TrimRight(string(payload), " \t\r\n")
	return fmt.Appendf(nil, `%s,"transactionId":%d}`, strings.TrimSuffix(p, "}"), id)
}

func (s *session) now() string { return s.clock.Now().UTC().Format(time.RFC3339) }

// onAnswer publishes the result of the command the charge point answered,
// if it answered the CALL on the wire. An answer to anything else is
// dropped: a CALL that expired has had its timeout reported, and OCPP-J
// answers no answers.
func (s *session) onAnswer(id string, result func(*outCall) protocols.Result) {
	c, ok := s.outbox.answered(id)
	if !ok {
		s.log.Debug("dropped an answer to no CALL on the wire", "id", id)
		return
	}
	r := result(c)
	r.ID = id
	f, err := protocols.ResultFrame(c.action, r)
	if err == nil {
		err = s.out.Publish(f)
	}
	if err != nil {
		s.log.Warn("result not published", "action", c.action, "id", id, "err", err)
	}
}

// callResult is the result of the command c that the charge point
// answered with a CALLRESULT: its payload, if it fits the action's
// confirmation. One that does not is a failure, and its payload the data,
// so that nothing the charge point said is lost.
func callResult(c *outCall, elems []json.RawMessage) protocols.Result {
	if len(elems) != 3 {
		return protocols.Result{Error: string(formationViolation) + ": a CALLRESULT is [3, id, payload]"}
	}
	a, _ := lookup(c.action, centralSystem)
	if _, err := a.confirmation.validate(elems[2]); err != nil {
		return protocols.Result{Error: "invalid " + c.action + " confirmation: " + err.Error(), Data: elems[2]}
	}
	return protocols.Result{OK: true, Data: elems[2]}
}

// callErrorResult is the result of a command the charge point answered
// with a CALLERROR: its code and description as the error, the three
// fields as the data.
func callErrorResult(elems []json.RawMessage) protocols.Result {
	var e struct {
		Code        string          `json:"errorCode"`
		Description string          `json:"errorDescription"`
		Details     json.RawMessage `json:"errorDetails,omitempty"`
	}
	if len(elems) < 4 || len(elems) > 5 || json.Unmarshal(elems[2], &e.Code) != nil || json.Unmarshal(elems[3], &e.Description) != nil {
		return protocols.Result{Error: string(formationViolation) + ": a CALLERROR is [4, id, errorCode, errorDescription, errorDetails]"}
	}
	if len(elems) == 5 {
		e.Details = elems[4]
	}
	data, _ := json.Marshal(e)
	msg := e.Code
	if e.Description != "" {
		msg += ": " + e.Description
	}
	return protocols.Result{Error: msg, Data: data}
}

// OnCommand implements protocols.Session: an MQTT command named after a
// central system action becomes a CALL, its payload checked first. An
// error refuses the command; the gateway publishes it as the result.
func (s *session) OnCommand(cmd protocols.Command) error {
	a, ok := lookup(cmd.Name, centralSystem)
	if !ok {
		return fmt.Errorf("%s is not an OCPP 1.6 Core action a central system sends", cmd.Name)
	}
	args := cmd.Args
	if len(args) == 0 {
		args = json.RawMessage("{}") // ClearCache, GetConfiguration for all keys
	}
	if _, err := a.request.validate(args); err != nil {
		return fmt.Errorf("%s: %w", cmd.Name, err)
	}
	return s.outbox.push(&outCall{
		id: cmd.ID, action: cmd.Name, payload: args,
		deadline: s.clock.Now().Add(s.outbox.timeout),
	})
}

// Close implements protocols.Session.
func (s *session) Close(error) { s.outbox.close() }

func (s *session) sendCall(c *outCall) error { return s.send(typeCall, c.id, c.action, c.payload) }

// reply answers the CALL id with a CALLERROR.
func (s *session) reply(id string, e *rpcError) error {
	return s.send(typeCallError, id, e.code, e.description, noDetails)
}

// send writes one OCPP-J message to the charge point.
func (s *session) send(kind int, id string, fields ...any) error {
	data, err := encode(kind, id, fields...)
	if err != nil {
		return err
	}
	return s.out.Send(protocols.Message{Type: protocols.Text, Data: data})
}

var _ protocols.Protocol = Protocol{}
