package mqttbridge

import (
	"io"
	"net"
	"syscall"
	"testing"
)

// quickAck reads the socket's TCP_QUICKACK: 1 while Linux acknowledges
// at once, 0 while it delays ACKs (its "ping-pong" mode, entered when the
// application answers what it receives, as an MQTT client does).
func quickAck(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	return v
}

func TestQuickAckAfterEveryRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// exchange runs requests and answers, as publishes and their acks go,
	// with the client side wrapped by wrap, and returns the client
	// socket's TCP_QUICKACK after them.
	exchange := func(t *testing.T, wrap func(net.Conn) net.Conn) int {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		broker, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer broker.Close()
		c := wrap(client)
		buf := make([]byte, 4)
		for range 20 {
			if _, err := c.Write([]byte("pub!")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(broker, buf); err != nil {
				t.Fatal(err)
			}
			if _, err := broker.Write([]byte("ack!")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
		}
		return quickAck(t, client)
	}
	if exchange(t, func(c net.Conn) net.Conn { return c }) != 0 {
		t.Skip("this kernel does not delay the ACKs of a request-answer exchange: nothing to undo")
	}
	if got := exchange(t, withQuickAck); got != 1 {
		t.Errorf("TCP_QUICKACK after the exchange = %d, want 1 (ACKs not delayed)", got)
	}
}
