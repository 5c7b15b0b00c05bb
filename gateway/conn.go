package gateway

import (
	"bufio"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
)

// conn runs one upgraded WebSocket connection and the protocol session on
// it. Its reading side is owned by one goroutine at a time, which runs its
// read loop and waits between messages, or by the server's poller while
// the connection is parked (idle.go). A writer goroutine exists only while
// messages are queued.
type conn struct {
	srv     *Server
	ws      *websocket.Conn
	wire    *wireConn     // ws's connection: the frame guard over the accepted conn
	br      *bufio.Reader // what ws reads through, over wire
	info    protocols.SessionInfo
	ctx     context.Context
	cancel  context.CancelFunc
	started time.Time
	// compressMin is the smallest message sent compressed when
	// permessage-deflate was negotiated; 0 when it was not.
	compressMin int
	heartbeat   heartbeat

	// sessionMu serialises calls into the session.
	sessionMu sync.Mutex
	session   protocols.Session
	ended     bool

	// overRate, before rate so that it shares ended's padding: conn just
	// fits a 480-byte size class.
	overRate atomic.Bool // the message being delivered is over the rate (RateBusy)
	rate     rateBucket  // the message rate (limits.go); the reading side's
	auth     *connAuth   // how the device authenticated (access.go); nil: not asked

	// Counters for the status page (Traffic): messages read from the
	// device and written to it, and when it last sent one (Unix ns).
	received, sent atomic.Uint64
	lastMessage    atomic.Int64

	// mu guards the fields below it.
	mu      sync.Mutex
	device  string
	queue   []outgoing
	writing bool
	closing bool
	// closeCode and closeReason are the close that ended the connection:
	// ours, or the peer's when it closed first; for the log.
	closeCode   int
	closeReason string
	owed        *owedCommands // commands the session has not answered (commands.go); nil: none
	drained     chan struct{} // signalled when the writer takes the queue; made by waitForRoom
	// Waiting (idle.go).
	deadline time.Time // the read deadline; zero: none
	nextPing time.Time // zero: no more pings
	parked   bool      // the poller owns the reading side
	noPark   bool      // the connection cannot park
	// readerLent: br has lent its buffer while parked (idle.go); only the
	// owner of the reading side touches it.
	readerLent bool
	backlog    uint8  // messages in a row that found the next one buffered (noteBacklog)
	token      uint32 // the poller's name for the connection; 0 before it first parks
	// alarm is the connection's place in the server's alarms (for nextPing,
	// and deadline while parked), guarded by their lock; 0: none.
	alarm int32

	writer sync.WaitGroup
}

// outgoing is a queued data message, or the close frame that ends the queue.
type outgoing struct {
	msg   protocols.Message
	close []byte
}

var _ protocols.Outlet = (*conn)(nil)
var (
	_ router.Endpoint = (*conn)(nil)
	_ router.Metered  = (*conn)(nil)
)

// run starts the session and serves the connection, on the goroutine
// started for it after the upgrade.
func (c *conn) run(p protocols.Protocol) {
	c.ws.SetPingHandler(c.onPing)
	c.ws.SetPongHandler(func(string) error { c.extendReadDeadline(); return nil })
	c.ws.SetCloseHandler(c.onClose)
	c.extendReadDeadline()
	c.scheduleKeepalive()

	session, err := c.newSession(p)
	if err != nil {
		// The protocol's reason reaches the device, as its close code
		// when it gave one: "not a device id" says more than "internal
		// error". A panic's is not for the device's eyes.
		code, reason := protocols.CloseInternalError, err.Error()
		var ce *protocols.CloseError
		var sp *sessionPanic
		switch {
		case errors.As(err, &ce):
			code, reason = ce.Code, ce.Reason
		case errors.As(err, &sp):
			reason = "internal error"
		}
		c.logLimited("failed", "protocol refused the session", "code", code, "err", err)
		c.Close(code, reason)
		c.drainUntilClosed()
		c.teardown(true, err)
		c.srv.forget(c)
		return
	}
	c.sessionMu.Lock() // Command and goAway may look already: NewSession may Attach
	c.session = session
	c.sessionMu.Unlock()
	c.serveReads(false)
}

func (c *conn) newSession(p protocols.Protocol) (s protocols.Session, err error) {
	defer c.recoverSession("NewSession", &err)
	return p.NewSession(c.ctx, c.info, c)
}

