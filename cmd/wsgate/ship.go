package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/ship"
	"github.com/wsgate/wsgate/protocols/ship/discovery"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// shipDir is where the SHIP key, certificate and trust store live.
func shipDir(cfg config.Config) string {
	if cfg.Ship.Dir != "" {
		return cfg.Ship.Dir
	}
	return filepath.Join(config.StateDir(), "ship")
}

// trustFile is the trust store's file name in the SHIP directory.
const trustFile = "ship-trust.json"

// loadShipIdentity loads the local SHIP node, making its key and
// certificate on first use.
func loadShipIdentity(cfg config.Config) (*identity.Identity, error) {
	s := cfg.Ship
	id, err := identity.LoadOrCreate(shipDir(cfg), identity.Subject{
		CommonName: s.Model + "-" + s.Serial, Organization: s.Brand, SHIPID: s.SHIPID,
	})
	if err != nil {
		return nil, fmt.Errorf("ship identity: %w", err)
	}
	return id, nil
}

// openShip prepares the ship protocol: identity, trust store and timers.
func openShip(cfg config.Config, log *slog.Logger) (*ship.Protocol, error) {
	id, err := loadShipIdentity(cfg)
	if err != nil {
		return nil, err
	}
	if id.Created {
		log.Info("made a new SHIP identity", "ski", id.SKI, "ship_id", id.SHIPID, "cert", id.CertPath)
	}
	store, err := trust.Open(filepath.Join(shipDir(cfg), trustFile))
	if err != nil {
		return nil, fmt.Errorf("ship trust store: %w", err)
	}
	tlsOpts := cfg.Ship.TLSOptions()
	tlsOpts.Logger = log.With("component", "ship")
	return ship.New(ship.Options{
		Identity: id, Trust: store, AutoAccept: cfg.Ship.AutoAccept, TLS: tlsOpts,
		Machine: cfg.Ship.Timers.MachineConfig(), QoS: byte(cfg.Ship.QoS), Log: log.With("component", "ship"),
	})
}

// shipListeners are the SHIP server's wss:// listener: ship.path, which
// mDNS announces, and every other path too, since ship-go's client retries
// without a path and its server ignores the path (ship.md section 3).
func shipListeners(cfg config.Config, p *ship.Protocol) []gateway.Listener {
	s := cfg.Ship
	l := gateway.Listener{
		Address: s.Address, Path: s.Path, Protocols: []string{ship.Name},
		// Devices offer "ship"; the few that offer nothing get it anyway.
		Fallback:  ship.Name,
		TLSConfig: p.ServerTLS(), PingInterval: s.PingInterval, PongTimeout: s.PongTimeout,
		MaxMessage: s.MaxMessage,
	}
	ls := []gateway.Listener{l}
	if s.Path != "/" {
		l.Path = "/"
		ls = append(ls, l)
	}
	return ls
}

// shipPeers are the configured SHIP servers to dial.
func shipPeers(cfg config.Config) []ship.Target {
	var out []ship.Target
	for _, p := range cfg.Ship.Peers {
		out = append(out, ship.Target{SKI: p.SKI, SHIPID: p.SHIPID, URL: p.URL()})
	}
	return out
}

// dialer adapts the gateway's Dial to the ship package.
func dialer(srv *gateway.Server, cfg config.Config) ship.DialFunc {
	return func(ctx context.Context, url string, tlsConfig *tls.Config, p protocols.Protocol) error {
		return srv.Dial(ctx, gateway.DialOptions{
			URL: url, TLSConfig: tlsConfig, PingInterval: cfg.Ship.PingInterval, PongTimeout: cfg.Ship.PongTimeout,
			MaxMessage: cfg.Ship.MaxMessage,
		}, p)
	}
}

