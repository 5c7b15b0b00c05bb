package mqttbridge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// closeAndReadAll closes cc, which flushes it, and returns all the broker
// side received.
func closeAndReadAll(t *testing.T, cc *coalescingConn, server net.Conn) []byte {
	t.Helper()
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCoalescingConnKeepsOrderAndFlushesOnClose: every write arrives, in
// order, also those still queued when the connection is closed.
func TestCoalescingConnKeepsOrderAndFlushesOnClose(t *testing.T) {
	client, server := tcpPair(t)
	cc := newCoalescingConn(client, 0)
	var want bytes.Buffer
	for i := range 5000 {
		p := []byte{byte(i), byte(i >> 8), 0xAB}
		want.Write(p)
		if n, err := cc.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d %v", i, n, err)
		}
	}
	got := closeAndReadAll(t, cc, server)
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d, in order", len(got), want.Len())
	}
	if _, err := cc.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

// TestCoalescingConnReportsWriteErrors: a failed write is reported by a
// later Write, never swallowed.
func TestCoalescingConnReportsWriteErrors(t *testing.T) {
	client, _ := tcpPair(t)
	cc := newCoalescingConn(client, 0)
	_ = client.Close() // the flusher's next write fails
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := cc.Write([]byte("x")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed connection keep succeeding")
		}
		time.Sleep(time.Millisecond)
	}
	_ = cc.Close()
}

// TestCoalescingConnWriteTimeout: a peer that stops reading fails the
// writes after the write timeout, whatever deadlines paho sets around each
// packet (a deadline already past must not fail a packet, either).
func TestCoalescingConnWriteTimeout(t *testing.T) {
	client, _ := tcpPair(t) // the server side never reads
	cc := newCoalescingConn(client, 200*time.Millisecond)
	defer cc.Close()
	if err := cc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Write([]byte("first")); err != nil {
		t.Fatalf("a past per-packet deadline failed the write: %v", err)
	}
	chunk := make([]byte, 64<<10)
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		_, err = cc.Write(chunk)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a peer that does not read: %v, want a deadline error", err)
	}
}

// TestCoalescingConnOwnPacketsFollowConnect: the bridge's own packets are
// refused until paho's first packet (its CONNECT) is queued, and then go
// out behind it, whole and in order.
func TestCoalescingConnOwnPacketsFollowConnect(t *testing.T) {
	client, server := tcpPair(t)
	cc := newCoalescingConn(client, 0)
	own := afterConnect{cc}
	if _, err := own.Write([]byte("early")); !errors.Is(err, errBeforeConnect) {
		t.Fatalf("a packet before CONNECT: %v, want errBeforeConnect", err)
	}
	for _, w := range []struct {
		writer io.Writer
		p      string
	}{{cc, "CONNECT;"}, {own, "pub1;"}, {cc, "PINGREQ;"}, {own, "pub2;"}} {
		if _, err := w.writer.Write([]byte(w.p)); err != nil {
			t.Fatalf("write %q: %v", w.p, err)
		}
	}
	got := closeAndReadAll(t, cc, server)
	if string(got) != "CONNECT;pub1;PINGREQ;pub2;" {
		t.Fatalf("the broker read %q", got)
	}
	if _, err := own.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a packet after close: %v", err)
	}
}

// TestCoalescingConnConcurrentWriters: writers that alternate bursts and
// quiet spells (so that packets are written both by their writer and by
// the flusher) never interleave packets, and each writer's packets arrive
// whole and in order.
func TestCoalescingConnConcurrentWriters(t *testing.T) {
	client, server := tcpPair(t)
	cc := newCoalescingConn(client, 10*time.Second)
	const writers, packets = 4, 2000
	if _, err := cc.Write([]byte{writers, 0, 0, 0xAB}); err != nil { // the CONNECT
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range packets {
				if i%100 == 0 {
					time.Sleep(2 * quietGap)
				}
				p := []byte{byte(w), byte(i >> 8), byte(i), 0xAB}
				var err error
				if w%2 == 0 {
					_, err = cc.Write(p)
				} else {
					_, err = afterConnect{cc}.Write(p)
				}
				if err != nil {
					t.Errorf("writer %d, packet %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := closeAndReadAll(t, cc, server)
	if len(got)%4 != 0 {
		t.Fatalf("read %d bytes, not whole packets", len(got))
	}
	if len(got) < 4 || got[0] != writers {
		t.Fatalf("the first packet is not the CONNECT: % x", got[:min(len(got), 4)])
	}
	next := make([]int, writers)
	for off := 4; off < len(got); off += 4 {
		w, seq := int(got[off]), int(got[off+1])<<8|int(got[off+2])
		if w >= writers || got[off+3] != 0xAB {
			t.Fatalf("packet at %d is torn: % x", off, got[off:off+4])
		}
		if seq != next[w] {
			t.Fatalf("writer %d: packet %d, want %d", w, seq, next[w])
		}
		next[w]++
	}
	for w, n := range next {
		if n != packets {
			t.Errorf("writer %d: %d packets arrived, want %d", w, n, packets)
		}
	}
}
