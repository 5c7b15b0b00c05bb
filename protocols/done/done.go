// Package done implements wsgate's own JSON device protocol (subprotocol
// token "done"), specified in README.md beside this file.
//
// It registers itself as a built-in module (module.go) and depends only on
// the protocols contract.
package done

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// Name is the subprotocol token.
const Name = "done"

// Error and nack codes of the spec.
const (
	CodeBadRequest   = "bad-request"
	CodeUnauthorized = "unauthorized"
	CodeNotFound     = "not-found"
	CodeTooLarge     = "too-large"
	CodeInternal     = "internal"
	// CodeBusy is the nack code for a pub the gateway cannot take right now
	// (queue or spool full, too many unacknowledged pubs, a local device it
	// is routed to is offline); retry later.
	CodeBusy = "busy"
)

// Config is the [protocols.done] section.
type Config struct {
	// Tokens is where plain-text device tokens were once kept; they are
	// refused now: the gateway checks hashed tokens ([[auth.tokens]]).
	Tokens map[string]string `toml:"tokens"`
	// Envelope publishes {"seq":..,"ts":..,"data":..} instead of data alone.
	Envelope bool `toml:"envelope"`
	// MaxInflight bounds the QoS 1 pubs of one session awaiting their ack.
	MaxInflight int `toml:"max_inflight"`
	// InflightWait is how long a pub beyond MaxInflight waits for an ack to
	// free a slot, the connection unread meanwhile (TCP slows the device
	// down), before it is nacked busy. Zero nacks at once.
	InflightWait time.Duration `toml:"inflight_wait"`
	// MaxPendingCommands bounds the commands awaiting a device's res.
	MaxPendingCommands int `toml:"max_pending_commands"`
	// CommandTimeout was this table's; the gateway answers unanswered
	// commands for every protocol now (gateway.command_timeout). Set, it
	// is refused with that hint.
	CommandTimeout *time.Duration `toml:"command_timeout"`
}

// DefaultConfig returns the defaults documented in config/example.toml.
func DefaultConfig() Config {
	return Config{MaxInflight: 128, InflightWait: time.Second, MaxPendingCommands: 64}
}

// Validate checks the config (module.Config); each problem is a
// module.KeyError.
func (c Config) Validate(s module.Settings) error {
	var errs []error
	if len(c.Tokens) > 0 {
		errs = append(errs, module.Errorf("tokens", "plain-text tokens are no longer accepted: "+
			"hash each with `wsgate token hash`, list the hashes under [[auth.tokens]], and set auth = \"token\" on the listeners (docs/SECURITY.md)"))
	}
	if c.MaxInflight < 1 {
		errs = append(errs, module.Errorf("max_inflight", "must be at least 1"))
	} else if s.SendQueue > 0 && c.MaxInflight > s.SendQueue/2 {
		errs = append(errs, module.Errorf("max_inflight",
			"%d is more than half of websocket.send_queue (%d): a burst of acks would not fit the queue to the device", c.MaxInflight, s.SendQueue))
	}
	if c.InflightWait < 0 {
		errs = append(errs, module.Errorf("inflight_wait", "must not be negative"))
	}
	if c.MaxPendingCommands < 1 {
		errs = append(errs, module.Errorf("max_pending_commands", "must be at least 1"))
	}
	if c.CommandTimeout != nil {
		errs = append(errs, module.Errorf("command_timeout", "moved: the gateway answers unanswered commands for every protocol; set gateway.command_timeout"))
	}
	return errors.Join(errs...)
}

// New implements module.Config.
func (c Config) New(module.Env) (protocols.Protocol, error) { return New(c), nil }

// Protocol is the done protocol with its configuration.
type Protocol struct {
	cfg Config
}

// New returns the protocol; cfg must be valid.
func New(cfg Config) *Protocol { return &Protocol{cfg: cfg} }

