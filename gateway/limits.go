package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// Limits bound what clients may take of the gateway. The zero value limits
// nothing. They may change while the server runs (SetLimits, on reload);
// connections already open keep running under the new values.
type Limits struct {
	// MaxConnections bounds the open (and upgrading) WebSocket
	// connections; more are refused with 503 before the upgrade.
	MaxConnections int
	// MaxPerAddress bounds the connections from one IP address.
	MaxPerAddress int
	// MessageRate is how many messages a second a connection may send
	// over time, MessageBurst how many at once beyond that; a rate of 0
	// limits nothing.
	MessageRate  float64
	MessageBurst int
	// RatePolicy says what happens to a message over the rate.
	RatePolicy RatePolicy
}

// RatePolicy is what happens to a message that exceeds its connection's
// rate.
type RatePolicy string

const (
	// RateWait stops reading the connection until the rate allows the
	// message: TCP slows the device down and nothing is lost.
	RateWait RatePolicy = "wait"
	// RateBusy hands the message to the session, but what it publishes
	// for it is refused with protocols.ErrBusy (done nacks it "busy").
	RateBusy RatePolicy = "busy"
	// RateClose closes the connection with 1008.
	RateClose RatePolicy = "close"
)

// Valid reports whether p is a known policy.
func (p RatePolicy) Valid() bool { return p == RateWait || p == RateBusy || p == RateClose }

// Why a connection is refused before its upgrade.
var (
	errTooManyConnections = errors.New("too many connections")
	errTooManyFromAddress = errors.New("too many connections from this address")
)

// SetLimits applies new limits; see Limits.
func (s *Server) SetLimits(l Limits) {
	if !l.RatePolicy.Valid() {
		l.RatePolicy = RateWait
	}
	s.limits.Store(&l)
}

// enter counts a connection about to open, from ip ("" for one the
// gateway dials), unless the server is draining or a limit is reached.
// Every nil is matched by one leave (forget does it for a connection).
func (s *Server) enter(ip string) error {
	l := s.limits.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.draining:
		return ErrDraining
	case l.MaxConnections > 0 && s.open >= l.MaxConnections:
		return errTooManyConnections
	case ip != "" && l.MaxPerAddress > 0 && s.perAddr[ip] >= l.MaxPerAddress:
		return errTooManyFromAddress
	}
	s.open++
	if ip != "" {
		s.perAddr[ip]++
	}
	s.active.Add(1)
	return nil
}

// leave undoes one enter.
func (s *Server) leave(ip string) {
	s.mu.Lock()
	s.open--
	if ip != "" {
		if s.perAddr[ip]--; s.perAddr[ip] <= 0 {
			delete(s.perAddr, ip)
		}
	}
	s.mu.Unlock()
	s.active.Done()
}

// hostOf is the IP address of a host:port.
func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// counted is the address a connection was counted under by enter.
func (c *conn) counted() string {
	if c.info.Outbound {
		return ""
	}
	return hostOf(c.info.RemoteAddr)
}

// rateBucket is a connection's token bucket: a few bytes, as every idle
// connection keeps one.
type rateBucket struct {
	tokens float32
	last   int64 // unix nanoseconds of the last refill; 0 before the first message
}

// take refills the bucket up to burst at rate a second and takes a token;
// when there is none it takes it anyway and returns how long the message
// would have had to wait for it.
func (b *rateBucket) take(now time.Time, rate float64, burst int) time.Duration {
	t := now.UnixNano()
	if b.last == 0 {
		b.tokens = float32(max(burst, 1))
	} else {
		b.tokens = min(float32(max(burst, 1)), b.tokens+float32(float64(t-b.last)/1e9*rate))
	}
	b.last = t
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(float64(-b.tokens) / rate * 1e9)
}

// admitMessage applies the message rate before a message reaches the
// session. It returns false when the message must not be delivered.
func (c *conn) admitMessage() bool {
	l := c.srv.limits.Load()
	if l.MessageRate <= 0 {
		return true
	}
	wait := c.rate.take(time.Now(), l.MessageRate, l.MessageBurst)
	if wait == 0 {
		return true
	}
	c.srv.rateLimited.Add(1)
	switch l.RatePolicy {
	case RateClose:
		c.logLimited("rate", "device over its message rate; closing", "device", c.deviceID(), "rate", l.MessageRate)
		c.Close(protocols.ClosePolicyViolation, fmt.Sprintf("message rate exceeded (%g/s)", l.MessageRate))
		return false
	case RateBusy:
		c.overRate.Store(true)
		return true
	}
	// Waiting holds this connection's reading side only. It ends early
	// when the connection starts closing (a shutdown, the session's own
	// close), which sets no channel an idle connection would have to keep,
	// so it is looked for now and then.
	for wait > 0 && !c.isClosing() {
		step := min(wait, 50*time.Millisecond)
		time.Sleep(step)
		wait -= step
	}
	return true
}
