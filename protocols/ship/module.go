package ship

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
	"github.com/wsgate/wsgate/protocols/ship/discovery"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// Sample is the [protocols.ship] table with its defaults, documented.
//
//go:embed sample.toml
var Sample string

func init() {
	module.Register(module.Module{
		Name: Name, DefaultOrder: 10, Sample: Sample, SelfAuthenticating: true, TLSOnly: true,
		NewConfig: func() module.Config { c := DefaultConfig(); return &c },
	})
}

// trustFile is the trust store's file name in the SHIP directory.
const trustFile = "ship-trust.json"

// loadIdentity loads the local SHIP node, making its key and certificate
// on first use.
func (c *Config) loadIdentity(s module.Settings) (*identity.Identity, error) {
	id, err := identity.LoadOrCreate(c.dir(s), identity.Subject{
		CommonName: c.Model + "-" + c.Serial, Organization: c.Brand, SHIPID: c.SHIPID,
	})
	if err != nil {
		return nil, fmt.Errorf("ship identity: %w", err)
	}
	return id, nil
}

// New implements module.Config: it loads or makes the identity and opens
// the trust store.
func (c *Config) New(env module.Env) (protocols.Protocol, error) {
	log := env.Log.With("component", "ship")
	id, err := c.loadIdentity(env.Settings)
	if err != nil {
		return nil, err
	}
	if id.Created {
		log.Info("made a new SHIP identity", "ski", id.SKI, "ship_id", id.SHIPID, "cert", id.CertPath)
	}
	store, err := trust.Open(filepath.Join(c.dir(env.Settings), trustFile))
	if err != nil {
		return nil, fmt.Errorf("ship trust store: %w", err)
	}
	tlsOpts := c.TLSOptions()
	tlsOpts.Logger = log
	p, err := New(Options{
		Identity: id, Trust: store, AutoAccept: c.AutoAccept, TLS: tlsOpts,
		Machine: c.Timers.MachineConfig(), QoS: byte(c.QoS), Log: log,
	})
	if err != nil {
		return nil, err
	}
	return &Service{Protocol: p, cfg: *c, log: log}, nil
}

// Service is SHIP as the gateway runs it: the protocol, and what it brings
// besides sessions: its listener's TLS identity, the dialling of SHIP
// servers and mDNS (Start, Stop), the pairing API on the admin address,
// pairing commands over MQTT and its metrics.
type Service struct {
	*Protocol
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Start implements module.Runner: it dials the SHIP peers (configured ones,
// and trusted ones discovery finds) and announces the gateway on the
// host's mDNS responder until Stop.
func (s *Service) Start(_ context.Context, host module.Host) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("ship: already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		s.run(ctx, host)
	}()
	return nil
}

// Stop implements module.Runner: dialled connections end with SHIP's own
// closing handshake, and Stop waits for them until ctx ends.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ship: dialled connections still open: %w", ctx.Err())
	}
}

func (s *Service) run(ctx context.Context, host module.Host) {
	dial := func(ctx context.Context, url string, tlsConfig *tls.Config, p protocols.Protocol) error {
		return host.Dial(ctx, module.DialOptions{
			URL: url, TLSConfig: tlsConfig, PingInterval: s.cfg.PingInterval, PongTimeout: s.cfg.PongTimeout,
			MaxMessage: s.cfg.MaxMessage,
		}, p)
	}
	peers := s.NewPeers(dial, s.cfg.Timers.Delays())
	var wg sync.WaitGroup
	responder := host.MDNS()
	if responder == nil && (s.cfg.Announce || s.cfg.Browse) {
		s.log.Info("mDNS is off ([mdns] enabled = false): SHIP is neither announced nor browsed; list SHIP devices in [[protocols.ship.peers]] with their address")
	}
	if s.cfg.Announce && responder != nil {
		wg.Go(func() { s.announce(ctx, responder) })
	}
	if s.cfg.Browse && responder != nil {
		opts := responder.Options()
		opts.Logger = s.log
		wg.Go(func() {
			err := discovery.Browse(ctx, discovery.BrowseOptions{OwnSKI: s.Identity().SKI, Options: opts},
				func(ev discovery.Event) {
					if ev.Kind == discovery.Removed {
						return // a dial loop keeps the last address it had
					}
					svc := ev.Service
					s.log.Debug("SHIP service found", "ski", svc.SKI, "ship_id", svc.SHIPID, "url", svc.URL(), "register", svc.Register)
					peers.Found(ctx, Target{SKI: svc.SKI, SHIPID: svc.SHIPID, URL: dialURL(svc)})
				})
			if err != nil {
				s.log.Warn("mDNS browsing not possible; SHIP devices must be listed in [[protocols.ship.peers]] with their address", "err", err)
			}
		})
	}
	var targets []Target
	for _, p := range s.cfg.Peers {
		targets = append(targets, Target{SKI: p.SKI, SHIPID: p.SHIPID, URL: p.URL()})
	}
	if err := peers.Run(ctx, targets); err != nil {
		s.log.Error("SHIP peers not dialled", "err", err)
	}
	wg.Wait()
}

// dialURL prefers an address to the host name: the static binary's
// resolver does not resolve .local names (that takes nss-mdns).
func dialURL(svc discovery.Service) string {
	for _, u := range svc.URLs() {
		if parsed, err := url.Parse(u); err == nil && net.ParseIP(parsed.Hostname()) != nil {
			return u
		}
	}
	return svc.URL()
}

// announce announces the gateway as a _ship._tcp service (ship.md section
// 8) on the gateway's responder until ctx ends.
func (s *Service) announce(ctx context.Context, responder *mdns.Responder) {
	c := s.cfg
	host, portText, _ := net.SplitHostPort(c.Address)
	port, _ := strconv.Atoi(portText)
	var addrs []netip.Addr // empty: the addresses of each interface
	if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
		// Bound to one address: only that one is reachable. A loopback
		// one is announced only where [mdns] names the interfaces (lo).
		if ip.IsLoopback() && len(responder.Options().Interfaces) == 0 {
			s.log.Info("SHIP listener is on loopback; not announced over mDNS", "address", c.Address)
			return
		}
		addrs = []netip.Addr{ip.Unmap()}
	}
	id := s.Identity()
	svc, err := discovery.Service{
		Port: port, Addrs: addrs, SHIPID: id.SHIPID, Path: c.Path, SKI: id.SKI, Register: c.AutoAccept,
		Brand: c.Brand, Model: c.Model, Type: c.DeviceType, Serial: c.Serial, Categories: c.Categories,
	}.MDNS()
	var a *mdns.Announcement
	if err == nil {
		a, err = responder.Announce(svc)
	}
	if err != nil {
		s.log.Warn("SHIP not announced over mDNS; give devices the gateway's address by hand", "err", err)
		return
	}
	<-ctx.Done()
	a.Withdraw()
}

// The capabilities the Service brings (package module).
var (
	_ module.Config           = (*Config)(nil)
	_ module.Listening        = (*Config)(nil)
	_ module.Subcommand       = (*Config)(nil)
	_ module.TLSProvider      = (*Service)(nil)
	_ module.Runner           = (*Service)(nil)
	_ module.AdminRouter      = (*Service)(nil)
	_ module.Pairer           = (*Service)(nil)
	_ module.GatewayCommander = (*Service)(nil)
	_ protocols.Admitter      = (*Service)(nil)
	_ prometheus.Collector    = (*Service)(nil)
)
