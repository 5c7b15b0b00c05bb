package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/protocols"
)

// parked counts the server's parked connections.
func (gw *testGateway) parked() int {
	gw.srv.mu.Lock()
	defer gw.srv.mu.Unlock()
	n := 0
	for c := range gw.srv.conns {
		c.mu.Lock()
		if c.parked {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

func skipUnlessParking(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
}

// TestParkedConnections: idle connections hold no goroutine, over ws and
// over wss, and a parked connection wakes for a message, a ping, a pong and
// a close.
func TestParkedConnections(t *testing.T) {
	skipUnlessParking(t)
	// Not parallel, nor its subtests: other tests' goroutines would count.
	for _, overTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[overTLS], func(t *testing.T) {
			opts := baseOptions()
			if overTLS {
				opts.Listeners[0].TLSCert, opts.Listeners[0].TLSKey = selfSignedCert(t)
			}
			gw := startGateway(t, opts)
			connect := func() *rawConn {
				if !overTLS {
					return rawUpgrade(t, gw.addr, "/", "echo")
				}
				return rawUpgradeTLS(t, gw.addr, "/", "echo", func() (net.Conn, error) {
					return net.DialTimeout("tcp", gw.addr, testWait)
				})
			}
			testParked(t, gw, connect)
		})
	}
}

func testParked(t *testing.T, gw *testGateway, connect func() *rawConn) {
	const n = 50
	before := runtime.NumGoroutine()
	conns := make([]*rawConn, n)
	for i := range conns {
		rc := connect()
		events := eventReader{t: t, rc: rc}
		id := fmt.Sprintf("dev-%d", i)
		rc.write(true, opText, []byte("!attach "+id))
		if got := events.next(); !sameEvent(got, textEvent("attached "+id)) {
			t.Fatalf("got %v, want attached", got)
		}
		conns[i] = rc
	}
	eventually(t, "every connection parked", func() bool { return gw.parked() == n })
	// The poller's goroutine, and some slack for the runtime's.
	eventually(t, "no goroutine per connection", func() bool { return runtime.NumGoroutine() <= before+3 })

	for i, rc := range conns {
		events := eventReader{t: t, rc: rc}
		switch i % 4 {
		case 0:
			rc.write(true, opText, []byte("hello"))
			if got := events.next(); !sameEvent(got, textEvent("hello")) {
				t.Fatalf("conn %d: got %v, want the echo", i, got)
			}
		case 1:
			rc.write(true, opPing, []byte("p"))
			if got := events.next(); !sameEvent(got, pongEvent("p")) {
				t.Fatalf("conn %d: got %v, want a pong", i, got)
			}
		case 2:
			rc.write(true, opPong, []byte("unsolicited"))
			rc.write(true, opText, []byte("after the pong"))
			if got := events.next(); !sameEvent(got, textEvent("after the pong")) {
				t.Fatalf("conn %d: got %v, want the echo", i, got)
			}
		case 3:
			rc.writeClose(websocket.CloseNormalClosure, "")
			if code, _, _ := rc.readClose(); code != websocket.CloseNormalClosure {
				t.Fatalf("conn %d: close %d, want the echo of 1000", i, code)
			}
			rc.expectEOF()
		}
	}
	eventually(t, "the connections parked again", func() bool { return gw.parked() == n-n/4 })
}

// TestParkedTLSMidRecord: a TLS connection parks while the record of its
// next message has only half arrived (the TLS layer holds that half; the
// socket shows nothing more), and the second half wakes it.
func TestParkedTLSMidRecord(t *testing.T) {
	skipUnlessParking(t)
	t.Parallel()
	opts := baseOptions()
	opts.Listeners[0].TLSCert, opts.Listeners[0].TLSKey = selfSignedCert(t)
	gw := startGateway(t, opts)
	var sc *splitConn
	rc := rawUpgradeTLS(t, gw.addr, "/", "echo", func() (net.Conn, error) {
		nc, err := net.DialTimeout("tcp", gw.addr, testWait)
		sc = &splitConn{Conn: nc}
		return sc, err
	})
	events := eventReader{t: t, rc: rc}
	eventually(t, "the connection parked", func() bool { return gw.parked() == 1 })

	release := sc.splitNext()
	wrote := make(chan struct{})
	go func() { defer close(wrote); rc.write(true, opText, []byte("split across a park")) }()
	<-sc.held // half the record is on the wire
	// The gateway reads that half, finds no whole record, and parks again.
	eventually(t, "the connection parked mid-record", func() bool { return gw.parked() == 1 && sc.heldFor() > 2*parkAfter })
	close(release)
	<-wrote
	if got := events.next(); !sameEvent(got, textEvent("split across a park")) {
		t.Fatalf("got %v, want the echo", got)
	}
}

// splitConn writes, when told to, the next write in two halves, the second
// only once released.
type splitConn struct {
	net.Conn
	mu      sync.Mutex
	release chan struct{} // set by splitNext for the next write
	held    chan struct{} // closed once the first half is written
	since   time.Time
}

func (c *splitConn) splitNext() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.release, c.held = make(chan struct{}), make(chan struct{})
	return c.release
}

func (c *splitConn) heldFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since.IsZero() {
		return 0
	}
	return time.Since(c.since)
}

