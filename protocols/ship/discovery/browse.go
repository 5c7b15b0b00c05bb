package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols/ship/identity"
)

// EventKind says what happened to a SHIP service: mdns's kinds, where
// Removed also covers a TXT record that stopped being a valid SHIP one.
type EventKind = mdns.EventKind

// Event kinds.
const (
	Added   = mdns.Added
	Updated = mdns.Updated
	Removed = mdns.Removed
)

// Event reports a change of one discovered SHIP service.
type Event struct {
	Kind    EventKind
	Service Service
}

// BrowseOptions configures Browse.
type BrowseOptions struct {
	mdns.Options
	// OwnSKI is our own SKI; services announcing it are ignored.
	OwnSKI string
	// QueryInterval caps the gap between browse queries; zero means
	// mdns.DefaultQueryInterval.
	QueryInterval time.Duration
}

// Browse looks for SHIP services with mdns.Browse until ctx is cancelled
// and reports each change through handle: a service is reported once its
// TXT record is a valid SHIP one (see ParseTXT) and its SKI is not ours; a
// service whose TXT record turns invalid is reported Removed.
//
// handle is called from the browser's one goroutine, never concurrently
// and never after Browse returned; it must not block for long (see
// mdns.Browse). Browse returns nil after ctx is cancelled, or an error
// wrapping ErrNoMulticast at once when no socket can be opened.
func Browse(ctx context.Context, opts BrowseOptions, handle func(Event)) error {
	if handle == nil {
		return errors.New("discovery: Browse needs a handler")
	}
	f := &filter{log: opts.Options.Logger, reported: map[string]Service{}, bad: map[string]string{}}
	if f.log == nil {
		f.log = slog.Default()
	}
	if opts.OwnSKI != "" {
		var err error
		if f.own, err = identity.NormalizeSKI(opts.OwnSKI); err != nil {
			return fmt.Errorf("discovery: own SKI: %w", err)
		}
	}
	return mdns.Browse(ctx, mdns.BrowseOptions{Options: opts.Options, Type: ServiceType, QueryInterval: opts.QueryInterval},
		func(ev mdns.Event) {
			if out, ok := f.handle(ev); ok {
				handle(out)
			}
		})
}

// filter turns the events of _ship._tcp instances into those of valid SHIP
// services; it is used from the browser's goroutine only.
type filter struct {
	own      string
	log      *slog.Logger
	reported map[string]Service // by lower-case instance name
	bad      map[string]string  // TXT records already logged as invalid, by instance
}

// handle returns the event to report for ev, if any.
func (f *filter) handle(ev mdns.Event) (Event, bool) {
	key := strings.ToLower(ev.Service.Instance)
	prev, had := f.reported[key]
	svc, ok := f.service(ev)
	switch {
	case ok && !had:
		f.reported[key] = svc
		return Event{Added, svc}, true
	case ok && !equalService(svc, prev):
		f.reported[key] = svc
		return Event{Updated, svc}, true
	case !ok && had:
		delete(f.reported, key)
		return Event{Removed, prev}, true
	}
	return Event{}, false
}

// service returns the SHIP service ev describes, unless it is gone, its
// TXT record is not a valid SHIP one, or it is our own.
func (f *filter) service(ev mdns.Event) (Service, bool) {
	key := strings.ToLower(ev.Service.Instance)
	if ev.Kind == mdns.Removed {
		delete(f.bad, key)
		return Service{}, false
	}
	svc, err := ParseTXT(ev.Service.TXT)
	if err != nil {
		if txt := strings.Join(ev.Service.TXT, "\x00"); f.bad[key] != txt {
			f.bad[key] = txt
			f.log.Debug("mdns: ignoring SHIP service", "instance", ev.Service.Instance, "err", err)
		}
		return Service{}, false
	}
	delete(f.bad, key)
	if svc.SKI == f.own {
		return Service{}, false
	}
	svc.Instance = ev.Service.Instance
	svc.Host = ev.Service.Host
	svc.Port = ev.Service.Port
	svc.Addrs = ev.Service.Addrs
	return svc, true
}

func equalService(a, b Service) bool {
	return a.Instance == b.Instance && a.Host == b.Host && a.Port == b.Port &&
		slices.Equal(a.Addrs, b.Addrs) && a.SHIPID == b.SHIPID && a.Path == b.Path &&
		a.SKI == b.SKI && a.Register == b.Register && a.Brand == b.Brand &&
		a.Model == b.Model && a.Type == b.Type && a.Serial == b.Serial &&
		slices.Equal(a.Categories, b.Categories)
}
