package mqttbridge

import (
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// maxCoalesced bounds the bytes waiting to be written to the broker; a
// writer waits beyond it.
const maxCoalesced = 256 << 10

// coalescingConn lets paho's writer hand over packets without waiting for
// a system call each: a goroutine owned by the connection writes whatever
// has accumulated in one call. Idle, a packet goes out at once; busy, the
// packets that arrive during a write go out together in the next one.
// paho writes one packet per Write, which made the syscall the largest
// cost of a busy bridge.
type coalescingConn struct {
	net.Conn
	writeTimeout time.Duration // bounds each batch's write; 0 for none

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte
	spare   []byte
	writing bool
	closed  bool
	err     error
	done    chan struct{}
}

func newCoalescingConn(c net.Conn, writeTimeout time.Duration) *coalescingConn {
	cc := &coalescingConn{Conn: c, writeTimeout: writeTimeout, done: make(chan struct{})}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.flushLoop()
	return cc
}

// Write queues p; an error of an earlier write is returned here.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.buf) >= maxCoalesced && c.err == nil && !c.closed {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.cond.Broadcast()
	return len(p), nil
}

func (c *coalescingConn) flushLoop() {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.buf) == 0 && !c.closed && c.err == nil {
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

		var err error
		if c.writeTimeout > 0 {
			err = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		}
		if err == nil {
			_, err = c.Conn.Write(out)
		}

		c.mu.Lock()
		c.spare, c.writing = out, false
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
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

// openCoalescing opens tcp:// and ssl:// broker connections with write
// coalescing; other schemes (ws://, wss://) are left to paho's defaults.
func openCoalescing(uri *url.URL, opts mqtt.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: opts.ConnectTimeout}
	var c net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts", "tcps":
		cfg := opts.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		c, err = tls.DialWithDialer(d, "tcp", uri.Host, cfg)
	default:
		return nil, errors.New("unsupported scheme " + uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newCoalescingConn(c, opts.WriteTimeout), nil
}
