// Package devices owns local device drivers: devices on the hub itself (a
// serial port, a command, a sensor file, a GPIO line) that produce frames
// and take commands exactly like a WebSocket device session, so that the
// router treats both alike.
//
// A driver registers by name (Register) and provides a Config: the options
// of its [[devices]] entry, with defaults preset before decoding and a
// Validate method run by `wsgate check`. A validated Config opens a Device,
// which the Manager runs and attaches to the router under its id.
//
// Drivers live in packages of their own below devices/ and register in
// init; devices/all imports every built-in one. This package depends on
// the protocols contract only.
package devices

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/wsgate/wsgate/protocols"
)

// Config is one device's driver options. Drivers return a pointer to a
// struct with their defaults set; the config file is decoded into it.
type Config interface {
	// Validate checks the options. Errors read "key: problem" so that the
	// config package can point at the line.
	Validate() error
	// Open creates the device; it may acquire resources, the Run method
	// uses them.
	Open(id string, log *slog.Logger) (Device, error)
}

// Device is a running local device.
type Device interface {
	// Run produces frames with out.Publish until ctx ends; it recovers
	// from what it can (a port that disappears is reopened with backoff)
	// and returns only when ctx ends or on a failure it cannot recover from.
	Run(ctx context.Context, out Outlet) error
	// Command executes a downlink command and returns its result. It is
	// called on a goroutine of its own and must honour ctx (its timeout).
	Command(ctx context.Context, cmd protocols.Command) protocols.Result
}

// Receiver is implemented by devices that accept frames routed to them
// (a line for a serial display, a value for a GPIO output). Accept must
// not block: it queues, or fails with protocols.ErrBusy.
type Receiver interface {
	Accept(protocols.Frame) error
}

// FrameTaker is implemented by the configs of drivers whose devices can
// take frames routed to them (they are Receivers), so that a route to a
// device that cannot is refused by `wsgate check`, not only at run.
type FrameTaker interface {
	AcceptsFrames() bool
}

// Describer is implemented by the configs of drivers that know what their
// devices are (a gpio input is a binary sensor, a thermal zone a
// temperature): the entities announced to home automation software
// (Home Assistant discovery) unless the [[devices]] entry lists its own.
type Describer interface {
	Entities() []protocols.Entity
}

// Outlet is what a running device can do.
type Outlet interface {
	// Publish hands a frame to the router; Device is set by the outlet.
	Publish(protocols.Frame) error
	// SetOnline says whether an OnlineReporter can be reached now; it
	// publishes the device's status when that changes. Other devices'
	// calls are ignored.
	SetOnline(online bool)
}

// OnlineReporter is implemented by devices that know when they can be
// reached (a serial device while its port is open): they are online only
// after Outlet.SetOnline(true), until SetOnline(false). Other devices are
// online for as long as they run.
type OnlineReporter interface {
	ReportsOnline() bool
}

// NewConfig returns a fresh Config with the driver's defaults.
type NewConfig func() Config

var (
	mu      sync.RWMutex
	drivers = map[string]NewConfig{}
)

// Register makes a driver available under name. It panics on a duplicate
// name: that is a programming error caught at start.
func Register(name string, newConfig NewConfig) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := drivers[name]; dup {
		panic(fmt.Sprintf("devices: driver %q registered twice", name))
	}
	drivers[name] = newConfig
}

// Lookup returns the config constructor of a driver.
func Lookup(name string) (NewConfig, bool) {
	mu.RLock()
	defer mu.RUnlock()
	nc, ok := drivers[name]
	return nc, ok
}

// Drivers lists the registered driver names.
func Drivers() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(drivers))
	for name := range drivers {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ProtocolName is how a driver's devices appear in statuses: "driver:serial".
func ProtocolName(driver string) string { return "driver:" + driver }

// KeyError is a validation error about one option key, for Validate.
func KeyError(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

// SplitKeyError splits a "key: problem" error; key is empty when the error
// has no such prefix.
func SplitKeyError(err error) (key, problem string) {
	k, p, ok := strings.Cut(err.Error(), ": ")
	if !ok || strings.ContainsAny(k, " \t") {
		return "", err.Error()
	}
	return k, p
}
