package gateway

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// logLimiter keeps a flood of similar events (refused handshakes, failed
// authentications, connections coming and going) from filling the disk:
// each kind of line has a token bucket, lines beyond it are counted, and
// the next line of that kind that is written says how many were left out.
type logLimiter struct {
	rate  float64 // lines a second per kind, over time
	burst float64

	mu    sync.Mutex
	kinds map[string]*logBucket
}

type logBucket struct {
	tokens     float64
	last       time.Time
	suppressed uint64
}

func newLogLimiter(rate float64, burst int) *logLimiter {
	return &logLimiter{rate: rate, burst: float64(burst), kinds: make(map[string]*logBucket)}
}

// allow reports whether a line of kind may be written now, and how many
// lines of that kind were left out since the last one written.
func (l *logLimiter) allow(kind string, now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.kinds[kind]
	if b == nil {
		b = &logBucket{tokens: l.burst, last: now}
		l.kinds[kind] = b // kinds are a few constants: the map stays small
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// logLimited writes an info line of kind on the server's log unless that
// kind is over its rate.
func (s *Server) logLimited(kind, msg string, args ...any) {
	s.logLimitedAt(2, kind, msg, nil, args...)
}

// logLimitedAt is logLimited with the caller skip and the attributes that
// go first (a connection's).
func (s *Server) logLimitedAt(skip int, kind, msg string, first []slog.Attr, args ...any) {
	ctx := context.Background()
	h := s.log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	ok, suppressed := s.logRate.allow(kind, time.Now())
	if !ok {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(skip+1, pcs[:])
	r := slog.NewRecord(time.Now(), slog.LevelInfo, msg, pcs[0])
	r.AddAttrs(first...)
	r.Add(args...)
	if suppressed > 0 {
		r.AddAttrs(slog.Uint64("suppressed", suppressed))
	}
	_ = h.Handle(ctx, r)
}

// logLimited is the connection's logAt for info lines of a kind that a
// flood could repeat.
func (c *conn) logLimited(kind, msg string, args ...any) {
	c.srv.logLimitedAt(2, kind, msg, []slog.Attr{slog.String("session", c.info.ID),
		slog.String("protocol", c.info.Subprotocol), slog.String("remote", c.info.RemoteAddr)}, args...)
}