// readLoop reads messages and hands them to the session until nothing is
// left to read (idle) or the connection ends. Then it returns whether a
// close frame is queued or sent (the closing handshake is under way, so the
// writer is let finish before TCP is closed) and why the connection ended,
// nil for a clean close. mustRead skips the idle check once.
func (c *conn) readLoop(mustRead bool) (idle, handshake bool, cause error) {
	for {
		c.waitForRoom()
		if !mustRead && c.br != nil { // a dialled connection reads on in gorilla
			if err := c.takeControl(); err != nil {
				return c.readEnded(err)
			}
			if c.br.Buffered() == 0 {
				return true, false, nil
			}
		}
		mustRead = false
		mt, r, err := c.ws.NextReader()
		if err != nil {
			return c.readEnded(err)
		}
		if c.isClosing() {
			// After our close frame only the peer's close matters.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return c.readEnded(err)
			}
			continue
		}
		buf, err := c.readMessage(mt, r)
		if err != nil {
			return c.readEnded(err)
		}
		if c.br != nil {
			c.noteBacklog()
		}
		now := time.Now()
		c.received.Add(1)
		c.lastMessage.Store(now.UnixNano())
		c.extendReadDeadlineFrom(now)
		if !c.admitMessage() {
			putBuffer(buf)
			continue
		}
		err = c.deliver(protocols.Message{Type: protocols.MessageType(mt), Data: *buf})
		c.overRate.Store(false)
		putBuffer(buf)
		if err != nil {
			var ce *protocols.CloseError
			if errors.As(err, &ce) {
				c.Close(ce.Code, ce.Reason)
			} else {
				c.logAt(slog.LevelError, "session failed", "device", c.deviceID(), "err", err)
				c.Close(protocols.CloseInternalError, "internal error")
			}
		}
	}
}

// takeControl answers the pings and pongs at the head of the read buffer
// as gorilla's handlers would, and drops them, until the head is
// a data or close frame for gorilla, or nothing. A frame is read whole
// first: its first bytes are there, the rest is on its way. The wire guard
// has checked every byte buffered: a control frame is masked, final and
// carries at most 125 bytes. A read error is handed back to the wire and
// left to gorilla.
func (c *conn) takeControl() error {
	for c.br.Buffered() > 0 {
		head, err := c.peek(2)
		if err != nil {
			return nil
		}
		op := head[0] & 0x0F
		if op != opPing && op != opPong {
			return nil
		}
		size := 6 + int(head[1]&0x7F)
		frame, err := c.peek(size)
		if err != nil {
			return nil
		}
		var payload [125]byte
		n := copy(payload[:], frame[6:])
		for i := range n {
			payload[i] ^= frame[2+i%4]
		}
		_, _ = c.br.Discard(size)
		if op == opPong {
			c.extendReadDeadline()
		} else if err := c.onPing(string(payload[:n])); err != nil {
			return err
		}
	}
	return nil
}

// peek returns the next n bytes of the read buffer, reading as needed. A
// read error, which bufio reports once, is handed back to the wire for
// gorilla's next read.
func (c *conn) peek(n int) ([]byte, error) {
	p, err := c.br.Peek(n)
	if err != nil {
		c.wire.replay = err
	}
	return p, err
}

// readEnded is readFailed for readLoop.
func (c *conn) readEnded(err error) (idle, handshake bool, cause error) {
	handshake, cause = c.readFailed(err)
	return false, handshake, cause
}

// waitForRoom pauses reading while the send queue is half full, until the
// writer has taken it. Otherwise a device that sends a burst of requests
// gets the answers queued faster than the writer goroutine is scheduled,
// and is cut off as too slow although it reads; this way TCP slows it down.
// A writer stuck on a device that reads nothing fails after WriteTimeout
// and wakes us.
func (c *conn) waitForRoom() {
	high := max(c.srv.opts.SendQueue/2, 1)
	for {
		c.mu.Lock()
		full := !c.closing && len(c.queue) >= high
		if full && c.drained == nil {
			c.drained = make(chan struct{}, 1) // made when first needed: most connections never wait
		}
		drained := c.drained
		c.mu.Unlock()
		if !full {
			return
		}
		<-drained
	}
}

// signalDrained wakes waitForRoom; c.mu is held.
func (c *conn) signalDrained() {
	select {
	case c.drained <- struct{}{}: // nil (nobody has waited yet): never ready
	default:
	}
}

