//go:build !linux

package gateway

import (
	"errors"
	"log/slog"
	"syscall"
)

// poller is Linux only (epoll): elsewhere an idle connection keeps the
// goroutine that waits for it.
type poller struct{}

// parking: idle connections park here.
const parking = false

func newPoller(*slog.Logger) (*poller, error) {
	return nil, errors.New("idle connections are parked on Linux only")
}

func (*poller) arm(*conn, syscall.Conn) bool { return false }
func (*poller) forget(*conn)                 {}
func (*poller) stop()                        {}
