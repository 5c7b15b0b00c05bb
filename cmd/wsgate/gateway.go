package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/admin"
	"github.com/wsgate/wsgate/gateway/broker"
	"github.com/wsgate/wsgate/gateway/homeassistant"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/spool"
	"github.com/wsgate/wsgate/plugins"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// gatewayRun is one run of the gateway: its configuration, and the parts
// made from it as its components start.
type gatewayRun struct {
	cfg     config.Config // as started, then as last reloaded
	log     *slog.Logger
	path    string
	level   *slog.LevelVar
	started time.Time

	reloadMu sync.Mutex // one reload at a time

	protocols  []builtin // the enabled built-in protocols, in order
	registry   *protocols.Registry
	pluginHost *plugins.Host
	spool      *spool.Spool
	broker     *broker.Broker
	mqttURL    string
	// brokerLogin is the bridge's username and password on the embedded
	// broker when it has users; nil otherwise.
	brokerLogin *[2]string
	bridge      *mqttbridge.Bridge
	discovery   *homeassistant.Discovery // nil when [homeassistant] is off
	router      *router.Router
	locals      *devices.Manager
	server      *gateway.Server
	mdns        *mdnsRun // nil when [mdns] is off
	admin       *admin.Server
}

// components is the composition root: what runs, in the order it starts.
// Each part may use those before it; they stop in reverse order.
func (g *gatewayRun) components() []component {
	returner := newMemoryReturner(g.log)
	cs := []component{
		{name: "memory returner", start: returner.start, stop: returner.stop},
		{name: "protocols", start: g.startProtocols},
		{name: "plugins", start: g.startPlugins, stop: func(context.Context) error { g.pluginHost.Close(); return nil }},
		{name: "spool", start: g.openSpool, stop: func(context.Context) error { return g.spool.Close() }},
	}
	if g.cfg.MQTT.URL == "" {
		cs = append(cs, component{name: "embedded MQTT broker", start: g.startBroker, stop: func(context.Context) error { return g.broker.Close() }})
	}
	cs = append(cs,
		component{name: "MQTT bridge", start: g.startBridge, stop: func(ctx context.Context) error { return g.bridge.Close(ctx) }},
	)
	if g.cfg.HomeAssistant.Enabled {
		cs = append(cs, component{name: "Home Assistant discovery",
			start: func(context.Context) error { g.discovery.Start(); return nil },
			stop:  func(context.Context) error { g.discovery.Close(); return nil }})
	}
	cs = append(cs,
		// Local devices stop before the bridge: their last frames still reach it.
		component{name: "local devices", start: g.startDevices, stop: func(context.Context) error { g.locals.Close(); return nil }},
		component{name: "WebSocket server", start: g.startServer, stop: g.stopServer},
	)
	if g.cfg.MDNS.Enabled {
		// Before the protocols' runners, which announce their services on
		// it, and stopped after them.
		cs = append(cs, component{name: "mDNS responder", start: g.startMDNS, stop: g.stopMDNS})
	}
	cs = append(cs, g.runnerComponents()...)
	if g.cfg.Admin.Address != "" {
		cs = append(cs, component{name: "admin endpoints", start: g.startAdmin, stop: func(ctx context.Context) error { return g.admin.Shutdown(ctx) }})
	}
	return cs
}

// runOptions are what a run needs besides its configuration.
type runOptions struct {
	path    string // the configuration file, re-read on reload; "" for the defaults
	log     *slog.Logger
	level   *slog.LevelVar // the log's level, which a reload may change
	reloads <-chan os.Signal
}

// runGateway serves until ctx is cancelled, then shuts down within the
// configured grace period. Every value on o.reloads re-reads the
// configuration file.
func runGateway(ctx context.Context, cfg config.Config, o runOptions) error {
	log := o.log
	g := &gatewayRun{cfg: cfg, log: log, path: o.path, level: o.level, started: time.Now()}
	grace := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), cfg.Gateway.ShutdownGrace)
	}
	applyRuntime(cfg.Runtime, os.Getenv, os.DirFS("/"), log)
	l := &lifecycle{log: log}
	if err := l.start(ctx, grace, g.components()); err != nil {
		return err
	}
	log.Info("wsgate running", "version", versionString(), "gateway", cfg.Gateway.ID, "protocols", g.registry.Order(), "mqtt", g.mqttURL)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-o.reloads:
			g.reload()
		}
	}
	log.Info("shutting down", "grace", cfg.Gateway.ShutdownGrace, "connections", g.server.Connections())
	stopCtx, cancel := grace()
	defer cancel()
	err := l.stop(stopCtx)
	log.Info("stopped")
	return err
}