// readMessage reads one whole message, enforcing the size limit on the
// (decompressed) bytes and, for text, failing at the first invalid UTF-8
// sequence rather than at the end of the message.
func (c *conn) readMessage(mt int, r io.Reader) (*[]byte, error) {
	buf := getBuffer()
	var text utf8Stream
	limit := c.info.MaxMessage
	for {
		if len(*buf) == cap(*buf) {
			*buf = append(*buf, 0)[:len(*buf)]
		}
		n, err := r.Read((*buf)[len(*buf):cap(*buf)])
		if n > 0 {
			chunk := (*buf)[len(*buf) : len(*buf)+n]
			*buf = (*buf)[:len(*buf)+n]
			if limit > 0 && int64(len(*buf)) > limit {
				putBuffer(buf)
				return nil, c.fail(protocols.CloseMessageTooBig, "message too big")
			}
			if mt == websocket.TextMessage && !text.write(chunk) {
				putBuffer(buf)
				return nil, c.fail(protocols.CloseInvalidPayload, "invalid UTF-8 in text message")
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			putBuffer(buf)
			return nil, err
		}
	}
	if mt == websocket.TextMessage && !text.done() {
		putBuffer(buf)
		return nil, c.fail(protocols.CloseInvalidPayload, "invalid UTF-8 in text message")
	}
	return buf, nil
}

func (c *conn) deliver(m protocols.Message) (err error) {
	c.sessionMu.Lock()
	defer c.sessionMu.Unlock()
	if c.ended {
		return nil
	}
	defer c.recoverSession("OnMessage", &err)
	return c.session.OnMessage(m)
}

// recoverSession turns a panic in protocol code into an error, so that one
// faulty session closes with 1011 instead of taking the gateway down.
func (c *conn) recoverSession(method string, err *error) {
	if r := recover(); r != nil {
		c.logAt(slog.LevelError, "protocol session panicked", "method", method, "device", c.deviceID(), "panic", r, "stack", string(debug.Stack()))
		*err = &sessionPanic{method: method, value: r}
	}
}

// sessionPanic is the error a panicking session method turns into.
type sessionPanic struct {
	method string
	value  any
}

func (p *sessionPanic) Error() string {
	return fmt.Sprintf("protocol session panicked in %s: %v", p.method, p.value)
}

// readFailed classifies why reading stopped. It returns whether a close
// frame is queued or sent, and the cause to report to the session: nil for
// a clean close by the peer.
func (c *conn) readFailed(err error) (handshake bool, cause error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		// The peer's close frame, answered by onClose.
		if ce.Code == websocket.CloseNormalClosure || ce.Code == websocket.CloseGoingAway ||
			ce.Code == websocket.CloseNoStatusReceived {
			return true, nil
		}
		return true, err
	}
	var we *wireError
	if errors.As(err, &we) {
		return true, c.fail(we.code, we.reason)
	}
	var pe *protocols.CloseError
	if errors.As(err, &pe) {
		return true, err // from fail in readMessage
	}
	var corrupt flate.CorruptInputError
	if errors.As(err, &corrupt) || errors.Is(err, io.ErrUnexpectedEOF) && c.wire != nil && c.wire.guard.compressed {
		// The inflater's (on data cut inside a deflate block); gorilla
		// reports a cut connection as a 1006 CloseError instead.
		c.logAt(slog.LevelDebug, "inflating a message failed", "err", err)
		return true, c.fail(protocols.CloseInvalidPayload, "invalid compressed data")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c.isClosing() {
			return false, errors.New("closing handshake timed out")
		}
		c.writeClose(protocols.CloseGoingAway, "keepalive timeout")
		return false, errors.New("keepalive timeout: no pong from the peer")
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		return true, err // gorilla's backstop, which has sent 1009 itself
	}
	return false, err // a dead connection
}

// fail answers a violation: the close frame goes out behind what is already
// queued (replies to the messages before the violation), and the read loop
// ends.
func (c *conn) fail(code int, reason string) error {
	c.Close(code, reason)
	return &protocols.CloseError{Code: code, Reason: reason}
}

// onClose answers the peer's close frame, which gorilla and the wire guard
// have checked. The answer echoes its status code (none for none) and is
// queued behind the messages already sent, so that the replies to what the
// peer sent before its close still reach it.
func (c *conn) onClose(code int, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing { // else our own close frame is queued or sent
		c.closing = true
		c.closeCode, c.closeReason = code, "closed by the peer"
		c.enqueueLocked(outgoing{close: websocket.FormatCloseMessage(code, "")})
	}
	return nil
}