// Name implements protocols.Protocol.
func (*Protocol) Name() string { return Name }

// NewSession implements protocols.Protocol.
func (p *Protocol) NewSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet) (protocols.Session, error) {
	return &session{cfg: &p.cfg, id: info.ID, heartbeat: info.Heartbeat, maxMessage: info.MaxMessage,
		commandTimeout: commandTimeout(info), out: out}, nil
}

var _ protocols.Protocol = (*Protocol)(nil)

// ValidDeviceID reports whether id is 1-128 characters of [A-Za-z0-9._-].
func ValidDeviceID(id string) bool {
	return len(id) >= 1 && len(id) <= 128 && validChars(id)
}

// ValidChannel reports whether ch is "/"-separated non-empty segments of
// the device id charset. The first segments "cmd" and "status" are the
// gateway's own and not available to devices.
func ValidChannel(ch string) bool { return validChannel([]byte(ch)) }

func validChannel(ch []byte) bool {
	if len(ch) == 0 || len(ch) > 256 {
		return false
	}
	first := true
	for len(ch) > 0 || first {
		seg := ch
		if i := bytes.IndexByte(ch, '/'); i >= 0 {
			seg, ch = ch[:i], ch[i+1:]
			if len(ch) == 0 {
				return false // a trailing '/'
			}
		} else {
			ch = nil
		}
		if len(seg) == 0 || !validChars(seg) {
			return false
		}
		if first && (string(seg) == "cmd" || string(seg) == "status") {
			return false
		}
		first = false
	}
	return true
}

// channel returns ch as a string, reusing the previous one when a device
// keeps publishing on the same channel (the usual case).
func (s *session) channel(ch []byte) string {
	if string(ch) != s.lastChannel {
		s.lastChannel = string(ch)
	}
	return s.lastChannel
}

