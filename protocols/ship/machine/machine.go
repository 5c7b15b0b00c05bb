package machine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/protocols/ship/eebus"
)

// timer says what the one running timer is for.
type timer int

const (
	timerNone              timer = iota
	timerCMI                     // waiting for the peer's CMI
	timerWaitForReady            // hello: waiting for the peer's hello / ready
	timerSendProlongation        // hello pending: ask the peer to prolong
	timerProlongationReply       // hello pending: waiting for the answer
	timerPeerDeadline            // hello pending: the peer's short waiting runs out
	timerProtocol                // protocol handshake step
	timerPin                     // waiting for connectionPinState
	timerAccessMethods           // waiting for accessMethods
	timerCloseWait               // announced: waiting for the confirm
	timerCloseLinger             // confirmed: waiting before our WebSocket close
	timerAbort                   // hello aborted: waiting before close 4452
)

// trust is the caller's decision about the peer.
type trust int

const (
	trustUnknown trust = iota
	trustApproved
	trustRejected
)

// Machine is the SHIP connection state machine of one connection (section
// 6), for either role. It does no I/O and reads no clock: every input
// carries the time, and every input returns the outputs to carry out. A
// Machine is not safe for concurrent use; the session that owns the
// connection feeds it from one goroutine.
type Machine struct {
	role  Role
	cfg   Config
	state State

	timer    timer
	deadline time.Time

	trust       trust
	peerReady   bool          // hello: the peer said ready
	peerWaiting time.Duration // hello: the peer's last waiting
	announced   bool          // we sent a connectionClose announce
	early       []eebus.Message
	peerID      string

	out []Output
}

// New returns a machine for role, in state CMIInitStart. Call Start once
// the WebSocket is open.
func New(role Role, cfg Config) (*Machine, error) {
	if role != Server && role != Client {
		return nil, fmt.Errorf("%w: unknown role %d", ErrConfig, int(role))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Machine{role: role, cfg: cfg.withDefaults(), state: CMIInitStart}, nil
}

// Role returns the machine's role.
func (m *Machine) Role() Role { return m.role }

// State returns the current state.
func (m *Machine) State() State { return m.state }

// PeerSHIPID returns the peer's SHIP ID once its accessMethods was
// accepted, or "".
func (m *Machine) PeerSHIPID() string { return m.peerID }

// NextDeadline returns when the caller must call Tick next, and false when
// no timer runs.
func (m *Machine) NextDeadline() (time.Time, bool) {
	if m.timer == timerNone {
		return time.Time{}, false
	}
	return m.deadline, true
}

// Start begins the connection: the client sends its CMI, both roles wait
// for the peer's (section 6.1). A second call does nothing.
func (m *Machine) Start(now time.Time) []Output {
	m.out = nil
	m.start(now)
	return m.flush()
}

func (m *Machine) start(now time.Time) {
	if m.state != CMIInitStart {
		return
	}
	if m.role == Client {
		m.send(eebus.CMI())
		m.setState(CMIClientWait)
	} else {
		m.setState(CMIServerWait)
	}
	m.setTimer(timerCMI, now.Add(m.cfg.CMITimeout))
}

// Receive handles one binary WebSocket message: the type byte and the
// value. Text messages must not be passed (see CodeUnsupportedData). A
// Receive before Start starts the machine first.
func (m *Machine) Receive(now time.Time, msg []byte) []Output {
	m.out = nil
	if m.state.Terminal() {
		return nil
	}
	m.start(now)
	switch m.state {
	case CMIServerWait, CMIClientWait:
		m.receiveCMI(now, msg)
	default:
		m.receive(now, msg)
	}
	return m.flush()
}

// Tick fires the timer if now is at or past NextDeadline.
func (m *Machine) Tick(now time.Time) []Output {
	m.out = nil
	if m.state.Terminal() || m.timer == timerNone || now.Before(m.deadline) {
		return nil
	}
	t := m.timer
	m.stopTimer()
	switch t {
	case timerCMI:
		m.fail(CodeClose, fmt.Errorf("%w: no CMI within %v", ErrTimeout, m.cfg.CMITimeout))
	case timerWaitForReady:
		m.abortHello(now, fmt.Errorf("%w: no hello ready within %v", ErrTimeout, m.cfg.HelloInit))
	case timerSendProlongation:
		m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloPending, ProlongationRequest: ptr(true)})
		wait := m.peerWaiting
		if wait <= 0 {
			wait = m.cfg.HelloInit
		}
		m.setTimer(timerProlongationReply, now.Add(wait))
	case timerProlongationReply:
		m.abortHello(now, fmt.Errorf("%w: no answer to our prolongation request", ErrTimeout))
	case timerPeerDeadline:
		m.abortHello(now, fmt.Errorf("%w: the peer's waiting ran out", ErrTimeout))
	case timerProtocol:
		m.protocolError(eebus.HandshakeErrorTimeout,
			fmt.Errorf("%w: protocol handshake step took over %v", ErrTimeout, m.cfg.ProtocolHandshakeWait))
	case timerPin:
		m.fail(CodeClose, fmt.Errorf("%w: no PIN state within %v", ErrTimeout, m.cfg.PinWait))
	case timerAccessMethods:
		m.fail(CodeClose, fmt.Errorf("%w: no access methods within %v", ErrTimeout, m.cfg.AccessMethodsWait))
	case timerCloseWait, timerCloseLinger:
		m.closeWS(CodeClose, ReasonClose, nil)
	case timerAbort:
		m.closeWS(CodeNodeRejected, ReasonNodeRejected, ErrRejected)
	}
	return m.flush()
}

