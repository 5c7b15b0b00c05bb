package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// How an idle connection waits. Most connections are idle almost all the
// time, so what one keeps while it waits is most of what the gateway's
// memory grows by per device.
//
// The read loop returns as soon as nothing is left in the read buffer, and
// the connection waits for its next bytes outside gorilla (wait). Before it
// returns, the read loop answers and drops the pings and pongs at the head
// of the buffer itself (takeControl): gorilla's NextReader reads on after a
// control frame until a data message comes, so a keepalive pong handed to
// it would leave the goroutine waiting in gorilla.
//
// A connection that has had nothing to read for parkAfter is parked in the
// server's poller (epoll, Linux only) and gives up its goroutine: the
// poller wakes it, on a fresh goroutine, when its socket has something to
// read. Until then it waits on the goroutine that ran its read loop, whose
// stack has grown to what the session needed: the next message of a busy
// device is served without a new goroutine or stack growth. While it is
// parked no read is blocked on it, so the runtime no longer notices its
// read deadline: the connection's alarm (alarms.go), which sends its
// keepalive pings, then also wakes it at its read deadline, and the read
// that follows times out.
//
// TLS connections park too: one parks only after a read timed out with
// nothing buffered (see socketOf), and the poller watches the socket under
// it.
//
// A connection that cannot park (any connection on other systems, one
// whose socket the poller refused) waits on a fresh goroutine (awaitData)
// instead: a goroutine's
// stack grows to what its deepest call needed (starting the session,
// decoding and routing a message, a log line), 4 or 8 KiB, and a goroutine
// blocked in a read never gives it back, while a fresh one that only waits
// keeps the 2 KiB it starts with.
//
// At any time exactly one of these owns a connection's reading side: a
// goroutine running the read loop or waiting, or the poller (parked).

// parkAfter is how long a connection waits for its next bytes on a
// goroutine before it is parked. Long enough that a device sending a few
// messages a second is not parked and woken for each (an epoll_ctl call and
// a wake through the poller); short enough that a burst of connecting
// devices holds few goroutines at once (a goroutine's descriptor, about 450
// bytes, is never freed but kept for reuse). 0 or less: never park.
var parkAfter = 250 * time.Millisecond

// serveReads runs the read loop on the calling goroutine, and waits
// between messages, until the connection is parked or ends, and then ends
// it; a connection that cannot park is handed to a fresh goroutine to wait.
// mustRead makes the first turn of the loop go to gorilla whatever is
// buffered.
func (c *conn) serveReads(mustRead bool) {
	for {
		idle, handshake, cause := c.readLoop(mustRead)
		if !idle {
			c.teardown(handshake, cause)
			c.srv.forget(c)
			return
		}
		if !c.mayPark() {
			go c.awaitData()
			return
		}
		var parked bool
		if parked, mustRead = c.wait(); parked {
			return
		}
	}
}

// awaitData waits on a fresh goroutine, with as small a stack as a
// goroutine has, then serves the reads.
func (c *conn) awaitData() {
	if parked, mustRead := c.wait(); !parked {
		c.serveReads(mustRead)
	}
}

// wait waits until the connection has bytes to read or fails, or parks it
// when nothing came for parkAfter and it may park. Unless parked, the read
// loop goes on: with mustRead when a read error was handed back to the wire
// for gorilla to meet, and else finding nothing to read when the
// connection could not park after all.
func (c *conn) wait() (parked, mustRead bool) {
	if c.readerLent {
		c.takeReadBuffer()
	}
	lingering := c.linger()
	_, err := c.br.Peek(1)
	if err == nil {
		if lingering {
			c.restoreDeadline() // the message may take longer to arrive
		}
		return false, false
	}
	if lingering && isTimeout(err) {
		parked, expired := c.park()
		if parked || !expired {
			return parked, false
		}
	}
	c.wire.replay = err
	return false, true
}