func (c *conn) writeClose(code int, reason string) {
	c.mu.Lock()
	c.closing = true
	if c.closeCode == 0 {
		c.closeCode, c.closeReason = code, reason
	}
	c.mu.Unlock()
	deadline := time.Now().Add(c.srv.opts.WriteTimeout)
	_ = c.ws.WriteControl(websocket.CloseMessage, closePayload(code, reason), deadline)
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// teardown ends the session and releases everything the connection holds.
// When a close frame is queued or sent (handshake), the writer finishes
// first, then the server closes TCP; otherwise the connection is dead and is
// closed at once.
func (c *conn) teardown(handshake bool, cause error) {
	c.cancel()
	c.mu.Lock()
	c.closing = true
	c.stopAlarmLocked()
	device, code, reason := c.device, c.closeCode, c.closeReason
	c.mu.Unlock()
	if c.token != 0 {
		c.srv.poller.forget(c)
	}
	if device != "" {
		c.srv.router.Detach(device, c)
	}
	c.sessionMu.Lock()
	if c.session != nil && !c.ended {
		var panicked error
		func() {
			defer c.recoverSession("Close", &panicked)
			c.session.Close(cause)
		}()
	}
	c.ended = true
	c.sessionMu.Unlock()
	c.settleOwed(device) // after Close: what the session answered there is answered

	if !handshake {
		_ = c.ws.NetConn().Close() // also ends a writer stuck on the peer
	}
	c.writer.Wait()
	if handshake {
		c.lingerClose()
	}
	duration := time.Since(c.started).Round(time.Millisecond)
	switch {
	case device != "":
		c.logLimited("disconnect", "device disconnected", "device", device, "code", code, "reason", reason, "cause", cause, "duration", duration)
	case code != 0 && code != protocols.CloseNormal && code != protocols.CloseGoingAway:
		// It never got as far as naming itself: a failed hello, bad data.
		c.logLimited("failed", "connection closed before a device attached", "code", code, "reason", reason, "cause", cause, "duration", duration)
	default:
		c.logAt(slog.LevelDebug, "connection closed", "cause", cause, "duration", duration)
	}
}

// lingerClose closes the connection after the closing handshake: the
// server closes first (RFC 6455 section 7.1.1). The peer may still be
// sending (after a failure, or frames behind its close); half-closing
// first (a TCP FIN, or TLS close_notify) and draining briefly until the
// peer closes keeps a reset from destroying our close frame before the peer
// has read it.
func (c *conn) lingerClose() {
	raw := c.ws.NetConn()
	if c.wire != nil {
		raw = c.wire.Conn // *net.TCPConn or *tls.Conn; drained past the guard
	}
	if hc, ok := raw.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		_ = raw.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(raw, 1<<20))
	}
	_ = raw.Close()
}

// drainUntilClosed waits for the peer's close frame after our own.
func (c *conn) drainUntilClosed() {
	for {
		if _, r, err := c.ws.NextReader(); err != nil {
			return
		} else if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
	}
}

// logAt writes a line on the server's logger with the connection's session,
// protocol and remote address first. They are added line by line rather
// than held in a logger of the connection's own (slog.Logger.With), which
// would keep them formatted on the heap of every idle connection.
func (c *conn) logAt(level slog.Level, msg string, args ...any) {
	ctx := context.Background()
	h := c.srv.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(2, pcs[:]) // logAt's caller, as slog.Logger would record it
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.AddAttrs(slog.String("session", c.info.ID), slog.String("protocol", c.info.Subprotocol),
		slog.String("remote", c.info.RemoteAddr))
	r.Add(args...)
	_ = h.Handle(ctx, r)
}

func (c *conn) extendReadDeadline() { c.extendReadDeadlineFrom(time.Now()) }

// extendReadDeadlineFrom is extendReadDeadline at now, which the caller
// has at hand.
func (c *conn) extendReadDeadlineFrom(now time.Time) {
	h := c.heartbeat
	// Under mu: once closing is set, the writer's CloseTimeout deadline
	// must be the last one, not overwritten by a check made just before.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	var t time.Time
	if h.interval > 0 {
		t = now.Add(h.interval + h.timeout)
		// A busy device would move the deadline on every message, a timer
		// update each; a few percent of the timeout earlier does no harm.
		if d := t.Sub(c.deadline); d >= 0 && d < h.timeout/16 {
			return
		}
	}
	c.setReadDeadlineLocked(t)
}

