package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	helloTimeout = 10 * time.Second // dial, upgrade, hello and welcome
	writeTimeout = 10 * time.Second // one WebSocket write
	closeTimeout = 2 * time.Second  // bye, then the gateway's close
	retryMin     = 2 * time.Millisecond
	retryMax     = time.Second
)

// counters are what a publisher (a WebSocket device or a direct MQTT
// publisher) did; safe for concurrent use.
type counters struct {
	sent   atomic.Uint64 // distinct messages written (a retried seq counts once)
	acked  atomic.Uint64 // QoS 1 acks
	nacked atomic.Uint64 // nacks of any code, including busy ones that were retried
	errors atomic.Uint64 // error replies, failed writes and publishes
}

// plan is what one publisher sends: seqs first to first+count-1.
type plan struct {
	first    uint64 // 0 means 1
	count    uint64
	qos      byte
	size     int
	inflight int
	interval time.Duration // 0: as fast as possible; else one message per interval from start
	start    time.Time
}

// dialOptions are the connection settings shared by all devices of a run.
type dialOptions struct {
	url         string
	subprotocol string
	small       bool        // small buffers, for runs that hold many idle connections
	tls         *tls.Config // wss; nil: the system's roots
}

var smallWriteBuffers sync.Pool

// device is one simulated done device on its own WebSocket connection. One
// goroutine sends (run, close); another reads the gateway's replies.
type device struct {
	counters
	id   string
	conn *websocket.Conn
	max  int // message limit from the welcome

	mu      sync.Mutex
	pending map[uint64]int64       // QoS 1 seqs awaiting their ack: send time of each
	ackRTT  *latencies             // from a pub's first send to its ack; under mu
	slots   chan struct{}          // the inflight window: one token per pending seq
	retry   chan uint64            // seqs nacked busy, to send again
	settled chan struct{}          // a pending seq was settled (cap 1)
	busyErr atomic.Int32           // busy errors (QoS 0 pubs refused) not yet seen by the sender
	refusal atomic.Pointer[string] // the first nack or error, for the log

	// The sender's retry rounds: one backoff per round of busy nacks, longer
	// while no ack arrives between rounds.
	retryRound int
	retryAcked uint64

	done    chan struct{} // closed when the reader stops: the connection is gone
	readErr error         // why the reader stopped; read after done
}

func (d *device) counts() *counters { return &d.counters }