// Approve tells the machine the peer is trusted (after NeedsTrust, or
// before it is asked). In hello pending it says ready (section 6.2);
// otherwise it is remembered for the hello, or does nothing.
func (m *Machine) Approve(now time.Time) []Output {
	m.out = nil
	switch {
	case m.state.Terminal():
		return nil
	case m.state.beforeHello():
		m.trust = trustApproved
	case m.state == HelloPendingListen:
		m.trust = trustApproved
		m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloReady, Waiting: millis(m.cfg.HelloInit)})
		if m.peerReady {
			m.helloOK(now)
		} else {
			m.setState(HelloReadyListen)
			m.setTimer(timerWaitForReady, now.Add(m.cfg.HelloInit))
		}
	}
	return m.flush()
}

// Reject tells the machine the peer is not trusted: in the hello it
// aborts (aborted hello, then close 4452 after Config.AbortDelay); before
// the hello it is remembered; after the hello it does nothing (use Close).
func (m *Machine) Reject(now time.Time) []Output {
	m.out = nil
	switch {
	case m.state.Terminal():
		return nil
	case m.state.beforeHello():
		m.trust = trustRejected
	case m.state.inHello():
		m.trust = trustRejected
		m.abortHello(now, fmt.Errorf("%w: by the application", ErrRejected))
	}
	return m.flush()
}

