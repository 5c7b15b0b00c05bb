package ship

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship/eebus"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/machine"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// session runs the SHIP state machine of one connection. The gateway calls
// OnMessage, OnCommand and Close one at a time; the machine's timer and
// the wait for the user's decision call in from their own goroutines, so
// every use of the machine holds mu.
type session struct {
	p    *Protocol
	ctx  context.Context
	out  protocols.Outlet
	log  *slog.Logger
	peer identity.Peer

	mu      sync.Mutex
	m       *machine.Machine
	timer   *time.Timer
	ended   bool
	reached *atomic.Bool // the dial loop's: set at Complete (client role)
}

func (p *Protocol) newSession(ctx context.Context, info protocols.SessionInfo, out protocols.Outlet, role machine.Role, target Target, reached *atomic.Bool) (protocols.Session, error) {
	if info.TLS == nil {
		return nil, errNoTLS
	}
	peer, err := identity.VerifyPeer(*info.TLS, p.opts.TLS)
	if err != nil {
		return nil, err
	}
	if peer.SKI == p.opts.Identity.SKI {
		return nil, &protocols.CloseError{Code: protocols.ClosePolicyViolation, Reason: "connected to itself"}
	}
	log := p.log.With("session", info.ID, "role", role.String(), "ski", peer.SKI, "remote", info.RemoteAddr)
	if peer.Mismatch {
		log.Warn("peer certificate's SKI extension does not match its key", "computed", peer.Computed, "extension", peer.Extension)
	}
	decision, err := p.opts.Trust.Check(peer.SKI, "", p.opts.AutoAccept)
	if err != nil && !errors.Is(err, trust.ErrSHIPIDMismatch) {
		return nil, err // the store cannot be written: fail closed
	}
	cfg := p.opts.Machine
	cfg.LocalSHIPID = p.opts.Identity.SHIPID
	cfg.PeerSHIPID = target.SHIPID
	cfg.AutoAccept = decision == trust.Trusted
	m, err := machine.New(role, cfg)
	if err != nil {
		return nil, err
	}
	s := &session{p: p, ctx: ctx, out: out, log: log, peer: peer, m: m, reached: reached}
	p.stats.sessions.Add(1)
	log.Info("SHIP connection", "trust", string(decision))
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if decision == trust.Rejected {
		s.apply(m.Reject(now))
	}
	s.apply(m.Start(now))
	return s, nil
}

// OnMessage implements protocols.Session.
func (s *session) OnMessage(msg protocols.Message) error {
	if msg.Type != protocols.Binary {
		return &protocols.CloseError{Code: machine.CodeUnsupportedData, Reason: "SHIP messages are binary"}
	}
	// The machine may keep the message (early access methods or data), and
	// the gateway reuses the buffer.
	data := bytes.Clone(msg.Data)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply(s.m.Receive(time.Now(), data))
	return nil
}

// OnCommand implements protocols.Session: cmd/spine carries one SPINE
// datagram in plain JSON, sent to the peer in the EEBus form.
func (s *session) OnCommand(cmd protocols.Command) error {
	if cmd.Name != Channel {
		return errors.New("unknown command: a SHIP device takes \"spine\" (a SPINE datagram)")
	}
	payload, err := datagramPayload(cmd.Args)
	if err != nil {
		return err
	}
	s.mu.Lock()
	outs, err := s.m.SendData(time.Now(), payload)
	if err == nil {
		s.apply(outs)
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.p.stats.datagramsOut.Add(1)
	res, err := protocols.ResultFrame(cmd.Name, protocols.Result{ID: cmd.ID, OK: true})
	if err == nil {
		err = s.out.Publish(res)
	}
	if err != nil {
		s.log.Warn("cannot publish a command result", "err", err)
	}
	return nil
}

// datagramPayload turns a command's plain JSON into the EEBus root form of
// a SPINE message: {"datagram":{...}} becomes {"datagram":[...]}, its
// elements in XSD sequence order whatever order the publisher's JSON has
// them in.
func datagramPayload(args []byte) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("bad-request: the payload must be a SPINE datagram, {\"datagram\":{...}}")
	}
	encoded, err := eebus.SPINEToEEBus(args)
	if err != nil {
		return nil, errors.New("bad-request: " + err.Error())
	}
	if name, err := eebus.Peek(encoded); err != nil || name != eebus.NameDatagram {
		return nil, errors.New("bad-request: the payload must be a SPINE datagram, {\"datagram\":{...}}")
	}
	return encoded, nil
}