func (c *conn) onPing(data string) error {
	c.extendReadDeadline()
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.srv.opts.WriteTimeout))
	if errors.Is(err, websocket.ErrCloseSent) {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}

// Attach implements protocols.Outlet.
func (c *conn) Attach(d protocols.Device) error {
	device := d.ID
	if err := c.authenticate(d); err != nil {
		return err
	}
	c.mu.Lock()
	if c.device != "" {
		c.mu.Unlock()
		return errors.New("session already attached as " + c.device)
	}
	if c.closing {
		c.mu.Unlock()
		return protocols.ErrClosed
	}
	c.device = device
	c.mu.Unlock()
	dev := router.Device{ID: device, Protocol: c.info.Subprotocol, Session: c.info.ID, Since: time.Now().UTC(), Description: d.Description}
	if err := c.srv.router.Attach(dev, c); err != nil {
		c.mu.Lock()
		c.device = ""
		c.mu.Unlock()
		return err
	}
	if c.ctx.Err() != nil {
		// The connection ended meanwhile and teardown may have detached
		// before the router had us: undo, or the device stays online.
		c.srv.router.Detach(device, c)
		return protocols.ErrClosed
	}
	// The device is announced (and its commands subscribed) before the
	// session may tell it so and it publishes: its first reading never
	// comes before its online status. The wait does not derive from
	// c.ctx: a child context leaves a map of children in every
	// connection's context for as long as it lives, and the wait is
	// bounded anyway.
	ctx, cancel := context.WithTimeout(context.Background(), settleWait)
	c.srv.router.Settle(ctx, device)
	cancel()
	c.logLimited("connect", "device connected", "device", device, "path", c.info.Path)
	return nil
}

// settleWait bounds how long Attach waits for the device's presence to be
// published; a broker that slow gets the device's frames behind it anyway.
const settleWait = 5 * time.Second

// deviceID returns the attached device id, "" before Attach. Log lines name
// it explicitly, as it is set after the connection's first lines.
func (c *conn) deviceID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.device
}

// Send implements protocols.Outlet.
func (c *conn) Send(m protocols.Message) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return protocols.ErrClosed
	}
	if len(c.queue) >= c.srv.opts.SendQueue {
		// Drop what is queued and put the close frame next, in the queue
		// rather than through WriteControl: the writer may be stuck on this
		// very device and Send must not wait for it. WriteTimeout ends a
		// device that reads nothing at all.
		c.closing = true
		c.closeCode, c.closeReason = protocols.ClosePolicyViolation, "send queue full: the device does not keep up"
		c.queue = nil
		c.enqueueLocked(outgoing{close: closePayload(c.closeCode, c.closeReason)})
		device := c.device
		c.mu.Unlock()
		c.logAt(slog.LevelWarn, "device does not read fast enough; closing", "device", device, "queue", c.srv.opts.SendQueue)
		return protocols.ErrSendQueueFull
	}
	c.enqueueLocked(outgoing{msg: m})
	c.mu.Unlock()
	return nil
}

// Close implements protocols.Outlet: the close frame is queued behind the
// messages already sent, then the peer has CloseTimeout to answer it.
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing = true
	c.closeCode, c.closeReason = code, reason
	c.enqueueLocked(outgoing{close: closePayload(code, reason)})
}

func (c *conn) enqueueLocked(o outgoing) {
	c.queue = append(c.queue, o)
	if !c.writing {
		c.writing = true
		c.writer.Add(1)
		go c.writeLoop()
	}
}

// Publish implements protocols.Outlet.
func (c *conn) Publish(f protocols.Frame) error {
	c.mu.Lock()
	f.Device = c.device
	c.mu.Unlock()
	if f.Device == "" {
		return errors.New("publish before the session attached a device")
	}
	if c.overRate.Load() {
		return fmt.Errorf("%w: over the message rate", protocols.ErrBusy)
	}
	if err := c.mayPublish(f.Device, f.Channel, f.Payload); err != nil {
		return err
	}
	return c.srv.router.Publish(f)
}