// startPlugins launches the configured and discovered plugins into the
// registry. A plugin that is refused is logged and left out: one bad
// plugin does not stop the gateway.
func (g *gatewayRun) startPlugins(context.Context) error {
	g.pluginHost = startPlugins(g.cfg, g.registry, g.log)
	return nil
}

func (g *gatewayRun) openSpool(context.Context) (err error) {
	dir := g.cfg.Spool.Dir
	if dir == "" {
		dir = config.StateDir()
	}
	s := g.cfg.Spool
	g.spool, err = spool.Open(filepath.Join(dir, "spool.db"), spool.Limits{MaxRecords: s.MaxFrames, MaxBytes: s.MaxBytes}, spool.Policy(s.FullPolicy))
	return err
}

// bridgeUser is the embedded broker's account for the bridge, when the
// broker has users; its password is made at every start.
func (g *gatewayRun) bridgeUser() string { return "wsgate-bridge-" + g.cfg.Gateway.ID }

func (g *gatewayRun) startBroker(context.Context) error {
	users := g.cfg.MQTT.Embedded.Users
	if len(users) > 0 { // the bridge is a client of its own broker
		users = maps.Clone(users)
		users[g.bridgeUser()] = rand.Text()
	}
	addr := g.cfg.MQTT.Embedded.Address
	b, err := broker.Start(broker.Options{Address: addr, Users: users}, g.log)
	if errors.Is(err, syscall.EADDRINUSE) {
		// Typically a Mosquitto installed as a service already holds 1883.
		return fmt.Errorf("%w; to use the broker already listening there, set mqtt.url = \"tcp://127.0.0.1:%s\", or move the embedded one with mqtt.embedded.address",
			err, portOf(addr))
	}
	if err != nil {
		return err
	}
	g.broker, g.mqttURL = b, loopbackURL(b.Address())
	if len(users) > 0 {
		g.brokerLogin = &[2]string{g.bridgeUser(), users[g.bridgeUser()]}
	}
	g.log.Info("embedded MQTT broker running", "address", b.Address())
	return nil
}

func (g *gatewayRun) startBridge(context.Context) error {
	if g.mqttURL == "" {
		g.mqttURL = g.cfg.MQTT.URL
	}
	bcfg, err := bridgeConfig(g.cfg, g.mqttURL)
	if err != nil {
		return err
	}
	if g.brokerLogin != nil {
		bcfg.Username, bcfg.Password = g.brokerLogin[0], g.brokerLogin[1]
	}
	if commands := g.gatewayCommands(); len(commands) > 0 {
		bcfg.GatewayCommands = commands
	}
	ha := g.cfg.HomeAssistant
	if ha.Enabled {
		if bcfg.Topics, err = bcfg.Topics.Reserve(ha.DiscoveryPrefix); err != nil {
			return fmt.Errorf("homeassistant.discovery_prefix: %w", err)
		}
	}
	g.bridge = mqttbridge.New(bcfg, g.spool, g.log)
	g.router = router.New(g.bridge, g.log)
	g.router.Watch(g.bridge)
	if ha.Enabled {
		// Before the bridge starts: discovery subscribes through it.
		g.discovery = homeassistant.New(homeassistant.Options{
			Prefix: ha.DiscoveryPrefix, StatusTopic: ha.StatusTopic, Mode: homeassistant.Mode(ha.Mode),
			Namespace: g.cfg.MQTT.TopicPrefix, GatewayID: g.cfg.Gateway.ID, Version: versionString(),
			Locals: localDescriptions(g.cfg.Devices), Log: g.log,
		}, bcfg.Topics, g.bridge)
		g.router.Watch(g.discovery)
	}
	g.bridge.Start(g.router)
	return nil
}

// localDescriptions are what the local devices are announced with, by id.
func localDescriptions(devices []config.Device) map[string]*protocols.Description {
	descs := map[string]*protocols.Description{}
	for _, d := range devices {
		if desc := d.Description(); desc != nil {
			descs[d.ID] = desc
		}
	}
	return descs
}

func (g *gatewayRun) startDevices(context.Context) error {
	g.locals = devices.NewManager(g.router, g.log, devices.ManagerOptions{CommandTimeout: g.cfg.Gateway.CommandTimeout})
	var specs []devices.Spec
	for _, d := range g.cfg.Devices {
		specs = append(specs, devices.Spec{ID: d.ID, Driver: d.Driver, Config: d.Options})
	}
	if err := g.locals.Open(specs); err != nil {
		for _, e := range unjoin(err) {
			g.log.Error("local device not started", "err", e)
		}
	}
	var routes []router.Route
	for _, r := range g.cfg.Routes {
		routes = append(routes, r.RouterRoute())
	}
	if err := g.router.SetRoutes(routes, g.locals.Receiver); err != nil {
		g.locals.Close()
		return fmt.Errorf("routes: %w", err)
	}
	if err := g.locals.Run(); err != nil {
		g.log.Error("local devices", "err", err)
	}
	return nil
}

