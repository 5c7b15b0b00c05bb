package statuspage

import (
	"errors"
	"sync"
	"time"
)

var (
	errTooManyStreams = errors.New("too many status streams are open; close a status page and try again")
	errClosed         = errors.New("the gateway is shutting down")
)

// feed looks at the sources while streams are open and queues to each
// stream what changed.
type feed struct {
	take     func() Snapshot
	interval time.Duration
	buffer   int
	max      int

	mu      sync.Mutex
	streams map[*stream]struct{}
	current *state        // what the streams were last sent; nil while none is open
	stop    chan struct{} // ends the looking goroutine; nil while none runs
	closed  bool
	looking sync.WaitGroup
}

// stream is one subscriber's queue of events.
type stream struct {
	events chan []byte
	// resync is signalled when events were dropped: the queue is stale,
	// and a snapshot replaces it.
	resync chan struct{}
	lost   bool          // under feed.mu: dropping until resynced
	done   chan struct{} // closed when the feed closes
}

func newFeed(take func() Snapshot, interval time.Duration, buffer, max int) *feed {
	return &feed{take: take, interval: interval, buffer: buffer, max: max, streams: map[*stream]struct{}{}}
}

// subscribe opens a stream and returns it with the snapshot event it
// starts from. The first stream starts the looking.
func (f *feed) subscribe() (*stream, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil, errClosed
	}
	if len(f.streams) >= f.max {
		return nil, nil, errTooManyStreams
	}
	if f.current == nil {
		f.current = newState(f.take())
		f.stop = make(chan struct{})
		f.looking.Add(1)
		go f.look(f.stop)
	}
	s := &stream{events: make(chan []byte, f.buffer), resync: make(chan struct{}, 1), done: make(chan struct{})}
	f.streams[s] = struct{}{}
	return s, f.current.snapshotEvent(), nil
}

// unsubscribe closes a stream; the last one stops the looking.
func (f *feed) unsubscribe(s *stream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.streams, s)
	if len(f.streams) == 0 && f.stop != nil {
		close(f.stop)
		f.stop, f.current = nil, nil
	}
}

// look takes a snapshot every interval and queues what changed to the
// streams, until stop is closed.
func (f *feed) look(stop <-chan struct{}) {
	defer f.looking.Done()
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		next := newState(f.take()) // without the lock: the sources take theirs
		f.mu.Lock()
		select {
		case <-stop: // the streams went meanwhile; the next ones start afresh
			f.mu.Unlock()
			return
		default:
		}
		f.advanceLocked(next)
		f.mu.Unlock()
	}
}

// advanceLocked queues what changed from the current state to next to
// every stream, and makes next current.
func (f *feed) advanceLocked(next *state) {
	if ev := next.changesSince(f.current); ev != nil {
		for s := range f.streams {
			f.queueLocked(s, ev)
		}
	}
	f.current = next
}

// queueLocked queues ev to s. A stream whose queue is full loses it and
// everything after until it has been sent a snapshot (resync).
func (f *feed) queueLocked(s *stream, ev []byte) {
	if s.lost {
		return
	}
	select {
	case s.events <- ev:
	default:
		s.lost = true
		s.resync <- struct{}{} // cannot block: lost was false, so it is empty
	}
}

// resync empties the queue of a stream that lost events and returns the
// snapshot to send instead; the stream gets every change after it.
func (f *feed) resync(s *stream) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(s.events) > 0 {
		<-s.events
	}
	s.lost = false
	if f.current == nil { // closed
		return nil
	}
	return f.current.snapshotEvent()
}

// close ends every stream and the looking, and waits for the latter.
func (f *feed) close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		for s := range f.streams {
			close(s.done)
		}
		if f.stop != nil {
			close(f.stop)
			f.stop, f.current = nil, nil
		}
	}
	f.mu.Unlock()
	f.looking.Wait()
}