// runShip dials the SHIP peers (configured, and trusted ones discovery
// finds) and announces the gateway over mDNS, until ctx ends.
func runShip(ctx context.Context, cfg config.Config, p *ship.Protocol, srv *gateway.Server, log *slog.Logger) {
	log = log.With("component", "ship")
	peers := p.NewPeers(dialer(srv, cfg), cfg.Ship.Timers.Delays())
	var wg sync.WaitGroup
	if cfg.Ship.Announce {
		wg.Go(func() { announceShip(ctx, cfg, p, log) })
	}
	if cfg.Ship.Browse {
		wg.Go(func() {
			err := discovery.Browse(ctx, discovery.BrowseOptions{OwnSKI: p.Identity().SKI, Options: discovery.Options{Logger: log}},
				func(ev discovery.Event) {
					if ev.Kind == discovery.Removed {
						return // a dial loop keeps the last address it had
					}
					svc := ev.Service
					log.Debug("SHIP service found", "ski", svc.SKI, "ship_id", svc.SHIPID, "url", svc.URL(), "register", svc.Register)
					peers.Found(ctx, ship.Target{SKI: svc.SKI, SHIPID: svc.SHIPID, URL: dialURL(svc)})
				})
			if err != nil {
				log.Warn("mDNS browsing not possible; SHIP devices must be listed in [[ship.peers]] with their address", "err", err)
			}
		})
	}
	if err := peers.Run(ctx, shipPeers(cfg)); err != nil {
		log.Error("SHIP peers not dialled", "err", err)
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

// announceShip announces the gateway as a _ship._tcp service (ship.md
// section 8) until ctx ends.
func announceShip(ctx context.Context, cfg config.Config, p *ship.Protocol, log *slog.Logger) {
	s := cfg.Ship
	host, portText, _ := net.SplitHostPort(s.Address)
	port, _ := strconv.Atoi(portText)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		log.Info("SHIP listener is on loopback; not announced over mDNS", "address", s.Address)
		return
	}
	id := p.Identity()
	a, err := discovery.NewAnnouncer(discovery.Service{
		Instance: id.SHIPID, Port: port, SHIPID: id.SHIPID, Path: s.Path, SKI: id.SKI, Register: s.AutoAccept,
		Brand: s.Brand, Model: s.Model, Type: s.DeviceType, Serial: s.Serial, Categories: s.Categories,
	}, discovery.Options{Logger: log})
	if err == nil {
		err = a.Run(ctx)
	}
	if err != nil {
		log.Warn("mDNS announcement not possible; give devices the gateway's address by hand", "err", err)
	}
}

const shipUsage = `usage: wsgate ship <command> [-config FILE] [-admin ADDRESS] [SKI]

commands:
  cert            print the local SKI and SHIP ID (makes the key and
                  certificate when there are none yet)
  peers           list the known SHIP peers and their trust state
  approve SKI     trust a peer: a pending one goes on, an unknown one is
                  paired in advance
  reject SKI      refuse a peer (its connection is closed)
  remove SKI      forget a peer (unpair)

peers, approve, reject and remove talk to the running gateway's admin API
(admin.address of the config, or -admin).
`

// shipCommand runs `wsgate ship ...`.
func shipCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, shipUsage)
		return 2
	}
	cmd, args := args[0], args[1:]
	flags := flag.NewFlagSet("wsgate ship "+cmd, flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", "", "configuration file (TOML)")
	adminAddr := flags.String("admin", "", "admin API address (default: admin.address of the config)")
	wantSKI := false
	switch cmd {
	case "cert", "peers":
	case "approve", "reject", "remove":
		wantSKI = true
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, shipUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "wsgate ship: unknown command %q\n\n%s", cmd, shipUsage)
		return 2
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var ski string
	switch {
	case wantSKI && flags.NArg() != 1:
		fmt.Fprintf(stderr, "wsgate ship %s: give one SKI\n", cmd)
		return 2
	case wantSKI:
		var err error
		if ski, err = identity.NormalizeSKI(flags.Arg(0)); err != nil {
			fmt.Fprintf(stderr, "wsgate ship %s: %q is not an SKI (40 hex digits)\n", cmd, flags.Arg(0))
			return 2
		}
	case flags.NArg() > 0:
		fmt.Fprintf(stderr, "wsgate ship %s: unexpected argument %q\n", cmd, flags.Arg(0))
		return 2
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		reportConfigError(stderr, err)
		return 1
	}
	if cmd == "cert" {
		id, err := loadShipIdentity(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "wsgate:", err)
			return 1
		}
		fmt.Fprintf(stdout, "SKI:     %s\nSHIP ID: %s\ncert:    %s\n", id.SKI, id.SHIPID, id.CertPath)
		return 0
	}
	addr := *adminAddr
	if addr == "" {
		addr = cfg.Admin.Address
	}
	if addr == "" {
		fmt.Fprintln(stderr, "wsgate ship: the admin API is off (admin.address is empty); give -admin ADDRESS")
		return 1
	}
	api := adminClient{base: "http://" + loopbackHost(addr)}
	if cmd == "peers" {
		var list []trust.Entry
		if err := api.call(ctx, http.MethodGet, "/ship/peers", &list); err != nil {
			fmt.Fprintln(stderr, "wsgate ship peers:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "SKI\tSTATE\tSHIP ID\tLAST SEEN\n")
		for _, e := range list {
			seen := "-"
			if !e.LastSeen.IsZero() {
				seen = e.LastSeen.Local().Format(time.DateTime)
			}
			state := string(e.State)
			if e.AutoAccepted {
				state += " (auto)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.SKI, state, cmp.Or(e.SHIPID, "-"), seen)
		}
		tw.Flush()
		return 0
	}
	method, path := http.MethodPost, "/ship/peers/"+ski+"/"+cmd
	if cmd == "remove" {
		method, path = http.MethodDelete, "/ship/peers/"+ski
	}
	if err := api.call(ctx, method, path, nil); err != nil {
		fmt.Fprintf(stderr, "wsgate ship %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", ski, map[string]string{"approve": "approved", "reject": "rejected", "remove": "removed"}[cmd])
	return 0
}

// loopbackHost turns a listen address into one to connect to.
func loopbackHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// adminClient calls the running gateway's admin API.
type adminClient struct{ base string }

func (a adminClient) call(ctx context.Context, method, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the gateway running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
