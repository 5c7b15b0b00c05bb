//go:build !linux

package mqttbridge

import "net"

// withQuickAck is a no-op where TCP_QUICKACK does not exist; see the Linux
// version.
func withQuickAck(c net.Conn) net.Conn { return c }