func validChars[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// session is one device connection. The gateway serialises OnMessage,
// OnCommand and Close; mu guards what acks and command timers, which run
// elsewhere, share with them.
//
// Every connected device keeps one, idle or not, so it holds only what
// outlives a message: the message being decoded comes from inbounds, and
// the dedup window and the map of pubs awaiting their ack are made by the
// first pub that needs them.
type session struct {
	cfg        *Config
	id         string        // the gateway's session id (SessionInfo.ID)
	heartbeat  time.Duration // SessionInfo.Heartbeat
	maxMessage int64         // SessionInfo.MaxMessage
	// commandTimeout is SessionInfo.CommandTimeout: then the gateway has
	// answered a command, and the session forgets it.
	commandTimeout time.Duration
	out            protocols.Outlet

	device      string // set by hello
	lastChannel string

	mu       sync.Mutex
	window   *seqWindow // nil until the first pub with a seq
	inflight *inflight  // nil until the first QoS 1 pub with a seq
	pending  map[string]*pendingCommand
	nextCmd  uint64
	closed   bool
}

// inbounds holds decoded messages between OnMessage calls, each with the
// scratch buffer of its unescaped strings.
var inbounds = sync.Pool{New: func() any { return new(inbound) }}

// maxScratch is the largest scratch buffer kept for the next message.
const maxScratch = 4 << 10

type pendingCommand struct {
	name  string
	timer *time.Timer
}

func (s *session) OnMessage(m protocols.Message) error {
	if m.Type != protocols.Text {
		return &protocols.CloseError{Code: protocols.CloseUnsupportedData, Reason: "binary (CBOR) messages are not supported"}
	}
	msg := inbounds.Get().(*inbound)
	defer func() {
		// Drop what points into m.Data, which the gateway reuses.
		scratch := msg.scratch[:0]
		if cap(scratch) > maxScratch {
			scratch = nil
		}
		*msg = inbound{scratch: scratch}
		inbounds.Put(msg)
	}()
	return s.onMessage(m, msg)
}

func (s *session) onMessage(m protocols.Message, msg *inbound) error {
	if err := decode(m.Data, msg); err != nil {
		if errors.Is(err, errSyntax) {
			return &protocols.CloseError{Code: protocols.CloseInvalidPayload, Reason: "invalid JSON"}
		}
		if s.device == "" {
			return s.refuse(CodeBadRequest, err.Error())
		}
		s.sendError(CodeBadRequest, err.Error())
		return nil
	}
	if s.device == "" {
		if string(msg.Op) != "hello" {
			return s.refuse(CodeBadRequest, "the first message must be a hello")
		}
		return s.hello(msg)
	}
	switch string(msg.Op) {
	case "pub":
		s.pub(msg)
	case "res":
		s.res(msg)
	case "bye":
		s.out.Close(protocols.CloseNormal, "bye")
	case "hello":
		s.sendError(CodeBadRequest, "hello was already accepted")
	case "":
		s.sendError(CodeBadRequest, `missing "op"`)
	default:
		s.sendError(CodeBadRequest, "unknown op "+strconv.Quote(string(msg.Op)))
	}
	return nil
}

// refuse answers a hello-stage failure with an error and close 1008.
func (s *session) refuse(code, reason string) error {
	s.sendError(code, reason)
	return &protocols.CloseError{Code: protocols.ClosePolicyViolation, Reason: reason}
}

func (s *session) hello(msg *inbound) error {
	if !ValidDeviceID(msg.ID) {
		return s.refuse(CodeBadRequest, "hello: id must be 1-128 characters of A-Z a-z 0-9 . _ -")
	}
	desc, problems := description(msg, s.cfg.Envelope)
	// The gateway checks the token, on listeners that authenticate
	// devices (the same rules for every protocol).
	if err := s.out.Attach(protocols.Device{ID: msg.ID, Token: msg.Token, Description: desc}); err != nil {
		if errors.Is(err, protocols.ErrUnauthorized) {
			return s.refuse(CodeUnauthorized, "hello: unknown device or wrong token")
		}
		s.sendError(CodeInternal, "cannot attach the device")
		return fmt.Errorf("attach %q: %w", msg.ID, err)
	}
	s.device = msg.ID
	heartbeat := int(s.heartbeat / time.Second)
	s.send(appendWelcome(nil, s.id, heartbeat, s.maxMessage))
	if len(problems) > 0 {
		s.sendError(CodeBadRequest, describeProblems(problems))
	}
	return nil
}

func (s *session) pub(msg *inbound) {
	reject := func(code, reason string) {
		if msg.HasSeq {
			s.send(appendNack(nil, msg.Seq, code, reason))
		} else {
			s.sendError(code, reason)
		}
	}
	qos := 1
	if msg.HasQoS {
		qos = msg.QoS
	}
	switch {
	case !validChannel(msg.Ch):
		reject(CodeBadRequest, "pub: ch must be /-separated segments of A-Z a-z 0-9 . _ -, not starting with cmd or status")
		return
	case len(msg.Data) == 0:
		reject(CodeBadRequest, "pub: data is missing")
		return
	case qos != 0 && qos != 1:
		reject(CodeBadRequest, "pub: qos must be 0 or 1")
		return
	}
	payload := msg.Data
	if s.cfg.Envelope {
		payload = appendEnvelope(nil, msg)
	} else {
		payload = append([]byte(nil), payload...) // msg.Data aliases the read buffer
	}
	frame := protocols.Frame{Channel: s.channel(msg.Ch), Payload: payload, QoS: byte(qos), Retain: msg.Retain}

	if !msg.HasSeq {
		if err := s.out.Publish(frame); err != nil {
			s.sendError(publishCode(err), "pub not accepted: "+err.Error())
		}
		return
	}
	seq := msg.Seq
	s.mu.Lock()
	if s.inflight.has(seq) {
		s.inflight.copies[seq]++ // acked (or nacked) with the original
		s.mu.Unlock()
		return
	}
	if s.window.seen(seq) {
		if qos == 1 {
			s.send(appendAck(nil, seq)) // delivered before: ack again, publish once
		}
		s.mu.Unlock()
		return
	}
	if qos == 1 && s.inflight.full(s.cfg.MaxInflight) && !s.waitForSlot() {
		s.mu.Unlock()
		s.send(appendNack(nil, seq, CodeBusy, "too many pubs awaiting their ack"))
		return
	}
	if s.window == nil {
		s.window = new(seqWindow)
	}
	s.window.add(seq)
	if qos == 1 {
		if s.inflight == nil {
			s.inflight = &inflight{copies: make(map[uint64]int)}
		}
		s.inflight.copies[seq] = 1
		frame.Seq, frame.HasSeq = seq, true
		frame.Ack = func(err error) { s.acked(seq, err) }
	}
	s.mu.Unlock()

	if err := s.out.Publish(frame); err != nil {
		if qos == 1 {
			s.acked(seq, err) // Publish failed: the ack callback never runs
		} else {
			s.mu.Lock()
			s.window.remove(seq)
			s.mu.Unlock()
			s.sendError(publishCode(err), "pub not accepted: "+err.Error())
		}
	}
}

// inflight is what a session keeps of its QoS 1 pubs awaiting their ack.
type inflight struct {
	copies   map[uint64]int // seq -> copies received while awaiting the ack
	slotFree chan struct{}  // made by the first pub that waits for a slot
}

// has reports whether seq is in flight; a nil i has none.
func (i *inflight) has(seq uint64) bool {
	if i == nil {
		return false
	}
	_, ok := i.copies[seq]
	return ok
}

// full reports whether max pubs are in flight; a nil i has none.
func (i *inflight) full(max int) bool { return i != nil && len(i.copies) >= max }

// waitForSlot waits, with s.mu held on entry and on return, up to
// InflightWait for an ack to bring the pubs in flight below MaxInflight.
// The gateway does not read the connection meanwhile: a device that does
// not wait for its acks is slowed down by TCP instead of being nacked.
// Only acks change the pubs in flight while it waits (the gateway calls
// OnMessage one at a time), so what pub checked before still holds.
func (s *session) waitForSlot() bool {
	if s.cfg.InflightWait <= 0 {
		return false
	}
	if s.inflight.slotFree == nil {
		s.inflight.slotFree = make(chan struct{}, 1)
	}
	timer := time.NewTimer(s.cfg.InflightWait)
	defer timer.Stop()
	for s.inflight.full(s.cfg.MaxInflight) {
		free := s.inflight.slotFree
		s.mu.Unlock()
		select {
		case <-free:
		case <-timer.C:
			s.mu.Lock()
			return !s.inflight.full(s.cfg.MaxInflight)
		}
		s.mu.Lock()
	}
	return true
}

// acked settles a QoS 1 pub: every copy received gets the ack, or the nack
// and the seq may be sent again.
func (s *session) acked(seq uint64, err error) {
	s.mu.Lock()
	copies := s.inflight.copies[seq]
	delete(s.inflight.copies, seq)
	if s.inflight.slotFree != nil {
		select {
		case s.inflight.slotFree <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	if err != nil {
		s.window.remove(seq)
	}
	s.mu.Unlock()
	var msg []byte
	if err == nil {
		msg = appendAck(nil, seq)
	} else {
		msg = appendNack(nil, seq, publishCode(err), err.Error())
	}
	for range max(copies, 1) {
		s.send(msg)
	}
}

// publishCode is the nack or error code for a pub the router refused: busy
// when retrying later may help (a full queue, a local target that is
// offline), bad-request when the frame can never be routed, else internal.
func publishCode(err error) string {
	switch {
	case errors.Is(err, protocols.ErrBusy), errors.Is(err, protocols.ErrDeviceOffline):
		return CodeBusy
	case errors.Is(err, protocols.ErrInvalidFrame):
		return CodeBadRequest
	case errors.Is(err, protocols.ErrForbidden):
		return CodeUnauthorized
	}
	return CodeInternal
}

func (s *session) res(msg *inbound) {
	if !msg.HasOK {
		s.sendError(CodeBadRequest, `res: "ok" (true or false) is required`)
		return
	}
	s.mu.Lock()
	pc, ok := s.pending[msg.ID]
	if ok {
		delete(s.pending, msg.ID)
		pc.timer.Stop()
	}
	s.mu.Unlock()
	if !ok {
		s.sendError(CodeNotFound, "res: no pending command with id "+strconv.Quote(msg.ID))
		return
	}
	result := protocols.Result{ID: msg.ID, OK: msg.OK, Error: msg.Error}
	if len(msg.Data) > 0 {
		result.Data = append(json.RawMessage(nil), msg.Data...)
	}
	s.publishResult(pc.name, result)
}

func (s *session) publishResult(command string, r protocols.Result) {
	frame, err := protocols.ResultFrame(command, r)
	if err == nil {
		err = s.out.Publish(frame)
	}
	if err != nil {
		s.sendError(CodeInternal, "result of command "+strconv.Quote(r.ID)+" could not be published")
	}
}

// OnCommand sends a downlink command and remembers it until its res.
func (s *session) OnCommand(cmd protocols.Command) error {
	if len(cmd.Args) > 0 && !json.Valid(cmd.Args) {
		return errors.New("command arguments are not valid JSON")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return protocols.ErrDeviceOffline
	}
	if len(s.pending) >= s.cfg.MaxPendingCommands {
		s.mu.Unlock()
		return fmt.Errorf("%w: %d commands await the device's answer", protocols.ErrBusy, len(s.pending))
	}
	id := cmd.ID
	if id == "" {
		s.nextCmd++
		id = "c" + strconv.FormatUint(s.nextCmd, 10)
	}
	if _, dup := s.pending[id]; dup {
		s.mu.Unlock()
		return fmt.Errorf("command id %q is already pending", id)
	}
	if s.pending == nil {
		s.pending = make(map[string]*pendingCommand)
	}
	pc := &pendingCommand{name: cmd.Name}
	pc.timer = time.AfterFunc(s.commandTimeout, func() { s.forget(id, pc) })
	s.pending[id] = pc
	s.mu.Unlock()

	if err := s.out.Send(protocols.Message{Type: protocols.Text, Data: appendCommand(nil, id, cmd.Name, cmd.Args)}); err != nil {
		s.mu.Lock()
		delete(s.pending, id)
		pc.timer.Stop()
		s.mu.Unlock()
		return fmt.Errorf("send command %q: %w", cmd.Name, err)
	}
	return nil
}

// forget drops a command the gateway has answered with "timeout": a res
// for it that comes later is not-found.
func (s *session) forget(id string, pc *pendingCommand) {
	s.mu.Lock()
	if s.pending[id] == pc {
		delete(s.pending, id)
	}
	s.mu.Unlock()
}

// Close stops taking commands; the gateway answers those still pending
// with "device disconnected".
func (s *session) Close(error) {
	s.mu.Lock()
	s.closed = true
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, pc := range pending {
		pc.timer.Stop()
	}
}

// commandTimeout is how long the session remembers a command: the
// gateway's, or 30 s where the gateway does not say (tests, old hosts).
func commandTimeout(info protocols.SessionInfo) time.Duration {
	if info.CommandTimeout > 0 {
		return info.CommandTimeout
	}
	return 30 * time.Second
}

func (s *session) sendError(code, reason string) {
	s.send(appendError(nil, code, reason))
}

func (s *session) send(data []byte) {
	// A failed send means the connection is closing; nothing left to tell.
	_ = s.out.Send(protocols.Message{Type: protocols.Text, Data: data})
}
