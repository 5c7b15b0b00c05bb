package plugins

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
)

// link is the connection to a plugin process that carries all its
// sessions: one end of a socket pair, the plugin holding the other
// (pluginpb.LinkFD). It replaced a gRPC stream per session, which cost
// every session its own stream messages (at QoS 1, where each device waits
// for its acks, a handful of one device's events each) and every message
// HTTP/2 framing, TLS and goroutine hand-overs inside gRPC on both sides.
// On the link a batch holds whatever any session has queued, and is one
// write and one read.
//
// One goroutine writes the link, one reads it. What a session has queued
// is bounded by its window (messages and commands), its replyQueue (acks
// and answers) and one each of Open, GoingAway and Closed. The reader hands
// each session's actions to the session's own goroutine, so that one
// session waiting (for the bridge's queue, or for the gateway to check a
// device's token) holds up no other.
type link struct {
	conn net.Conn

	mu       sync.Mutex
	sessions map[uint64]*remoteSession
	last     uint64 // the last session number given out
	// replies (acks and Attach answers) are sent before events: they never
	// wait behind messages.
	replies, events []outgoing
	err             error         // why the link ended; nil while it runs
	wake            chan struct{} // something was queued
	ended           chan struct{} // closed once the link has ended
}

// outgoing is an event waiting for the writer, and the session it is for.
type outgoing struct {
	s  *remoteSession
	ev *pluginpb.Event
}

var errLinkEnded = errors.New("the plugin's link has ended")

// runLink runs the link on conn, the gateway's end, under
// proc.goroutines until the process's context ends or the plugin closes
// its end.
func runLink(proc *process, conn net.Conn) *link {
	l := &link{
		conn:     conn,
		sessions: make(map[uint64]*remoteSession),
		wake:     make(chan struct{}, 1),
		ended:    make(chan struct{}),
	}
	stop := context.AfterFunc(proc.ctx, func() { conn.Close() })
	proc.goroutines.Go(func() { l.sendLoop(proc.ctx) })
	proc.goroutines.Go(func() {
		defer conn.Close()
		defer stop()
		l.recvLoop()
	})
	return l
}

// socketPair returns the two ends of a new link: the gateway's, and the
// file to hand the plugin, which the caller closes once the plugin has it.
func socketPair() (net.Conn, *os.File, error) {
	// Close-on-exec is set under ForkLock, as package net does, so that no
	// other child started meanwhile inherits either end.
	syscall.ForkLock.RLock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, fmt.Errorf("socket pair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "wsgate-link")
	defer ours.Close() // FileConn has its own copy
	conn, err := net.FileConn(ours)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, fmt.Errorf("socket pair: %w", err)
	}
	return conn, os.NewFile(uintptr(fds[1]), "wsgate-link-plugin"), nil
}

// add gives s its number on the link; from then on its actions reach it.
func (l *link) add(s *remoteSession) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.last++
	s.id = l.last
	l.sessions[s.id] = s
	return nil
}

// remove forgets s: actions for it that still arrive are dropped.
func (l *link) remove(s *remoteSession) {
	l.mu.Lock()
	if l.sessions[s.id] == s {
		delete(l.sessions, s.id)
	}
	l.mu.Unlock()
}

// queue hands ev for s to the writer; reply puts it before the events.
// It never blocks. After the link has ended the event is dropped, and the
// session learns of the end from its own goroutine.
func (l *link) queue(s *remoteSession, ev *pluginpb.Event, reply bool) {
	ev.Session = s.id
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return
	}
	if reply {
		l.replies = append(l.replies, outgoing{s, ev})
	} else {
		l.events = append(l.events, outgoing{s, ev})
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default: // the writer has been woken already
	}
}

// sendLoop writes what is queued, replies first, in batches of at most
// MaxBatchBytes, until the link fails or ctx (the process's) ends;
// recvLoop notices a broken link.
func (l *link) sendLoop(ctx context.Context) {
	var replies, events []outgoing
	var frames []byte // the batches' frames, written at once
	batch := make([]*pluginpb.Event, 0, 64)
	for {
		select {
		case <-l.wake:
		case <-ctx.Done():
			return
		}
		// Let the goroutines that are ready to run (other devices'
		// connections, the bridge's acks) queue their events first, so
		// that one write carries them all: each write wakes the plugin.
		runtime.Gosched()
		l.mu.Lock()
		replies, l.replies = l.replies, replies[:0]
		events, l.events = l.events, events[:0]
		l.mu.Unlock()
		batch = batch[:0]
		frames = pluginpb.Reuse(frames)
		size := 0
		var err error
		frame := func() {
			if len(batch) > 0 && err == nil {
				frames, err = pluginpb.AppendFrame(frames, &pluginpb.Events{Events: batch})
			}
			clear(batch)
			batch, size = batch[:0], 0
		}
		for _, list := range [][]outgoing{replies, events} {
			for _, o := range list {
				n := pluginpb.BatchedSize(o.ev)
				if size+n > pluginpb.MaxBatchBytes {
					frame()
				}
				o.s.sending(o.ev) // counted before it goes: from now on a crash may be its
				batch = append(batch, o.ev)
				size += n
			}
		}
		frame()
		clear(replies)
		clear(events)
		if err == nil {
			_, err = l.conn.Write(frames)
		}
		if err != nil {
			l.conn.Close() // recvLoop ends the link
			return
		}
	}
}

// recvLoop hands each action to its session until the link ends, then
// tells every session the link is gone.
func (l *link) recvLoop() {
	defer close(l.ended)
	r := bufio.NewReaderSize(l.conn, 64<<10)
	var buf []byte
	var s *remoteSession
	for {
		b := &received{Batch: pluginpb.ActionsFromVTPool()}
		var err error
		if buf, err = pluginpb.ReadFrame(r, buf, b.Batch); err != nil {
			l.end(err)
			return
		}
		actions := b.Batch.GetActions()
		b.Hold(len(actions))
		for _, a := range actions {
			if s == nil || s.id != a.GetSession() {
				l.mu.Lock()
				s = l.sessions[a.GetSession()]
				l.mu.Unlock()
			}
			if s == nil || !s.deliver(a, b) {
				b.Done()
			}
		}
		b.Done()
		s = nil // a session removed meanwhile must not keep getting actions
	}
}

// received is a batch of the plugin's actions; act takes out of its
// frames and messages the payloads the gateway keeps, before the batch
// goes back to its pool.
type received = pluginpb.Shared[*pluginpb.Actions]

// end records why the link ended and tells every session.
func (l *link) end(err error) {
	l.mu.Lock()
	l.err = fmt.Errorf("%w: %w", errLinkEnded, err)
	sessions := l.sessions
	l.sessions = nil
	l.replies, l.events = nil, nil
	l.mu.Unlock()
	for _, s := range sessions {
		s.linkEnded(err)
	}
}

// Err is why the link ended, once it has.
func (l *link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