// mayPark reports whether the connection is to wait for parkAfter and
// then park.
func (c *conn) mayPark() bool {
	if parkAfter <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.noPark
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// linger sets the read deadline parkAfter ahead when the connection may
// park and its own read deadline is later, and reports whether it did.
func (c *conn) linger() bool {
	if parkAfter <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.noPark {
		return false
	}
	t := time.Now().Add(parkAfter)
	if !c.deadline.IsZero() && !t.Before(c.deadline) {
		return false
	}
	_ = c.ws.SetReadDeadline(t)
	return true
}

// restoreDeadline puts back the read deadline linger replaced.
func (c *conn) restoreDeadline() {
	c.mu.Lock()
	_ = c.ws.SetReadDeadline(c.deadline)
	c.mu.Unlock()
}

// park hands the connection to the poller once linger's deadline has
// passed, and restores its own read deadline. It reports whether the
// connection is parked, and else whether its read deadline has passed too
// (expired); otherwise the connection cannot park and waits on its own.
func (c *conn) park() (parked, expired bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetReadDeadline(c.deadline)
	now := time.Now()
	if !c.deadline.IsZero() && !now.Before(c.deadline) {
		return false, true
	}
	sc, _ := socketOf(c.wire.Conn) // see canPark
	p := c.srv.parker()
	if p == nil {
		c.noPark = true
		return false, false
	}
	// The buffer goes before the socket is armed: the wake that follows
	// may run at once, and it takes a buffer first thing.
	c.lendReadBuffer()
	if !p.arm(c, sc) {
		c.takeReadBuffer()
		c.noPark = true
		return false, false
	}
	c.parked = true
	c.armAlarmLocked()
	return true, false
}

// readBuffers holds the read buffers of parked connections, which need
// none: a connection lends its buffer when it parks and takes one when it
// wakes (wait); busyReadBuffers, the larger ones of connections that
// were busy (growReadBuffer).
var (
	readBuffers     = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	busyReadBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, busyReadBufferSize) }}
)

// lendReadBuffer hands the buffer of c's reader to its pool; c.br is left
// empty until takeReadBuffer. Only the owner of c's reading side calls it,
// with nothing buffered (the connection parks after a read found nothing).
// A connection wakes with the small buffer, whatever it had.
func (c *conn) lendReadBuffer() {
	c.releaseReadBuffer()
	c.readerLent = true
	c.backlog = 0
}

// releaseReadBuffer puts the buffer of c's reader in the pool of its size
// and leaves c.br empty. gorilla and c keep their pointer to c.br, so the
// buffer moves to a new Reader rather than c.br going to the pool.
func (c *conn) releaseReadBuffer() {
	r := new(bufio.Reader)
	*r = *c.br
	r.Reset(nil)
	if r.Size() > readBufferSize {
		busyReadBuffers.Put(r)
	} else {
		readBuffers.Put(r)
	}
	*c.br = bufio.Reader{}
}

// Busy connections read through a larger buffer: one that keeps sending
// has its next message already buffered, message after message, and with
// the small buffer took a read call for every two 200-byte messages; the
// larger one makes that one for dozens, which took the gateway's CPU per
// message at QoS 0 from about 6.5 to 4.2 µs. It goes back when the
// connection parks.
const (
	busyReadBufferSize = 8 << 10
	// busyAfter is how many messages in a row must find the next one
	// already buffered.
	busyAfter = 8
)

// noteBacklog counts a message read, and gives the reader the larger
// buffer once the connection has proved busy. Only the owner of c's
// reading side calls it, between messages.
func (c *conn) noteBacklog() {
	if c.br.Size() > readBufferSize {
		return
	}
	if c.br.Buffered() == 0 {
		c.backlog = 0
		return
	}
	if c.backlog++; c.backlog >= busyAfter {
		c.growReadBuffer()
	}
}

// growReadBuffer swaps c's reader for one with the larger buffer; what
// the small one holds (checked by the wire guard already) is read first.
func (c *conn) growReadBuffer() {
	r := busyReadBuffers.Get().(*bufio.Reader)
	var src io.Reader = c.wire
	n := c.br.Buffered()
	if n > 0 {
		held, _ := c.br.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(held)), c.wire)
	}
	r.Reset(src)
	c.releaseReadBuffer()
	*c.br = *r // r is not used again
	c.backlog = 0
	if n > 0 {
		// Buffer what was held now, from memory: the read loop takes an
		// empty buffer for a quiet connection, and the socket would not
		// show these bytes to the poller.
		_, _ = c.br.Peek(n)
	}
}

