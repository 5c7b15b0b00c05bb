package sdk

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// link is the plugin's side of the gateway's link: the sessions it
// carries, and one writer that sends whatever any session has queued as
// one batch.
type link struct {
	ctx      context.Context // the link's: every session's context ends with it
	conn     net.Conn
	sessions sync.WaitGroup // the sessions' goroutines

	mu     sync.Mutex
	runs   map[uint64]*run
	queue  []queued
	spare  []queued // the writer's other buffer
	broken error    // set once the link is gone
	wake   chan struct{}

	actions []*pluginpb.Action // the writer's, for the batch being framed
	frames  []byte             // the writer's, the frames of one write
}

// queued is an action waiting for the writer, its session's outlet and
// the payload size it counts against the outlet's bound.
type queued struct {
	action *pluginpb.Action
	out    *outlet
	size   int
}

func newLink(ctx context.Context, conn net.Conn) *link {
	l := &link{ctx: ctx, conn: conn, runs: make(map[uint64]*run), wake: make(chan struct{}, 1)}
	l.sessions.Go(l.write)
	return l
}

// add records a new session; false when the number is taken.
func (l *link) add(id uint64, r *run) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, taken := l.runs[id]; taken || l.broken != nil {
		return false
	}
	l.runs[id] = r
	return true
}

func (l *link) lookup(id uint64) *run {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs[id]
}

// forget ends a session whose goroutine is done.
func (l *link) forget(id uint64, r *run) {
	l.mu.Lock()
	if l.runs[id] == r {
		delete(l.runs, id)
	}
	l.mu.Unlock()
	r.cancel()
}

// end is called once the gateway's side of the link is gone: the sessions
// still running get the end of their events, and Close.
func (l *link) end() {
	l.mu.Lock()
	runs := l.runs
	l.runs = nil
	if l.broken == nil {
		l.broken = fmt.Errorf("%w: the gateway ended the link", protocols.ErrClosed)
	}
	l.mu.Unlock()
	for _, r := range runs {
		close(r.events)
	}
}

// push queues a for o's session. With full set, a counts against the
// outlet's bounds and full is returned instead of queueing beyond them;
// size is its payload. With last set, nothing of the session may follow.
func (l *link) push(o *outlet, a *pluginpb.Action, size int, full error, last bool) error {
	a.Session = o.id
	l.mu.Lock()
	if l.broken != nil {
		l.mu.Unlock()
		return l.broken
	}
	if o.over {
		l.mu.Unlock()
		return fmt.Errorf("%w: the session has ended", protocols.ErrClosed)
	}
	if full != nil {
		if o.queued > 0 && (o.queued >= maxActions || o.bytes+size > maxActionBytes) {
			l.mu.Unlock()
			return full
		}
	} else {
		size = 0
	}
	o.queued++
	o.bytes += size
	o.over = last
	l.queue = append(l.queue, queued{a, o, size})
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// write sends queued actions in batches until the link ends.
func (l *link) write() {
	for {
		select {
		case <-l.wake:
		case <-l.ctx.Done():
			l.fail(fmt.Errorf("%w: the link ended", protocols.ErrClosed))
			return
		}
		l.mu.Lock()
		if len(l.queue) < maxActions/2 {
			// Let the sessions queue what they are about to send, so that
			// one write carries it all.
			l.mu.Unlock()
			runtime.Gosched()
			l.mu.Lock()
		}
		if l.broken != nil {
			l.mu.Unlock()
			return
		}
		// Two buffers take turns, so that busy sessions allocate none.
		batch := l.queue
		l.queue = l.spare[:0]
		for _, q := range batch {
			q.out.queued--
			q.out.bytes -= q.size
		}
		l.mu.Unlock()
		err := l.send(batch)
		clear(batch)
		l.mu.Lock()
		l.spare = batch
		l.mu.Unlock()
		if err != nil {
			l.fail(fmt.Errorf("%w: link: %v", protocols.ErrClosed, err))
			return
		}
	}
}

// send writes the batch in frames of at most MaxBatchBytes, with one
// write.
func (l *link) send(batch []queued) error {
	actions, frames := l.actions, pluginpb.Reuse(l.frames)
	defer func() {
		clear(actions)
		l.actions, l.frames = actions[:0], frames
	}()
	for rest := batch; len(rest) > 0; {
		clear(actions)
		actions = actions[:0]
		size := 0
		for _, q := range rest {
			n := pluginpb.BatchedSize(q.action)
			if size+n > pluginpb.MaxBatchBytes && len(actions) > 0 {
				break
			}
			actions = append(actions, q.action)
			size += n
		}
		rest = rest[len(actions):]
		var err error
		if frames, err = pluginpb.AppendFrame(frames, &pluginpb.Actions{Actions: actions}); err != nil {
			return err
		}
	}
	_, err := l.conn.Write(frames)
	return err
}

func (l *link) fail(err error) {
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
	}
	l.mu.Unlock()
}
