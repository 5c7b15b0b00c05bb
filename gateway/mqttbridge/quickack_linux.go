package mqttbridge

import (
	"net"
	"syscall"
)

// quickAckConn acknowledges what the broker sends at once instead of
// delaying the ACK (Linux delays it up to 40 ms, hoping to send it with
// data). Mosquitto does not set TCP_NODELAY by default (set_tcp_nodelay),
// so Nagle's algorithm holds its next small packet, a PUBACK or SUBACK,
// until our ACK of the last one arrives: with delayed ACKs every round
// trip that waits for the broker (a device's status before its welcome, a
// QoS 1 ack) could take tens of milliseconds; connecting devices went from
// about 1,900 to 55 a second against a default Mosquitto. Linux leaves
// quick-ack mode by itself, so it is set again after every read.
type quickAckConn struct {
	net.Conn
	raw syscall.RawConn
}

func withQuickAck(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckConn{Conn: c, raw: raw}
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
