package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// tcpListener is the broker's TCP listener. It replaces mochi-mqtt's own
// (listeners.TCP), whose shutdown can hang or race with clients that come
// and go at that moment:
//   - its client closer, Clients.GetByListener, takes the clients' read
//     lock twice, and a client leaving in between (a write lock) deadlocks
//     it for good (mochi-mqtt/server#488);
//   - a connection accepted just before the shutdown joins the server's
//     WaitGroup (ClientsWg.Add) while Close already waits on it.
//
// So Close stops accepting, disconnects the clients from one copy of the
// client list, closes the connections not yet attached, and returns only
// when every connection it accepted has left the server. The server's
// ClientsWg.Wait that follows then has nothing to race with.
type tcpListener struct {
	id      string
	address string
	server  *mochi.Server // set before Serve

	listen net.Listener
	log    *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{} // accepted and not yet gone
	wg     sync.WaitGroup        // the accept loop and one per connection
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id, address string) *tcpListener {
	return &tcpListener{id: id, address: address, conns: make(map[net.Conn]struct{})}
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

func (l *tcpListener) Address() string {
	if l.listen != nil {
		return l.listen.Addr().String()
	}
	return l.address
}

// Init binds the address.
func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return err // Start says which broker and address
	}
	l.listen = ln
	return nil
}

// Serve accepts connections until Close and hands each to establish.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.wg.Add(1)
	l.mu.Unlock()
	defer l.wg.Done()
	for {
		conn, err := l.listen.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn("embedded broker stopped accepting", "error", err)
			}
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("embedded broker client left", "remote", conn.RemoteAddr().String(), "error", err)
			}
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
			_ = conn.Close()
		}()
	}
}

// Close stops the listener and its clients, and returns when all are gone.
// mochi's closer (the argument) is not used: see tcpListener.
func (l *tcpListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.wg.Wait()
		return
	}
	l.closed = true
	l.mu.Unlock()
	if l.listen != nil {
		_ = l.listen.Close()
	}
	if l.server != nil {
		for _, cl := range l.server.Clients.GetAll() {
			if cl.Net.Listener == l.id && !cl.Closed() {
				_ = l.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	}
	l.mu.Lock()
	for conn := range l.conns {
		_ = conn.Close() // those still in their CONNECT, or between attach and the list
	}
	l.mu.Unlock()
	l.wg.Wait()
}