// dialDevice connects, says hello as id and waits for the welcome. The
// connection's TCP source address is src unless it is the zero Addr.
func dialDevice(ctx context.Context, opt dialOptions, id string, src netip.Addr, inflight int) (*device, error) {
	ctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	nd := &net.Dialer{Timeout: helloTimeout}
	if a := tcpAddr(src); a != nil {
		nd.LocalAddr = a
	}
	d := websocket.Dialer{
		NetDialContext:   nd.DialContext,
		Subprotocols:     []string{opt.subprotocol},
		HandshakeTimeout: helloTimeout,
		TLSClientConfig:  opt.tls,
	}
	if opt.small {
		d.ReadBufferSize, d.WriteBufferSize, d.WriteBufferPool = 512, 512, &smallWriteBuffers
	}
	conn, resp, err := d.DialContext(ctx, opt.url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s from %v: %w (HTTP %s)", opt.url, src, err, resp.Status)
		}
		return nil, fmt.Errorf("dial %s from %v: %w", opt.url, src, err)
	}
	if got := conn.Subprotocol(); got != opt.subprotocol {
		conn.Close()
		return nil, fmt.Errorf("the gateway chose subprotocol %q, not %q", got, opt.subprotocol)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() }) // unblock the hello on cancel
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = conn.SetWriteDeadline(deadline)
	hello, _ := json.Marshal(map[string]string{"op": "hello", "id": id})
	if err := conn.WriteMessage(websocket.TextMessage, hello); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello %s: %w", id, err)
	}
	_ = conn.SetReadDeadline(deadline)
	_, msg, err := conn.ReadMessage()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("hello %s: no welcome: %w", id, err)
	}
	var welcome struct {
		Op     string `json:"op"`
		Max    int    `json:"max"`
		Code   string `json:"code"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(msg, &welcome); err != nil || welcome.Op != "welcome" {
		conn.Close()
		return nil, fmt.Errorf("hello %s: got %.200s instead of a welcome", id, msg)
	}
	_ = conn.SetReadDeadline(time.Time{})
	dev := &device{
		id:      id,
		conn:    conn,
		max:     welcome.Max,
		pending: make(map[uint64]int64),
		ackRTT:  newLatencies(maxSamples / 64),
		slots:   make(chan struct{}, inflight),
		retry:   make(chan uint64, inflight),
		settled: make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go dev.read()
	return dev, nil
}

// read handles the gateway's replies until the connection ends.
func (d *device) read() {
	defer close(d.done)
	for {
		_, msg, err := d.conn.ReadMessage()
		if err != nil {
			d.readErr = err
			return
		}
		d.handle(msg)
	}
}

var ackPrefix = []byte(`{"op":"ack","seq":`)

func (d *device) handle(msg []byte) {
	if rest, ok := bytes.CutPrefix(msg, ackPrefix); ok { // the common case, without decoding
		if seq, err := strconv.ParseUint(string(leadingNumber(rest)), 10, 64); err == nil {
			d.ack(seq)
			return
		}
	}
	var m struct {
		Op   string  `json:"op"`
		Seq  *uint64 `json:"seq"`
		Code string  `json:"code"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		d.errors.Add(1)
		return
	}
	if m.Op == "nack" || m.Op == "error" {
		text := string(msg)
		d.refusal.CompareAndSwap(nil, &text)
	}
	switch m.Op {
	case "ack":
		if m.Seq != nil {
			d.ack(*m.Seq)
		}
	case "nack":
		d.nacked.Add(1)
		if m.Seq != nil {
			d.nack(*m.Seq, m.Code)
		}
	case "error":
		d.errors.Add(1)
		if m.Code == "busy" {
			d.busyErr.Add(1)
		}
	}
	// cmd and anything else: a load device takes no commands.
}

func (d *device) ack(seq uint64) {
	now := time.Now().UnixNano()
	d.mu.Lock()
	sentAt, ok := d.pending[seq]
	delete(d.pending, seq)
	if ok {
		d.ackRTT.add(time.Duration(now - sentAt))
	}
	d.mu.Unlock()
	if !ok {
		return // the ack of a resent copy: counted once already
	}
	d.acked.Add(1)
	d.release()
}

func (d *device) nack(seq uint64, code string) {
	d.mu.Lock()
	_, ok := d.pending[seq]
	if ok && code != "busy" {
		delete(d.pending, seq) // refused for good: it counts as lost
	}
	d.mu.Unlock()
	switch {
	case !ok:
	case code == "busy":
		select {
		case d.retry <- seq: // never full: at most inflight seqs are pending
		default:
		}
	default:
		d.release()
	}
}

// release frees one window slot and wakes a sender waiting for the window
// to empty.
func (d *device) release() {
	select {
	case <-d.slots:
	default:
	}
	select {
	case d.settled <- struct{}{}:
	default:
	}
}

// run sends messages 1..p.count, paced by p.interval, keeping at most
// p.inflight QoS 1 pubs unacked and resending those nacked busy; for QoS 1 it
// returns once every pub is settled. A QoS 0 pub refused as busy cannot be
// resent (the error names no seq), but the device backs off as the protocol
// asks. It stops early when ctx ends or the connection is lost.
func (d *device) run(ctx context.Context, p plan) {
	buf := make([]byte, 0, p.size+minPayload+64)
	first := max(p.first, 1)
	var busyStreak int
	var lastBusy time.Time
	for seq := first; seq < first+p.count; seq++ {
		if p.interval > 0 && !d.sleepUntil(ctx, p.start.Add(time.Duration(seq-first)*p.interval)) {
			return
		}
		if d.busyErr.Swap(0) > 0 {
			busyStreak++
			lastBusy = time.Now()
			if !d.sleepUntil(ctx, lastBusy.Add(backoff(busyStreak))) {
				return
			}
		} else if busyStreak > 0 && time.Since(lastBusy) > retryMax {
			busyStreak = 0
		}
		if p.qos == 1 && !d.acquire(ctx, p, &buf) {
			return
		}
		t := time.Now().UnixNano()
		if p.qos == 1 {
			d.mu.Lock()
			d.pending[seq] = t
			d.mu.Unlock()
		}
		buf = appendPub(buf[:0], channel, seq, p.qos, t, p.size)
		if err := d.write(ctx, buf); err != nil {
			if ctx.Err() == nil {
				d.errors.Add(1)
			}
			return
		}
		d.sent.Add(1)
	}
	if p.qos == 1 {
		d.waitSettled(ctx, p, &buf)
	}
}