// SendData sends one SPINE message, payload, in its EEBus root form
// ({"datagram":[...]}), as a data message (section 6.6). Only in Complete:
// otherwise ErrNotComplete.
func (m *Machine) SendData(now time.Time, payload json.RawMessage) ([]Output, error) {
	if m.state != Complete {
		return nil, fmt.Errorf("%w: state %v", ErrNotComplete, m.state)
	}
	if !json.Valid(payload) {
		return nil, fmt.Errorf("%w: not JSON", ErrPayload)
	}
	msg, err := eebus.EncodeMessage(eebus.Data{
		Header:  eebus.DataHeader{ProtocolID: eebus.ProtocolIDSPINE},
		Payload: payload,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	return []Output{Send{Message: msg}}, nil
}

// Close ends the connection. In data exchange it announces the close with
// reason and waits Config.CloseWait for the confirm before closing the
// WebSocket with 4001 "close" (section 6.7). Before Complete no
// connectionClose is sent: the WebSocket is closed at once, with 4500
// "User close" for reason removedConnection (unpairing), else 4001
// "close" (section 9). While closing it does nothing.
func (m *Machine) Close(now time.Time, reason eebus.CloseReason) []Output {
	m.out = nil
	switch {
	case m.state.Terminal() || m.state == Closing:
		return nil
	case m.state == Complete:
		cc := eebus.ConnectionClose{Phase: eebus.CloseAnnounce, MaxTime: millis(m.cfg.CloseWait)}
		if reason != "" {
			cc.Reason = &reason
		}
		m.sendMessage(cc)
		m.announced = true
		m.setState(Closing)
		m.setTimer(timerCloseWait, now.Add(m.cfg.CloseWait))
	case reason == eebus.CloseRemovedConnection:
		m.closeWS(CodeUserClose, ReasonUserClose, nil)
	default:
		m.closeWS(CodeClose, ReasonClose, nil)
	}
	return m.flush()
}

// --- CMI (section 6.1) ---

func (m *Machine) receiveCMI(now time.Time, msg []byte) {
	if len(msg) == 0 || msg[0] != byte(eebus.TypeInit) || (len(msg) > 1 && msg[1] != 0) {
		m.fail(CodeClose, fmt.Errorf("%w: % x", ErrBadCMI, head(msg)))
		return
	}
	if len(msg) != 2 {
		m.warn(fmt.Errorf("%w: CMI of %d bytes accepted", ErrBadCMI, len(msg)))
	}
	m.stopTimer()
	if m.role == Server {
		m.send(eebus.CMI())
	}
	m.enterHello(now)
}

// --- Connection hello (section 6.2) ---

func (m *Machine) enterHello(now time.Time) {
	switch {
	case m.trust == trustRejected:
		m.abortHello(now, fmt.Errorf("%w: by the application", ErrRejected))
	case m.cfg.AutoAccept || m.trust == trustApproved:
		m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloReady, Waiting: millis(m.cfg.HelloInit)})
		m.setState(HelloReadyListen)
		m.setTimer(timerWaitForReady, now.Add(m.cfg.HelloInit))
	default:
		m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloPending, Waiting: millis(m.cfg.HelloInit)})
		m.setState(HelloPendingListen)
		m.setTimer(timerWaitForReady, now.Add(m.cfg.HelloInit))
		m.out = append(m.out, NeedsTrust{})
	}
}

func (m *Machine) receiveHello(now time.Time, msg eebus.Message) {
	h, ok := msg.(*eebus.ConnectionHello)
	if !ok {
		m.abortHello(now, fmt.Errorf("%w: %s in hello", ErrUnexpectedMessage, msg.MessageName()))
		return
	}
	prolong := h.ProlongationRequest
	switch h.Phase {
	case eebus.HelloAborted:
		m.stopTimer()
		m.setState(HelloRemoteAbortDone)
		m.setTimer(timerAbort, now.Add(m.cfg.AbortDelay))
	case eebus.HelloReady:
		if m.state == HelloReadyListen {
			m.helloOK(now)
			return
		}
		if h.Waiting == nil {
			m.abortHello(now, fmt.Errorf("%w: hello ready without waiting", ErrUnexpectedMessage))
			return
		}
		m.peerReady = true
		m.peerWaits(now, *h.Waiting)
	case eebus.HelloPending:
		if m.state == HelloReadyListen {
			switch {
			case prolong != nil && *prolong:
				m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloReady, Waiting: millis(m.cfg.HelloInit)})
				m.setTimer(timerWaitForReady, now.Add(m.cfg.HelloInit))
			case prolong != nil:
				m.warn(fmt.Errorf("%w: hello pending with prolongationRequest false ignored", ErrUnexpectedMessage))
			}
			return // a plain pending: keep waiting
		}
		m.peerReady = false
		switch {
		case h.Waiting != nil && prolong == nil:
			m.peerWaits(now, *h.Waiting)
		case h.Waiting == nil && prolong != nil && *prolong:
			m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloPending, Waiting: millis(m.cfg.HelloInit)})
		default:
			m.abortHello(now, fmt.Errorf("%w: invalid hello pending", ErrUnexpectedMessage))
		}
	default:
		m.abortHello(now, fmt.Errorf("%w: hello phase %q", ErrUnexpectedMessage, h.Phase))
	}
}