// Close implements protocols.Session.
func (s *session) Close(err error) {
	s.mu.Lock()
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
	}
	state := s.m.State()
	s.mu.Unlock()
	s.p.release(s)
	s.log.Info("SHIP connection ended", "state", state.String(), "err", err)
}

// GoingAway implements protocols.GoingAway: the gateway shuts down or no
// longer wants the connection, which then ends with SHIP's close announce
// and confirm (section 6.7) in data exchange, or at once before it.
//
// The gateway also calls it when a dial loop stops, and Peers stops the
// loop of a peer the user removed or rejected. Peers unpairs the peer's
// session first, but only one that has completed its handshake: one still
// in it would close as at shutdown. The trust store changed before anyone
// was told, so it says which close this is.
func (s *session) GoingAway() {
	reason := eebus.CloseUnspecific
	if e, ok := s.p.opts.Trust.Get(s.peer.SKI); !ok || e.State == trust.Rejected {
		reason = eebus.CloseRemovedConnection
	}
	s.close(reason)
}

// unpair ends the connection because the user removed or rejected the
// peer (section 6.7: reason removedConnection).
func (s *session) unpair() { s.close(eebus.CloseRemovedConnection) }

// close ends the connection with reason. The first close decides the
// reason: the machine ignores Close once it is closing or closed.
func (s *session) close(reason eebus.CloseReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.apply(s.m.Close(time.Now(), reason))
	}
}

// apply carries out the machine's outputs in order and re-arms its timer;
// s.mu is held.
func (s *session) apply(outs []machine.Output) {
	var warning error // the latest Warning: why a hello abort after it happens
	for _, o := range outs {
		switch o := o.(type) {
		case machine.Send:
			if err := s.out.Send(protocols.Message{Type: protocols.Binary, Data: o.Message}); err != nil {
				s.log.Debug("send failed", "err", err)
			}
		case machine.Deliver:
			s.deliver(o.Payload)
		case machine.PeerID:
			s.attach(o.SHIPID)
		case machine.NeedsTrust:
			s.log.Info("unknown SHIP peer waits for approval: wsgate ship approve " + s.peer.SKI)
			go s.awaitDecision()
		case machine.Close:
			if errors.Is(o.Err, machine.ErrRejected) {
				s.p.stats.rejected.Add(1)
			}
			s.log.Info("closing SHIP connection", "code", o.Code, "reason", o.Reason, "err", o.Err)
			s.out.Close(o.Code, o.Reason)
		case machine.StateChanged:
			s.log.Debug("SHIP state", "from", o.From.String(), "to", o.To.String())
			switch o.To {
			case machine.Complete:
				s.p.stats.complete.Add(1)
				if s.reached != nil {
					s.reached.Store(true)
				}
			case machine.HelloAbortDone:
				s.helloAborted(o.From, warning)
			}
		case machine.Warning:
			warning = o.Err
			s.log.Debug("SHIP peer deviates", "err", o.Err)
		}
	}
	s.rearm()
}

