package mqttbridge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
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
	if err := cc.Close(); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil {
		t.Fatal(err)
	}
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