func (c *splitConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	release := c.release
	c.release = nil
	c.mu.Unlock()
	if release == nil || len(b) < 2 {
		return c.Conn.Write(b)
	}
	n, err := c.Conn.Write(b[:len(b)/2])
	c.mu.Lock()
	c.since = time.Now()
	c.mu.Unlock()
	close(c.held)
	if err != nil {
		return n, err
	}
	<-release
	m, err := c.Conn.Write(b[len(b)/2:])
	return n + m, err
}

// TestParkedKeepalive: the timer of a parked connection pings it, and cuts
// it at its read deadline when it does not answer.
func TestParkedKeepalive(t *testing.T) {
	skipUnlessParking(t)
	t.Parallel()
	opts := baseOptions()
	opts.PingInterval = 30 * time.Millisecond
	opts.PongTimeout = 30 * time.Millisecond
	gw := startGateway(t, opts)
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	s := gw.protos["echo"].next(t)
	eventually(t, "the connection parked", func() bool { return gw.parked() == 1 })
	code, reason, pings := rc.readClose()
	if code != protocols.CloseGoingAway || pings == 0 {
		t.Fatalf("close %d %q after %d pings, want 1001 after a ping", code, reason, pings)
	}
	if err := s.waitClosed(t); err == nil {
		t.Error("the session ended without a cause")
	}
}

// TestParkedCloseTimeout: a parked connection whose peer does not answer
// the server's close frame is cut after CloseTimeout.
func TestParkedCloseTimeout(t *testing.T) {
	skipUnlessParking(t)
	t.Parallel()
	opts := baseOptions()
	opts.CloseTimeout = 50 * time.Millisecond
	gw := startGateway(t, opts)
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	s := gw.protos["echo"].next(t)
	eventually(t, "the connection parked", func() bool { return gw.parked() == 1 })
	s.out.Close(protocols.CloseNormal, "bye")
	if code, _, _ := rc.readClose(); code != protocols.CloseNormal {
		t.Fatalf("close %d, want 1000", code)
	}
	rc.expectEOF() // cut: the test never answers
	s.waitClosed(t)
}

// TestParkedShutdownCut: Shutdown cuts parked connections whose peers do
// not answer its close frame once its context ends.
func TestParkedShutdownCut(t *testing.T) {
	skipUnlessParking(t)
	t.Parallel()
	gw := startGateway(t, baseOptions())
	rc := rawUpgrade(t, gw.addr, "/", "echo")
	s := gw.protos["echo"].next(t)
	eventually(t, "the connection parked", func() bool { return gw.parked() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- gw.srv.Shutdown(ctx) }()
	if code, _, _ := rc.readClose(); code != protocols.CloseGoingAway {
		t.Fatalf("close %d, want 1001", code)
	}
	// Long before the close frame's deadline (CloseTimeout), which would
	// also end the connection.
	select {
	case err := <-done:
		if err == nil {
			t.Error("Shutdown cut a connection without an error")
		}
	case <-time.After(testWait / 2):
		t.Fatal("Shutdown did not return")
	}
	s.waitClosed(t)
}

// TestIdleConnectionStack: the goroutine an idle connection keeps when it
// does not park (a TLS connection, other systems than Linux) has done
// nothing but wait, so its stack is the 2 KiB a goroutine starts with, also
// after the session attached a device and after a pong and a ping (which
// gorilla, given them, would have waited on after).
func TestIdleConnectionStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes stack frames larger")
	}
	if os.Getenv("WSGATE_TEST_STACK") == "" {
		// New goroutines start with the average stack of the process's
		// goroutines (GODEBUG adaptivestackstart), which other tests'
		// goroutines raise: this test runs in a process of its own with
		// the fixed start of 2 KiB.
		godebug := "adaptivestackstart=0"
		if v := os.Getenv("GODEBUG"); v != "" {
			godebug = v + "," + godebug
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionStack$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "WSGATE_TEST_STACK=1", "GODEBUG="+godebug)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestIdleConnectionStack")) {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}
	// Not parallel: the stacks of other tests' goroutines would count. And
	// connections do not park: they keep the goroutine that waits.
	parkAfter = 0
	gw := startGateway(t, baseOptions())
	const n = 200
	before := stackInuse()
	for i := range n {
		rc := rawUpgrade(t, gw.addr, "/", "echo")
		events := eventReader{t: t, rc: rc}
		id := fmt.Sprintf("dev-%d", i)
		rc.write(true, opText, []byte("!attach "+id))
		if got := events.next(); !sameEvent(got, textEvent("attached "+id)) {
			t.Fatalf("got %v, want attached", got)
		}
		rc.write(true, opPong, []byte("unsolicited"))
		rc.write(true, opPing, []byte("p"))
		if got := events.next(); !sameEvent(got, pongEvent("p")) {
			t.Fatalf("got %v, want a pong", got)
		}
	}
	// The last goroutines that served a message may still be ending.
	var per uint64
	for deadline := time.Now().Add(testWait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if per = (stackInuse() - before) / n; per <= 3072 {
			return
		}
	}
	t.Errorf("%d bytes of stack per idle connection, want 2 KiB (3 KiB with what the test adds)", per)
}

// stackInuse returns the bytes of goroutine stacks, after freeing those of
// goroutines that have ended.
func stackInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.StackInuse
}

// A conn is allocated per connection and lives as long as it: at 480 bytes
// it fits the runtime's 480-byte size class; one byte more and every
// connection takes 512. Reorder fields (padding) before growing it.
func TestConnFitsItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 480 {
		t.Errorf("conn is %d bytes: every connection now takes the next size class (512)", size)
	}
}