func (g *gatewayRun) startServer(context.Context) error {
	srv, err := gateway.New(g.gatewayOptions(), g.registry, g.router, g.log)
	if err == nil {
		err = srv.Start()
	}
	g.server = srv
	return err
}

func (g *gatewayRun) stopServer(ctx context.Context) error {
	if err := g.server.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func (g *gatewayRun) startAdmin(context.Context) (err error) {
	src := admin.Sources{Gateway: g.server, Bridge: g.bridge, Router: g.router, Plugins: g.pluginHost, Protocols: g.registry}
	src.Routes, src.Collectors, src.Pairers = g.adminExtras()
	if g.discovery != nil {
		src.Routes = append(src.Routes,
			module.AdminRoute{Pattern: homeassistant.ListPattern, Handler: http.HandlerFunc(g.discovery.ServeList)},
			module.AdminRoute{Pattern: homeassistant.RemovePattern, Handler: http.HandlerFunc(g.discovery.ServeRemove)})
	}
	a := g.cfg.Admin
	g.admin, err = admin.Start(admin.Options{
		Address: a.Address, Hosts: a.Hosts, Token: a.Token, Reload: g.reload,
		GatewayID: g.cfg.Gateway.ID, Version: versionString(), Started: g.started,
	}, src, g.log)
	return err
}

func bridgeConfig(cfg config.Config, url string) (mqttbridge.Config, error) {
	m := cfg.MQTT
	topics, err := mqttbridge.NewTopics(m.TopicPrefix, cfg.Gateway.ID, m.UplinkTopic)
	if err != nil {
		return mqttbridge.Config{}, err
	}
	tlsConfig, err := brokerTLS(m)
	if err != nil {
		return mqttbridge.Config{}, err
	}
	clientID := m.ClientID
	if clientID == "" {
		clientID = "wsgate-" + cfg.Gateway.ID
	}
	return mqttbridge.Config{
		URL: url, FallbackURLs: m.FallbackURLs, ClientID: clientID, Username: m.Username, Password: m.Password, TLS: tlsConfig,
		KeepAlive: m.KeepAlive, ConnectTimeout: m.ConnectTimeout, ReconnectMin: m.ReconnectMin,
		ReconnectMax: m.ReconnectMax, PublishTimeout: m.PublishTimeout, GatewayID: cfg.Gateway.ID,
		Topics: topics, Queue: m.Queue, QueueWait: m.QueueWait, MaxInflight: m.MaxInflight, OfflineResults: m.OfflineResults,
		CommandQoS: byte(m.CommandQoS), QoS0Connections: m.QoS0Connections,
		ShareGroup: m.ShareGroup, Version: versionString(),
	}, nil
}

func brokerTLS(m config.MQTT) (*tls.Config, error) {
	if m.CAFile == "" && m.CertFile == "" && !m.InsecureSkipVerify {
		return nil, nil // paho's defaults: system roots for ssl:// and wss://
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.InsecureSkipVerify}
	if m.CAFile != "" {
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.ca_file: no PEM certificates in %s", m.CAFile)
		}
	}
	if m.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(m.CertFile, m.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.cert_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "1883"
	}
	return port
}

// loopbackURL is how the bridge reaches the embedded broker.
func loopbackURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

// startPlugins launches the configured and discovered plugins into the
// registry; a refused plugin is logged and left out.
func startPlugins(cfg config.Config, registry *protocols.Registry, log *slog.Logger) *plugins.Host {
	h := cfg.PluginHost
	host := plugins.NewHost(plugins.Options{
		Registry: registry, Reserved: builtinNames(), Log: log.With("component", "plugins"),
		RestartMin: h.RestartMin, RestartMax: h.RestartMax, MaxFailures: h.MaxFailures, StallTimeout: h.StallTimeout,
	})
	var specs []plugins.Spec
	for _, p := range cfg.Plugins {
		specs = append(specs, plugins.Spec{Path: p.Path, SHA256: p.SHA256, Protocols: p.Protocols})
	}
	if h.Dir != "" {
		found, err := plugins.Discover(h.Dir)
		if err != nil {
			log.Error("plugin directory not used", "err", err)
		}
		specs = append(specs, found...)
	}
	_ = host.Start(specs) // logs each plugin it refuses; the gateway runs on without them
	for _, name := range registry.Order() {
		if _, ok := registry.Lookup(name); !ok {
			log.Warn("enabled protocol has no implementation; clients cannot get it", "protocol", name)
		}
	}
	return host
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