// peerWaits handles the waiting of a peer's hello while we are pending:
// ask for prolongation HelloProlongWaitingGap before it runs out, or, when
// it is too short to bother, give up when it runs out.
func (m *Machine) peerWaits(now time.Time, ms uint32) {
	w := time.Duration(ms) * time.Millisecond
	m.peerWaiting = w
	switch {
	case w < m.cfg.HelloProlongMin:
		m.abortHello(now, fmt.Errorf("%w: the peer waits only %v", ErrTimeout, w))
	case w >= m.cfg.HelloProlongThrInc:
		m.setTimer(timerSendProlongation, now.Add(w-m.cfg.HelloProlongWaitingGap))
	default:
		m.setTimer(timerPeerDeadline, now.Add(w))
	}
}

// abortHello sends the aborted hello and closes with 4452 after
// AbortDelay (section 6.2 ABORT, section 9).
func (m *Machine) abortHello(now time.Time, err error) {
	m.warn(err)
	m.sendHello(eebus.ConnectionHello{Phase: eebus.HelloAborted})
	m.setState(HelloAbortDone)
	m.setTimer(timerAbort, now.Add(m.cfg.AbortDelay))
}

func (m *Machine) helloOK(now time.Time) {
	m.stopTimer()
	m.setState(HelloOK)
	if m.role == Client {
		m.sendMessage(ourHandshake(eebus.HandshakeAnnounceMax))
		m.setState(ProtHClientListenChoice)
	} else {
		m.setState(ProtHServerListenProposal)
	}
	m.setTimer(timerProtocol, now.Add(m.cfg.ProtocolHandshakeWait))
}

// --- Protocol handshake (section 6.3) ---

func ourHandshake(t eebus.HandshakeType) eebus.MessageProtocolHandshake {
	return eebus.MessageProtocolHandshake{
		HandshakeType: t,
		Version:       eebus.Version{Major: 1, Minor: 0},
		Formats:       eebus.Formats{Format: []eebus.Format{eebus.FormatJSONUTF8}},
	}
}

func (m *Machine) receiveProtocol(now time.Time, msg eebus.Message) {
	p, ok := msg.(*eebus.MessageProtocolHandshake)
	if !ok {
		m.protocolError(eebus.HandshakeErrorUnexpectedMessage,
			fmt.Errorf("%w: %s in protocol handshake", ErrUnexpectedMessage, msg.MessageName()))
		return
	}
	want := eebus.HandshakeSelect
	if m.state == ProtHServerListenProposal {
		want = eebus.HandshakeAnnounceMax
	}
	if p.HandshakeType != want {
		m.protocolError(eebus.HandshakeErrorUnexpectedMessage,
			fmt.Errorf("%w: handshakeType %q, want %q", ErrUnexpectedMessage, p.HandshakeType, want))
		return
	}
	switch m.state {
	case ProtHServerListenProposal:
		if p.Version.Major < 1 || !hasFormat(p.Formats.Format, eebus.FormatJSONUTF8) {
			m.protocolError(eebus.HandshakeErrorSelectionMismatch,
				fmt.Errorf("%w: peer announces %d.%d %v", ErrHandshake, p.Version.Major, p.Version.Minor, p.Formats.Format))
			return
		}
		m.sendMessage(ourHandshake(eebus.HandshakeSelect))
		m.setState(ProtHServerListenConfirm)
		m.setTimer(timerProtocol, now.Add(m.cfg.ProtocolHandshakeWait))
	case ProtHServerListenConfirm, ProtHClientListenChoice:
		if p.Version != (eebus.Version{Major: 1, Minor: 0}) || len(p.Formats.Format) != 1 ||
			p.Formats.Format[0] != eebus.FormatJSONUTF8 {
			m.protocolError(eebus.HandshakeErrorSelectionMismatch,
				fmt.Errorf("%w: peer selects %d.%d %v", ErrHandshake, p.Version.Major, p.Version.Minor, p.Formats.Format))
			return
		}
		if m.state == ProtHClientListenChoice {
			m.sendMessage(ourHandshake(eebus.HandshakeSelect))
			m.setState(ProtHClientOK)
		} else {
			m.setState(ProtHServerOK)
		}
		m.sendMessage(eebus.ConnectionPinState{PinState: eebus.PinNone})
		m.setState(PinCheckListen)
		m.setTimer(timerPin, now.Add(m.cfg.PinWait))
	}
}