// Command implements router.Endpoint.
func (c *conn) Command(cmd protocols.Command) (err error) {
	c.sessionMu.Lock()
	defer c.sessionMu.Unlock()
	if c.ended || c.session == nil { // nil: NewSession attached and has not returned yet
		return protocols.ErrDeviceOffline
	}
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing { // nothing more reaches the device (Send refuses)
		return fmt.Errorf("command %q to %q: the session is closing: %w", cmd.Name, cmd.Device, protocols.ErrClosed)
	}
	if !c.srv.acl.Load().MayReceive(cmd.Device, cmd.Name) {
		c.srv.forbiddenCommands.Add(1)
		return fmt.Errorf("%w: %s may not receive %q", protocols.ErrForbidden, cmd.Device, cmd.Name)
	}
	// The result may come before OnCommand returns (SHIP publishes it from
	// OnCommand); a command the session refuses is owed no result.
	cmd.ID = c.owe(cmd)
	defer func() {
		if err != nil {
			c.forgive(cmd.ID)
		}
	}()
	defer func() {
		if _, panicked := err.(*sessionPanic); panicked {
			c.Close(protocols.CloseInternalError, "internal error")
		}
	}()
	defer c.recoverSession("OnCommand", &err)
	return c.session.OnCommand(cmd)
}

// goAway ends the connection for a shutdown: with the session's own
// closing handshake when its protocol has one, else with 1001.
func (c *conn) goAway(reason string) {
	c.sessionMu.Lock()
	g, ok := c.session.(protocols.GoingAway)
	if ok && !c.ended {
		var panicked error
		func() {
			defer c.recoverSession("GoingAway", &panicked)
			g.GoingAway()
		}()
		if panicked == nil {
			c.sessionMu.Unlock()
			return
		}
	}
	c.sessionMu.Unlock()
	c.Close(protocols.CloseGoingAway, reason)
}

// Traffic implements router.Metered. Messages written are counted once
// gorilla has them; with several queued that is before the batch's one
// system call.
func (c *conn) Traffic() router.Traffic {
	t := router.Traffic{Address: c.info.RemoteAddr, In: c.received.Load(), Out: c.sent.Load()}
	if ns := c.lastMessage.Load(); ns != 0 {
		t.Last = time.Unix(0, ns)
	}
	return t
}

// Evict implements router.Endpoint.
func (c *conn) Evict(reason string) {
	c.Close(protocols.CloseReplaced, reason)
}

// writeLoop drains the queue and exits when it is empty.
func (c *conn) writeLoop() {
	defer c.writer.Done()
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.signalDrained()
		if len(batch) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		// Several messages go out in one system call (the wire holds them
		// back until the batch is written); a lone one at once.
		held := len(batch) > 1 && c.wire != nil
		if held {
			c.wire.hold()
		}
		var err error
		for _, o := range batch {
			deadline := time.Now().Add(c.srv.opts.WriteTimeout)
			if o.close != nil {
				_ = c.ws.WriteControl(websocket.CloseMessage, o.close, deadline)
				c.mu.Lock()
				c.setReadDeadlineLocked(time.Now().Add(c.srv.opts.CloseTimeout))
				c.mu.Unlock()
				continue
			}
			_ = c.ws.SetWriteDeadline(deadline)
			if c.compressMin > 0 {
				c.ws.EnableWriteCompression(len(o.msg.Data) >= c.compressMin)
			}
			if err = c.ws.WriteMessage(int(o.msg.Type), o.msg.Data); err != nil {
				break
			}
			c.sent.Add(1)
		}
		if held {
			if rerr := c.wire.release(); err == nil {
				err = rerr
			}
		}
		if err != nil {
			c.logAt(slog.LevelDebug, "write failed", "device", c.deviceID(), "err", err)
			c.mu.Lock()
			c.closing = true // first, so that nothing extends the deadline below
			c.queue = nil
			c.writing = false
			c.signalDrained()
			c.setReadDeadlineLocked(time.Now()) // wake the read loop
			c.mu.Unlock()
			return
		}
	}
}

// closePayload builds a close frame body; the reason is cut to fit the 125
// byte control frame limit without splitting a UTF-8 sequence.
func closePayload(code int, reason string) []byte {
	const maxReason = 123
	if len(reason) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return websocket.FormatCloseMessage(code, reason)
}

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuffer() *[]byte { return bufferPool.Get().(*[]byte) }

func putBuffer(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // let the rare huge buffer go
	}
	*b = (*b)[:0]
	bufferPool.Put(b)
}