// acquire takes a window slot, resending busy seqs while it waits.
func (d *device) acquire(ctx context.Context, p plan, buf *[]byte) bool {
	for {
		select {
		case seq := <-d.retry:
			if !d.resend(ctx, p, seq, buf) {
				return false
			}
			continue
		default:
		}
		select {
		case d.slots <- struct{}{}:
			return true
		case seq := <-d.retry:
			if !d.resend(ctx, p, seq, buf) {
				return false
			}
		case <-ctx.Done():
			return false
		case <-d.done:
			return false
		}
	}
}

// waitSettled waits until no pub awaits its ack, resending busy ones.
func (d *device) waitSettled(ctx context.Context, p plan, buf *[]byte) {
	for {
		d.mu.Lock()
		n := len(d.pending)
		d.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case seq := <-d.retry:
			if !d.resend(ctx, p, seq, buf) {
				return
			}
		case <-d.settled:
		case <-ctx.Done():
			return
		case <-d.done:
			return
		}
	}
}

// resend sends seq again after a busy nack, and with it every other seq
// nacked busy by then, after one backoff that grows while no ack arrives
// between rounds. Each keeps its original send time.
func (d *device) resend(ctx context.Context, p plan, seq uint64, buf *[]byte) bool {
	if acked := d.acked.Load(); acked > d.retryAcked {
		d.retryRound, d.retryAcked = 0, acked
	}
	d.retryRound++
	if !d.sleepUntil(ctx, time.Now().Add(backoff(d.retryRound))) {
		return false
	}
	for {
		d.mu.Lock()
		t, ok := d.pending[seq]
		d.mu.Unlock()
		if ok {
			*buf = appendPub((*buf)[:0], channel, seq, p.qos, t, p.size)
			if err := d.write(ctx, *buf); err != nil {
				if ctx.Err() == nil {
					d.errors.Add(1)
				}
				return false
			}
		}
		select {
		case seq = <-d.retry:
		default:
			return true
		}
	}
}

// backoff is the wait before sending after the nth busy answer in a row.
func backoff(n int) time.Duration {
	return min(retryMin<<min(max(n-1, 0), 10), retryMax)
}

// write sends one text message, giving up at ctx's deadline at the latest.
func (d *device) write(ctx context.Context, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(writeTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = d.conn.SetWriteDeadline(deadline)
	return d.conn.WriteMessage(websocket.TextMessage, msg)
}

// sleepUntil waits for t; false when ctx ended or the connection was lost.
func (d *device) sleepUntil(ctx context.Context, t time.Time) bool {
	return sleepUntil(ctx, t, d.done)
}

// lost reports whether the connection ended before close was called.
func (d *device) lost() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// close says bye, waits for the gateway to close the connection until
// deadline at the latest, and closes it. Call it once, after run returned.
func (d *device) close(deadline time.Time) {
	if wait := min(time.Until(deadline), closeTimeout); wait > 0 {
		_ = d.conn.SetWriteDeadline(time.Now().Add(wait))
		if err := d.conn.WriteMessage(websocket.TextMessage, []byte(`{"op":"bye"}`)); err == nil {
			timer := time.NewTimer(wait)
			select {
			case <-d.done:
			case <-timer.C:
			}
			timer.Stop()
		}
	}
	d.conn.Close()
	<-d.done
}
