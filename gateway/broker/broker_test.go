package broker

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// connectPacket is an MQTT 3.1.1 CONNECT with client id "c", clean session,
// keepalive 60 s.
var connectPacket = []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'}

// TestCloseWhileClientsCome closes the broker while clients connect and
// leave. mochi-mqtt's own listener shutdown (Clients.GetByListener) takes
// the client list's read lock twice; a client leaving in between (a write
// lock) deadlocks it for good (mochi-mqtt/server#488), and with it the
// gateway's shutdown. Close must return every time.
func TestCloseWhileClientsCome(t *testing.T) {
	defer goleak.VerifyNone(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for round := range 40 {
		b, err := Start(Options{Address: "127.0.0.1:0"}, log)
		if err != nil {
			t.Fatal(err)
		}
		addr := b.Address()
		stop := make(chan struct{})
		var clients sync.WaitGroup
		for range 8 {
			clients.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					churn(addr)
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: close: %v", round, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Close did not return while clients came and went", round)
		}
		close(stop)
		clients.Wait()
	}
}

// churn connects one client, waits for its CONNACK and leaves.
func churn(addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(connectPacket); err != nil {
		return
	}
	var connack [4]byte
	_, _ = io.ReadFull(c, connack[:])
}
