//go:build linux

package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller waits for the sockets of parked connections with one epoll
// instance on one goroutine, and wakes a connection when its socket has
// something to read: bytes, the peer's shutdown, an error. A socket is
// registered level-triggered and one-shot: bytes that came before it was
// armed are reported at once, and an event disarms it until the connection
// parks again. The runtime's own poller keeps the socket too; this one only
// watches.
//
// Sockets are armed inside syscall.RawConn.Control, which holds the file
// descriptor open: a connection closed meanwhile is never confused with a
// new one given the same number. Closing a socket removes it from the epoll
// set, so connections are never removed explicitly; a parked connection
// whose socket another goroutine closes must be woken by that goroutine
// (Server.Shutdown does).
type poller struct {
	epfd int
	wake int // an eventfd under token 0: stop ends run
	log  *slog.Logger
	done chan struct{}

	// mu guards the fields below and is held while a socket is armed, so
	// that stop never closes epfd under an arm.
	mu      sync.Mutex
	conns   map[uint32]*conn // by token, from the first park until teardown
	next    uint32           // the last token given out
	stopped bool
	err     error // waiting failed: nothing parks any more
}

// parking: idle connections park here.
const parking = true

// epoll events a parked socket is armed for; errors and hang-ups are
// reported anyway.
const parkEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p := &poller{epfd: epfd, wake: wake, log: log, done: make(chan struct{}), conns: make(map[uint32]*conn)}
	go p.run()
	return p, nil
}

// arm registers c's socket, or arms it again, for one event. c's read side
// calls it, with c.mu held; false means that c cannot park (its socket is
// closed, or the poller has stopped or failed) and must wait on its own.
func (p *poller) arm(c *conn, sc syscall.Conn) bool {
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.err != nil {
		return false
	}
	op := unix.EPOLL_CTL_MOD
	if c.token == 0 {
		for p.next++; p.next == 0 || p.conns[p.next] != nil; p.next++ {
		}
		c.token = p.next
		p.conns[c.token] = c
		op = unix.EPOLL_CTL_ADD
	}
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &unix.EpollEvent{Events: parkEvents, Fd: int32(c.token)})
	})
	return err == nil && ctlErr == nil
}

// forget drops c at its teardown.
func (p *poller) forget(c *conn) {
	if c.token == 0 {
		return
	}
	p.mu.Lock()
	delete(p.conns, c.token)
	p.mu.Unlock()
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			p.fail(err)
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == 0 {
				return // stop
			}
			p.mu.Lock()
			c := p.conns[uint32(ev.Fd)]
			p.mu.Unlock()
			if c != nil {
				c.wakeParked()
			}
		}
	}
}

// fail wakes every parked connection when waiting fails, and lets none park
// any more: they wait on goroutines of their own.
func (p *poller) fail(err error) {
	p.log.Error("waiting for idle connections failed; they keep a goroutine each from now on", "err", err)
	p.mu.Lock()
	p.err = err
	conns := slices.Collect(maps.Values(p.conns))
	p.mu.Unlock()
	for _, c := range conns {
		c.wakeParked()
	}
}

// stop ends the poller once no connection is left to park; it may be
// called again.
func (p *poller) stop() {
	p.mu.Lock()
	stopped := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if stopped {
		return
	}
	_, _ = unix.Write(p.wake, binary.NativeEndian.AppendUint64(nil, 1))
	<-p.done
	unix.Close(p.wake)
	unix.Close(p.epfd)
}