func hasFormat(fs []eebus.Format, f eebus.Format) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// protocolError sends messageProtocolHandshakeError (wrapped form) and
// closes (section 6.3, section 9).
func (m *Machine) protocolError(code eebus.HandshakeErrorCode, err error) {
	m.sendMessage(eebus.MessageProtocolHandshakeError{Error: code})
	m.fail(CodeClose, err)
}

// --- PIN (section 6.4) and access methods (section 6.5) ---

func (m *Machine) receivePin(now time.Time, msg eebus.Message) {
	switch p := msg.(type) {
	case *eebus.ConnectionPinState:
		if p.PinState != eebus.PinNone {
			m.fail(CodeClose, fmt.Errorf("%w: peer PIN state %q", ErrPINUnsupported, p.PinState))
			return
		}
		m.setState(PinCheckOK)
		m.sendMessage(eebus.AccessMethodsRequest{})
		m.setState(AccessMethodsRequest)
		m.setTimer(timerAccessMethods, now.Add(m.cfg.AccessMethodsWait))
		m.replayEarly(now, func(msg eebus.Message) bool {
			switch msg.(type) {
			case *eebus.AccessMethodsRequest, *eebus.AccessMethods:
				return true
			}
			return false
		})
	case *eebus.AccessMethodsRequest, *eebus.AccessMethods:
		m.keepEarly(msg)
	case *eebus.ConnectionPinInput, *eebus.ConnectionPinError:
		m.fail(CodeClose, fmt.Errorf("%w: peer sent %s", ErrPINUnsupported, msg.MessageName()))
	default:
		m.fail(CodeClose, fmt.Errorf("%w: %s in PIN state", ErrUnexpectedMessage, msg.MessageName()))
	}
}

func (m *Machine) receiveAccess(now time.Time, msg eebus.Message) {
	switch a := msg.(type) {
	case *eebus.AccessMethodsRequest:
		id := m.cfg.LocalSHIPID
		m.sendMessage(eebus.AccessMethods{ID: &id})
	case *eebus.AccessMethods:
		switch {
		case a.ID == nil || *a.ID == "":
			m.fail(CodeClose, fmt.Errorf("%w: accessMethods without id", ErrSHIPID))
			return
		case m.cfg.PeerSHIPID != "" && *a.ID != m.cfg.PeerSHIPID:
			m.fail(CodeSHIPIDMismatch, fmt.Errorf("%w: peer says %q, want %q", ErrSHIPID, *a.ID, m.cfg.PeerSHIPID))
			return
		}
		m.stopTimer()
		m.peerID = *a.ID
		m.out = append(m.out, PeerID{SHIPID: m.peerID})
		m.setState(Approved)
		m.setState(Complete)
		m.replayEarly(now, func(eebus.Message) bool { return true })
	default:
		m.fail(CodeClose, fmt.Errorf("%w: %s while waiting for access methods", ErrUnexpectedMessage, msg.MessageName()))
	}
}

// --- Data exchange (section 6.6) ---

func (m *Machine) receiveData(msg eebus.Message) {
	switch d := msg.(type) {
	case *eebus.Data:
		m.deliver(d)
	case *eebus.AccessMethodsRequest:
		id := m.cfg.LocalSHIPID
		m.sendMessage(eebus.AccessMethods{ID: &id})
	default:
		m.warn(fmt.Errorf("%w: %s in data exchange ignored", ErrUnexpectedMessage, msg.MessageName()))
	}
}