// takeReadBuffer gives c.br a buffer again, before the reading side reads.
func (c *conn) takeReadBuffer() {
	r := readBuffers.Get().(*bufio.Reader)
	r.Reset(c.wire)
	*c.br = *r // r is not used again: the buffer is c.br's now
	c.readerLent = false
}

// canPark reports whether a connection over nc may park: on Linux, when
// the poller can watch its socket.
func canPark(nc net.Conn) bool {
	_, ok := socketOf(nc)
	return parking && ok
}

// socketOf returns the socket the poller watches for nc: nc itself (a
// *net.TCPConn), or the one under a TLS connection. A TLS connection parks
// only after a read of it timed out, which means that it held no
// decrypted bytes and no whole record: what it holds of a record that
// has not fully arrived is completed by bytes the socket will show. A
// timeout leaves the connection usable (crypto/tls keeps only permanent
// read errors), so the read that follows the wake carries on.
func socketOf(nc net.Conn) (syscall.Conn, bool) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	return sc, ok
}

// wakeParked hands a parked connection to a fresh goroutine; it does
// nothing when the connection is not parked (another wake came first).
func (c *conn) wakeParked() {
	c.mu.Lock()
	parked := c.parked
	if parked {
		c.parked = false
		c.armAlarmLocked()
	}
	c.mu.Unlock()
	if parked {
		go c.awaitData()
	}
}

// setReadDeadlineLocked sets the read deadline, and wakes a parked
// connection there; c.mu is held. Every read deadline is set here or by
// linger and park, which restore this one.
func (c *conn) setReadDeadlineLocked(t time.Time) {
	c.deadline = t
	_ = c.ws.SetReadDeadline(t)
	if c.parked {
		c.armAlarmLocked()
	}
}

// scheduleKeepalive starts the keepalive pings.
func (c *conn) scheduleKeepalive() {
	interval := c.heartbeat.interval
	if interval <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextPing = time.Now().Add(interval)
	c.armAlarmLocked()
}

// armAlarmLocked sets the connection's alarm (the server's alarms) to its
// next event, the next keepalive ping or, while the connection is parked,
// its read deadline; c.mu is held.
func (c *conn) armAlarmLocked() {
	next := c.nextPing
	if c.parked && !c.deadline.IsZero() && (next.IsZero() || c.deadline.Before(next)) {
		next = c.deadline
	}
	if next.IsZero() {
		c.srv.alarms.clear(c)
		return
	}
	c.srv.alarms.set(c, next)
}

// onAlarm sends the keepalive ping when it is due, and wakes a parked
// connection whose read deadline has passed. Pings stop once the
// connection is closing or a ping cannot be written: the read loop then
// notices the dead connection.
func (c *conn) onAlarm() {
	now := time.Now()
	c.mu.Lock()
	ping := !c.nextPing.IsZero() && !now.Before(c.nextPing) && !c.closing
	switch {
	case ping:
		c.nextPing = now.Add(c.heartbeat.interval)
	case c.closing:
		c.nextPing = time.Time{}
	}
	wake := c.parked && !c.deadline.IsZero() && !now.Before(c.deadline)
	if wake {
		c.parked = false
	}
	c.armAlarmLocked()
	c.mu.Unlock()
	if wake {
		go c.awaitData()
	}
	if ping {
		if err := c.ws.WriteControl(websocket.PingMessage, nil, now.Add(c.srv.opts.WriteTimeout)); err != nil {
			c.mu.Lock()
			c.nextPing = time.Time{}
			c.armAlarmLocked()
			c.mu.Unlock()
		}
	}
}

// stopAlarmLocked ends pings and parked waits at teardown; c.mu is held.
func (c *conn) stopAlarmLocked() {
	c.nextPing, c.parked = time.Time{}, false
	c.srv.alarms.clear(c)
}

// parker returns the server's poller, started when a connection first
// parks; nil when connections cannot park here.
func (s *Server) parker() *poller {
	s.pollerOnce.Do(func() {
		p, err := newPoller(s.log)
		if err != nil {
			s.log.Debug("idle connections keep a goroutine each", "reason", err)
			return
		}
		s.poller = p
	})
	return s.poller
}

// stopPoller stops the poller, if one was started, once no connection is
// left; none can start after.
func (s *Server) stopPoller() {
	s.pollerOnce.Do(func() {})
	if s.poller != nil {
		s.poller.stop()
	}
}
