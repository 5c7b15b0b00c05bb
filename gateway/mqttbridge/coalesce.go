package mqttbridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// maxCoalesced bounds the bytes waiting to be written to the broker; a
// writer waits beyond it.
const maxCoalesced = 256 << 10

// coalescingConn is a broker connection that paho writes its packets to,
// and the bridge its QoS 0 publishes (afterConnect). Writers do not wait
// for a system call each: a goroutine owned by the connection writes
// whatever has accumulated in one call, so the packets that arrive during
// a write go out together in the next one. One system call per packet was
// the largest cost of a busy bridge. A packet that comes after a quiet
// spell is written at once by its writer.
type coalescingConn struct {
	net.Conn
	writeTimeout time.Duration // bounds each batch's write; 0 for none
	// in buffers what paho reads: it reads a packet in three calls or
	// more (its first byte, its length byte by byte, the rest), which
	// were as many system calls, plus the quick-ack one after each, for
	// every 4-byte PUBACK. Only paho's reading goroutine reads.
	in *bufio.Reader

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	spare   []byte
	writing bool
	closed  bool
	started bool      // paho has written its first packet, the CONNECT
	last    time.Time // when the last packet was queued
	err     error
	done    chan struct{}
}

// errBeforeConnect refuses a packet of the bridge's own on a connection
// paho has not sent its CONNECT on yet.
var errBeforeConnect = errors.New("the connection has not sent its CONNECT yet")

func newCoalescingConn(c net.Conn, writeTimeout time.Duration) *coalescingConn {
	cc := &coalescingConn{Conn: c, writeTimeout: writeTimeout, in: bufio.NewReaderSize(c, 4<<10), done: make(chan struct{})}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.flushLoop()
	return cc
}

// Read reads what the broker sent, through the buffer.
func (c *coalescingConn) Read(p []byte) (int, error) { return c.in.Read(p) }

// Write queues p, one whole packet of paho's; an error of an earlier write
// is returned here.
func (c *coalescingConn) Write(p []byte) (int, error) { return c.queue(p, false) }

// queue appends p as a whole, so that packets never interleave. A packet
// of the bridge's own (afterConnect) is refused until paho's CONNECT is
// queued: MQTT lets a client send packets right behind its CONNECT,
// without waiting for the CONNACK, but never before it.
func (c *coalescingConn) queue(p []byte, afterConnect bool) (int, error) {
	c.mu.Lock()
	for len(c.buf) >= maxCoalesced && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	var err error
	switch {
	case c.err != nil:
		err = c.err
	case c.closed:
		err = net.ErrClosed
	case afterConnect && !c.started:
		err = errBeforeConnect
	}
	if err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.started = true
	now := time.Now()
	quiet := now.Sub(c.last) > quietGap
	c.last = now
	if !quiet || c.writing || len(c.buf) > 0 {
		c.buf = append(c.buf, p...)
		c.cond.Broadcast()
		c.mu.Unlock()
		return len(p), nil
	}
	// A lone packet: write it on this goroutine. Waking the flusher for it
	// would cost a goroutine hand-over, a good part of its latency, and
	// buy no batching. Packets queued meanwhile wait for this write.
	c.writing = true
	c.mu.Unlock()
	err = c.write(p)
	c.mu.Lock()
	c.writeDone(err)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// quietGap is how long a connection must have had nothing to write for
// the next packet to be written at once rather than handed to the flusher:
// well above the gap between packets of a busy bridge, well below that of
// one that is not.
const quietGap = 200 * time.Microsecond

// write sends p within the write timeout.
func (c *coalescingConn) write(p []byte) error {
	if c.writeTimeout > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			return err
		}
	}
	_, err := c.Conn.Write(p)
	return err
}

// writeDone ends a write, under mu.
func (c *coalescingConn) writeDone(err error) {
	c.writing = false
	if err != nil && c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
}

// afterConnect writes the bridge's own packets to a connection paho owns.
type afterConnect struct{ *coalescingConn }

func (w afterConnect) Write(p []byte) (int, error) { return w.queue(p, true) }

func (c *coalescingConn) flushLoop() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for c.err == nil && (c.writing || len(c.buf) == 0 && !c.closed) {
			c.cond.Wait()
		}
		if len(c.buf) == 0 || c.err != nil {
			c.mu.Unlock()
			return // closed and drained, or broken
		}
		out := c.buf
		c.buf, c.spare = c.spare[:0], nil
		c.writing = true
		c.cond.Broadcast()
		c.mu.Unlock()

		err := c.write(out)

		c.mu.Lock()
		c.spare = out
		c.writeDone(err)
		c.mu.Unlock()
	}
}

// SetWriteDeadline does nothing: paho sets a deadline around each packet's
// Write, which returns before the packet is on the wire, so the deadline
// would bound the wrong write (and cost two timer updates a packet). The
// flush loop gives each batch's write a deadline of its own instead.
func (c *coalescingConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only; see SetWriteDeadline.
func (c *coalescingConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Close writes what is queued (paho's DISCONNECT, say), for at most a
// second, then closes.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-time.After(time.Second):
	}
	err := c.Conn.Close()
	<-c.done
	return err
}

// coalesces reports whether connections to a broker URL of this scheme
// are opened by the bridge, with write coalescing; paho opens the others
// (ws://, wss://) itself.
func coalesces(scheme string) bool {
	return slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "tcps"}, scheme)
}

// openConn opens the main connection (dialBroker) and keeps it for
// publishAtMostOnce.
func (b *Bridge) openConn(uri *url.URL, opts mqtt.ClientOptions) (net.Conn, error) {
	cc, err := dialBroker(uri, opts)
	if err != nil {
		return nil, err
	}
	b.conn.Store(cc)
	b.dialed.Store(uri.String())
	return cc, nil
}

// dialBroker opens a tcp:// or ssl:// broker connection with write
// coalescing.
func dialBroker(uri *url.URL, opts mqtt.ClientOptions) (*coalescingConn, error) {
	var secure bool
	switch uri.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts", "tcps":
		secure = true
	default:
		return nil, errors.New("unsupported scheme " + uri.Scheme)
	}
	d := &net.Dialer{Timeout: opts.ConnectTimeout}
	tcp, err := d.Dial("tcp", uri.Host)
	if err != nil {
		return nil, err
	}
	c := withQuickAck(tcp)
	if secure {
		cfg := opts.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		} else {
			cfg = cfg.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = uri.Hostname()
		}
		tc := tls.Client(c, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		if opts.ConnectTimeout > 0 {
			ctx, cancel = context.WithTimeout(context.Background(), opts.ConnectTimeout)
		}
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			tcp.Close()
			return nil, err
		}
		c = tc
	}
	return newCoalescingConn(c, opts.WriteTimeout), nil
}