func (m *Machine) deliver(d *eebus.Data) {
	p := bytes.TrimSpace(d.Payload)
	switch {
	case len(p) == 0 || string(p) == "null":
		m.warn(fmt.Errorf("%w: data without payload ignored", ErrMalformed))
	case d.Header.ProtocolID != eebus.ProtocolIDSPINE:
		m.warn(fmt.Errorf("%w: data for protocolId %q ignored", ErrUnexpectedMessage, d.Header.ProtocolID))
	default:
		m.out = append(m.out, Deliver{Payload: d.Payload})
	}
}

// --- Connection close (section 6.7) ---

func (m *Machine) receiveClose(now time.Time, c *eebus.ConnectionClose) {
	switch c.Phase {
	case eebus.CloseAnnounce:
		m.sendMessage(eebus.ConnectionClose{Phase: eebus.CloseConfirm})
		if m.state != Closing {
			m.setState(Closing)
			m.setTimer(timerCloseLinger, now.Add(m.cfg.CloseWait))
		}
	case eebus.CloseConfirm:
		if m.announced {
			m.closeWS(CodeClose, ReasonClose, nil)
			return
		}
		m.warn(fmt.Errorf("%w: close confirm without announce ignored", ErrUnexpectedMessage))
	default:
		m.warn(fmt.Errorf("%w: close phase %q ignored", ErrUnexpectedMessage, c.Phase))
	}
}

// --- Dispatch ---

// receive handles a message after the CMI. It dispatches on the message's
// JSON (its root key), which must agree with the type byte; a type byte
// that does not (or an unknown one) is tolerated with a Warning (sections
// 4, 11).
func (m *Machine) receive(now time.Time, raw []byte) {
	msg, err := m.parse(raw)
	if err != nil {
		m.receiveInvalid(now, err)
		return
	}
	m.dispatch(now, msg)
}

func (m *Machine) dispatch(now time.Time, msg eebus.Message) {
	switch msg := msg.(type) {
	case *eebus.ConnectionClose:
		m.receiveClose(now, msg)
		return
	case *eebus.Data:
		if m.state < Complete {
			m.keepEarly(msg)
			return
		}
	case *eebus.MessageProtocolHandshakeError:
		if m.state < Complete {
			m.fail(CodeClose, fmt.Errorf("%w: peer sent handshake error %d", ErrHandshake, msg.Error))
			return
		}
	case *eebus.ConnectionHello:
		// The peer's answer to our prolongation request that crossed our
		// ready: the user approved while it was on its way (section 6.2).
		if msg.Phase == eebus.HelloReady && (m.state == ProtHServerListenProposal || m.state == ProtHClientListenChoice) {
			m.warn(fmt.Errorf("%w: hello ready after our ready ignored", ErrUnexpectedMessage))
			return
		}
	}
	switch {
	case m.state.inHello():
		m.receiveHello(now, msg)
	case m.state.inProtocolHandshake():
		m.receiveProtocol(now, msg)
	case m.state == PinCheckListen:
		m.receivePin(now, msg)
	case m.state == AccessMethodsRequest:
		m.receiveAccess(now, msg)
	case m.state == Complete || m.state == Closing:
		m.receiveData(msg)
	default: // aborting the hello: ignore
		m.warn(fmt.Errorf("%w: %s in %v ignored", ErrUnexpectedMessage, msg.MessageName(), m.state))
	}
}

// receiveInvalid handles a message that is not a SHIP message (err wraps
// ErrMalformed or ErrUnexpectedMessage).
func (m *Machine) receiveInvalid(now time.Time, err error) {
	switch {
	case m.state.inHello():
		m.abortHello(now, err)
	case m.state.inProtocolHandshake():
		m.protocolError(eebus.HandshakeErrorUnexpectedMessage, err)
	case m.state == PinCheckListen || m.state == AccessMethodsRequest:
		m.fail(CodeClose, err)
	default:
		m.warn(fmt.Errorf("%w (ignored)", err))
	}
}

