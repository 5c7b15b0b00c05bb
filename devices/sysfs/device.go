package sysfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/protocols"
)

// maxFileSize bounds what one reading reads: sensor files are a few bytes,
// a larger file is a misconfigured path.
const maxFileSize = 64 << 10

// Stats are a device's counters since it was opened.
type Stats struct {
	Readings      uint64 // files read and parsed (published or suppressed)
	SkippedCRC    uint64 // w1_slave readings skipped for a failed CRC
	Errors        uint64 // files that could not be read or parsed
	PublishErrors uint64 // readings the router refused (e.g. protocols.ErrBusy)
}

// Device is a running sysfs device.
type Device struct {
	cfg   Config
	log   *slog.Logger
	parse parser

	// turn lets one reading run at a time (the poller's or a command's)
	// and guards last and state; a channel so that a waiting command
	// honours its context.
	turn  chan struct{}
	last  []byte // the last payload published
	state string // "" when healthy, else the problem last logged

	mu  sync.Mutex
	out devices.Outlet // set while Run runs

	readings, skippedCRC, errs, publishErrs atomic.Uint64
}

func newDevice(cfg Config, log *slog.Logger) *Device {
	return &Device{
		cfg:   cfg,
		log:   log,
		parse: parsers[cfg.Parser],
		turn:  make(chan struct{}, 1),
	}
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	return Stats{
		Readings:      d.readings.Load(),
		SkippedCRC:    d.skippedCRC.Load(),
		Errors:        d.errs.Load(),
		PublishErrors: d.publishErrs.Load(),
	}
}

// Run takes a reading at once and then every interval until ctx ends; it
// returns nil then. Failed readings never stop it.
func (d *Device) Run(ctx context.Context, out devices.Outlet) error {
	d.mu.Lock()
	d.out = out
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.out = nil
		d.mu.Unlock()
	}()

	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	for {
		_, _ = d.reading(ctx) // counted and logged inside
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Command runs "read": a reading now, published like a polled one, its
// payload returned as the data. Reading a w1_slave file takes about 750 ms
// (the sensor converts while the kernel waits).
func (d *Device) Command(ctx context.Context, cmd protocols.Command) protocols.Result {
	res := protocols.Result{ID: cmd.ID}
	switch cmd.Name {
	case "read":
		payload, err := d.reading(ctx)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.OK, res.Data = true, payload
	default:
		res.Error = "unknown command"
	}
	return res
}

// reading reads, parses and publishes one value.
func (d *Device) reading(ctx context.Context) ([]byte, error) {
	select {
	case d.turn <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-d.turn }()

	data, err := d.read()
	if err != nil {
		d.errs.Add(1)
		d.setState(err)
		return nil, err
	}
	payload, err := d.parse(data, &d.cfg)
	if err != nil {
		if errors.Is(err, errCRC) {
			d.skippedCRC.Add(1)
		} else {
			d.errs.Add(1)
			err = fmt.Errorf("parse %s as %s: %w", d.cfg.Path, d.cfg.Parser, err)
		}
		d.setState(err)
		return nil, err
	}
	d.readings.Add(1)
	d.setState(nil)

	if d.cfg.SuppressUnchanged && d.last != nil && bytes.Equal(payload, d.last) {
		return payload, nil
	}
	d.mu.Lock()
	out := d.out
	d.mu.Unlock()
	if out == nil { // a command while the device is not running
		return payload, nil
	}
	f := protocols.Frame{Channel: d.cfg.Channel, Payload: payload, QoS: byte(d.cfg.QoS)}
	if err := out.Publish(f); err != nil {
		d.publishErrs.Add(1)
		d.log.Warn("sysfs: reading not published", "err", err)
		return payload, nil
	}
	d.last = payload
	return payload, nil
}

// read returns the content of the file, resolving a pattern first.
func (d *Device) read() ([]byte, error) {
	path := d.cfg.Path
	if hasMeta(path) {
		matches, err := filepath.Glob(path)
		switch {
		case err != nil:
			return nil, err
		case len(matches) == 0:
			return nil, fmt.Errorf("no file matches %s", path)
		case len(matches) > 1:
			return nil, fmt.Errorf("%d files match %s (%s, %s...): name one", len(matches), path, matches[0], matches[1])
		}
		path = matches[0]
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d KiB: not a sensor file", path, maxFileSize>>10)
	}
	return data, nil
}

// setState logs a problem once, when it first appears or changes, and the
// recovery when err is nil after a problem.
func (d *Device) setState(err error) {
	switch {
	case err == nil && d.state != "":
		d.log.Info("sysfs: reading again", "path", d.cfg.Path)
		d.state = ""
	case err != nil && err.Error() != d.state:
		msg := "sysfs: cannot read sensor; still polling"
		if errors.Is(err, errCRC) {
			msg = "sysfs: 1-Wire CRC check failed; reading skipped"
		}
		d.log.Warn(msg, "path", d.cfg.Path, "err", err)
		d.state = err.Error()
	}
}

func hasMeta(path string) bool {
	return strings.ContainsAny(path, `*?[\`)
}

var _ devices.Device = (*Device)(nil)
