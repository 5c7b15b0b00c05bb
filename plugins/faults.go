package plugins

import (
	"net"
	"sync"
	"time"
)

// Crash accounting: one device must not be able to take a plugin away from
// every other device, and a plugin that fails by itself must still be
// disabled. The rules, per plugin:
//
//   - A fault is a panic the SDK recovered in a session (it closes only
//     that connection), the plugin process exiting, or a session stalling
//     while the plugin still answers its health probe. A process that stops
//     answering the probe has hung: nobody is blamed.
//   - A fault is blamed on the devices whose own events were in the
//     plugin's hands: a message sent and not yet consumed, the connection's
//     Open not yet answered, its Closed not yet finished. Commands, acks and
//     GoingAway come from the gateway, not the device, and a panic in
//     OnCommand, Frame.Ack or GoingAway is not blamed. A device is its id
//     once its session attached, else its address (the host part of the
//     remote address).
//   - A crash with more than MaxSuspects devices' events in the plugin's
//     hands is not blamed on any of them: no single device is the cause.
//   - A fault blamed on devices does not count towards the plugin's
//     MaxFailures; a fault blamed on nobody does. Every process failure,
//     blamed or not, waits out the restart backoff.
//   - A device blamed for DeviceFaults faults within FaultWindow is refused
//     for FaultWindow, with 1008: by id when its session attaches, by
//     address when it connects. The plugin stays enabled for everyone else.

// culprit is who a fault is blamed on.
type culprit struct {
	device string // the attached device id; "" before the session attached
	addr   string // the host part of the remote address
}

// key names the culprit in the book: its device id once known, else its
// address.
func (c culprit) key() string {
	if c.device != "" {
		return "device " + c.device
	}
	return "address " + c.addr
}

// hostOf is the host part of a remote address, the address itself when it
// has no port.
func hostOf(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// faultBook remembers the faults blamed on each device and refuses those
// that caused too many.
type faultBook struct {
	limit  int
	window time.Duration

	mu      sync.Mutex
	recent  map[string][]time.Time // fault times within window, oldest first
	refused map[string]time.Time   // until when
}

func newFaultBook(limit int, window time.Duration) *faultBook {
	return &faultBook{limit: limit, window: window, recent: make(map[string][]time.Time), refused: make(map[string]time.Time)}
}

// add blames a fault at now on c. It returns how many faults c has within
// the window, and until when c is refused once that reaches the limit.
func (b *faultBook) add(c culprit, now time.Time) (faults int, refusedUntil time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune(now) // faults are rare: a sweep each keeps the book to recent ones
	k := c.key()
	times := append(b.recent[k], now)
	if len(times) < b.limit {
		b.recent[k] = times
		return len(times), time.Time{}
	}
	delete(b.recent, k) // a refused device starts afresh afterwards
	refusedUntil = now.Add(b.window)
	b.refused[k] = refusedUntil
	return len(times), refusedUntil
}

// refusedUntil reports whether c is refused at now, and until when.
func (b *faultBook) refusedUntil(c culprit, now time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.refused[c.key()]
	if !ok || !now.Before(until) {
		return time.Time{}, false
	}
	return until, true
}

func (b *faultBook) prune(now time.Time) {
	for k, times := range b.recent {
		i := 0
		for i < len(times) && now.Sub(times[i]) >= b.window {
			i++
		}
		if i == len(times) {
			delete(b.recent, k)
		} else {
			b.recent[k] = times[i:]
		}
	}
	for k, until := range b.refused {
		if !now.Before(until) {
			delete(b.refused, k)
		}
	}
}

// account blames a process failure on its suspects, and reports whether it
// did; a failure blamed on nobody is the plugin's own.
func (p *supervised) account(f failure) bool {
	if len(f.suspects) == 0 || len(f.suspects) > p.host.opts.MaxSuspects {
		p.log.Error("plugin failed; its sessions are closed with 1011", "reason", f.reason, "devices_in_flight", len(f.suspects))
		return false
	}
	p.log.Warn("plugin failed while handling a device's event; its sessions are closed with 1011", "reason", f.reason)
	for _, c := range f.suspects {
		p.blame(c, f.reason)
	}
	return true
}

// blame records a fault caused by c, and refuses c once it has caused too
// many.
func (p *supervised) blame(c culprit, why string) {
	faults, until := p.faults.add(c, time.Now())
	if until.IsZero() {
		p.log.Info("plugin fault blamed on a device", "device", c.device, "address", c.addr, "fault", why, "faults", faults)
		return
	}
	p.log.Info("device refused: it keeps causing plugin faults", "device", c.device, "address", c.addr, "fault", why,
		"faults", faults, "window", p.faults.window, "until", until.Format(time.RFC3339))
}