// parse decodes one SHIP message. It drops stray NULs around the JSON
// (eebus.Decode) and takes the message from its JSON root key.
func (m *Machine) parse(raw []byte) (eebus.Message, error) {
	t, body, err := eebus.Decode(raw)
	if err != nil && !errors.Is(err, eebus.ErrUnknownType) {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if t == eebus.TypeInit {
		return nil, fmt.Errorf("%w: init message after the CMI", ErrUnexpectedMessage)
	}
	name, perr := eebus.Peek(body)
	if perr != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, perr)
	}
	msg, ok := eebus.NewMessage(name)
	if !ok {
		return nil, fmt.Errorf("%w: unknown message %q", ErrUnexpectedMessage, name)
	}
	if uerr := eebus.Unmarshal(body, msg); uerr != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, name, uerr)
	}
	if err != nil || msg.MessageType() != t {
		m.warn(fmt.Errorf("%w: %s with type byte 0x%02x handled as %s", ErrWrongType, name, byte(t), msg.MessageType()))
	}
	return msg, nil
}

// keepEarly buffers a message that arrived before it can be handled
// (section 6.5: early access methods, data before Complete).
func (m *Machine) keepEarly(msg eebus.Message) {
	if len(m.early) >= m.cfg.MaxEarly {
		m.fail(CodeClose, fmt.Errorf("%w: more than %d", ErrTooManyEarly, m.cfg.MaxEarly))
		return
	}
	m.early = append(m.early, msg)
}

// replayEarly dispatches, in arrival order, the buffered messages that
// match, keeping the others.
func (m *Machine) replayEarly(now time.Time, match func(eebus.Message) bool) {
	var keep, run []eebus.Message
	for _, msg := range m.early {
		if match(msg) {
			run = append(run, msg)
		} else {
			keep = append(keep, msg)
		}
	}
	m.early = keep
	for _, msg := range run {
		if m.state.Terminal() {
			return
		}
		m.dispatch(now, msg)
	}
}

// --- Outputs ---

func (m *Machine) flush() []Output {
	out := m.out
	m.out = nil
	return out
}

func (m *Machine) setState(s State) {
	if s == m.state {
		return
	}
	m.out = append(m.out, StateChanged{From: m.state, To: s})
	m.state = s
}

func (m *Machine) setTimer(t timer, at time.Time) {
	m.timer, m.deadline = t, at
}

func (m *Machine) stopTimer() {
	m.timer, m.deadline = timerNone, time.Time{}
}

func (m *Machine) send(msg []byte) {
	m.out = append(m.out, Send{Message: msg})
}

func (m *Machine) sendMessage(msg eebus.Message) {
	b, err := eebus.EncodeMessage(msg)
	if err != nil { // every message the machine builds encodes
		panic(fmt.Sprintf("ship machine: encode %s: %v", msg.MessageName(), err))
	}
	m.send(b)
}

func (m *Machine) sendHello(h eebus.ConnectionHello) { m.sendMessage(h) }

func (m *Machine) warn(err error) {
	m.out = append(m.out, Warning{Err: err})
}

// fail ends the handshake with an error: state Error and a WebSocket close
// with code and the error text (section 9, endHandshakeWithError).
func (m *Machine) fail(code int, err error) {
	m.stopTimer()
	m.early = nil
	m.setState(Error)
	m.out = append(m.out, Close{Code: code, Reason: closeReason(err.Error()), Err: err})
}

// closeWS ends the connection normally: state Closed.
func (m *Machine) closeWS(code int, reason string, err error) {
	m.stopTimer()
	m.early = nil
	m.setState(Closed)
	m.out = append(m.out, Close{Code: code, Reason: reason, Err: err})
}

// closeReason cuts s to the 123 bytes a WebSocket close reason may have,
// on a rune boundary.
func closeReason(s string) string {
	const limit = 123
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

func ptr[T any](v T) *T { return &v }