// helloAborted logs, at info, why we abort the hello: the machine gives
// the reason as a Warning just before. The close that follows, 4452 "Node
// rejected by application", is the same whether the trust policy refused
// the peer or its hello went wrong, and the same as when the peer aborts.
func (s *session) helloAborted(from machine.State, why error) {
	var refused string
	switch {
	case errors.Is(why, machine.ErrRejected):
		refused = "rejected"
	case from == machine.HelloPendingListen && errors.Is(why, machine.ErrTimeout):
		// Unknown with auto-accept off, and the wait for the user ran
		// out, or the peer cannot wait that long (section 6.2).
		refused = "not approved in time"
	default:
		s.log.Info("SHIP hello aborted", "err", why)
		return
	}
	s.log.Info("SHIP peer refused by the trust policy", "why", refused, "err", why)
}

// rearm sets the timer to the machine's next deadline; s.mu is held.
func (s *session) rearm() {
	deadline, ok := s.m.NextDeadline()
	if !ok || s.ended {
		if s.timer != nil {
			s.timer.Stop()
		}
		return
	}
	d := time.Until(deadline)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.tick)
		return
	}
	s.timer.Reset(d)
}

func (s *session) tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.apply(s.m.Tick(time.Now()))
	}
}

// awaitDecision waits for the user to approve or reject the pending peer;
// it ends with the connection at the latest.
func (s *session) awaitDecision() {
	decision, err := s.p.opts.Trust.Wait(s.ctx, s.peer.SKI)
	if err != nil && s.ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if decision == trust.Trusted {
		s.log.Info("SHIP peer approved")
		s.apply(s.m.Approve(time.Now()))
		return
	}
	s.log.Info("SHIP peer rejected", "err", err)
	s.apply(s.m.Reject(time.Now()))
}

// attach names the device after the peer's SHIP ID, or its SKI when the
// SHIP ID cannot be a topic level; s.mu is held.
func (s *session) attach(shipID string) {
	if err := s.p.opts.Trust.LearnSHIPID(s.peer.SKI, shipID); err != nil {
		s.log.Warn("peer's SHIP ID not stored", "ship_id", shipID, "err", err)
	}
	device := shipID
	if !protocols.ValidDeviceID(device) {
		device = s.peer.SKI
	}
	s.p.claim(s)
	// The peer was trusted when it connected; the user may have removed or
	// rejected it since. Checked after the claim: a change of the store
	// that came before is seen here, one that comes after finds this
	// session claimed and unpairs it (Peers.onTrust).
	if e, ok := s.p.opts.Trust.Get(s.peer.SKI); !ok || e.State != trust.Trusted {
		s.p.release(s)
		s.log.Info("peer removed or rejected by the user during the handshake; closing")
		s.apply(s.m.Close(time.Now(), eebus.CloseRemovedConnection))
		return
	}
	// wsgate carries SPINE without reading it, so the device's own
	// description (its entities, brand and model) stays with the SPINE
	// client; what the gateway knows is whether it is connected.
	desc := &protocols.Description{Model: "EEBus SHIP device", Serial: s.peer.SKI, Entities: []protocols.Entity{protocols.Connectivity()}}
	if err := s.out.Attach(protocols.Device{ID: device, Description: desc}); err != nil {
		s.log.Error("cannot attach the SHIP peer as a device", "device", device, "err", err)
		s.apply(s.m.Close(time.Now(), eebus.CloseUnspecific))
		return
	}
	s.log.Info("SHIP peer attached", "device", device, "ship_id", shipID)
}

// deliver publishes one received SPINE datagram as plain JSON; s.mu is
// held.
func (s *session) deliver(payload []byte) {
	plain, err := eebus.FromEEBus(payload)
	if err != nil {
		s.p.stats.dropped.Add(1)
		s.log.Warn("SPINE datagram is not EEBus JSON; dropped", "err", err)
		return
	}
	err = s.out.Publish(protocols.Frame{Channel: Channel, Payload: plain, QoS: s.p.opts.QoS})
	if err != nil {
		s.p.stats.dropped.Add(1)
		s.log.Warn("SPINE datagram not published", "err", err)
		return
	}
	s.p.stats.datagramsIn.Add(1)
}
