package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// component is one part of the running gateway. The composition root is an
// ordered list of them: each starts after those before it (and may use
// what they made), and they stop in the reverse order.
type component struct {
	name  string
	start func(context.Context) error
	// stop undoes start; nil when there is nothing to undo.
	stop func(context.Context) error
}

// lifecycle starts and stops a list of components.
type lifecycle struct {
	log     *slog.Logger
	started []component
}

// start starts cs in order. When one fails, the components already
// started are stopped, in reverse order, within stopCtx's time, and the
// error names the one that failed.
func (l *lifecycle) start(ctx context.Context, stopCtx func() (context.Context, context.CancelFunc), cs []component) error {
	for _, c := range cs {
		if err := c.start(ctx); err != nil {
			err = fmt.Errorf("%s: %w", c.name, err)
			sctx, cancel := stopCtx()
			defer cancel()
			if serr := l.stop(sctx); serr != nil {
				l.log.Warn("components started before the failure did not stop cleanly", "err", serr)
			}
			return err
		}
		l.log.Debug("started", "component", c.name)
		l.started = append(l.started, c)
	}
	return nil
}

// stop stops the started components in reverse order. Each one is stopped
// even when an earlier one failed to; the errors are joined.
func (l *lifecycle) stop(ctx context.Context) error {
	var errs []error
	for i := len(l.started) - 1; i >= 0; i-- {
		c := l.started[i]
		if c.stop == nil {
			continue
		}
		if err := c.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", c.name, err))
		}
		l.log.Debug("stopped", "component", c.name)
	}
	l.started = nil
	return errors.Join(errs...)
}
