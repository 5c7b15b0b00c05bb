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
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/admin"
	"github.com/wsgate/wsgate/gateway/broker"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/spool"
	"github.com/wsgate/wsgate/plugins"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done"
	"github.com/wsgate/wsgate/protocols/echo"
	"github.com/wsgate/wsgate/protocols/ship"
)

// buildRegistry registers the built-in protocols in the configured order,
// and shipProto (nil when SHIP is off) last: only its own listener serves
// it.
func buildRegistry(cfg config.Config, shipProto *ship.Protocol) (*protocols.Registry, error) {
	order := cfg.Protocols.Order
	builtin := []protocols.Protocol{done.New(cfg.Protocols.Done), echo.Protocol{}}
	if shipProto != nil {
		order = append(slices.Clip(order), ship.Name)
		builtin = append(builtin, shipProto)
	}
	registry, err := protocols.NewRegistry(order)
	if err != nil {
		return nil, err
	}
	for _, p := range builtin {
		if err := registry.Register(p, "builtin"); err != nil {
			return nil, err
		}
	}
	return registry, nil
}

func gatewayOptions(cfg config.Config) gateway.Options {
	ws := cfg.WebSocket
	opts := gateway.Options{
		GatewayID:        cfg.Gateway.ID,
		Policy:           protocols.Policy(cfg.Protocols.Policy),
		PingInterval:     ws.PingInterval,
		PongTimeout:      ws.PongTimeout,
		CloseTimeout:     ws.CloseTimeout,
		WriteTimeout:     ws.WriteTimeout,
		HandshakeTimeout: ws.HandshakeTimeout,
		MaxMessage:       ws.MaxMessage,
		SendQueue:        ws.SendQueue,
		AllowedOrigins:   ws.AllowedOrigins,
	}
	for _, l := range cfg.Listeners {
		served := l.Protocols
		if len(served) == 0 {
			served = cfg.Protocols.Order // everything enabled but SHIP, which has its own
		}
		opts.Listeners = append(opts.Listeners, gateway.Listener{
			Address: l.Address, Path: l.Path, Protocols: served, Fallback: l.Fallback,
			TLSCert: l.TLSCert, TLSKey: l.TLSKey, Compression: l.Compression, CompressMin: l.CompressMin,
		})
	}
	return opts
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
		URL: url, ClientID: clientID, Username: m.Username, Password: m.Password, TLS: tlsConfig,
		KeepAlive: m.KeepAlive, ConnectTimeout: m.ConnectTimeout, ReconnectMin: m.ReconnectMin,
		ReconnectMax: m.ReconnectMax, PublishTimeout: m.PublishTimeout, GatewayID: cfg.Gateway.ID,
		Topics: topics, Queue: m.Queue, QueueWait: m.QueueWait, MaxInflight: m.MaxInflight, OfflineResults: m.OfflineResults,
		Version: versionString(),
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
// registry. A plugin that is refused is logged and left out: one bad
// plugin does not stop the gateway.
func startPlugins(cfg config.Config, registry *protocols.Registry, log *slog.Logger) *plugins.Host {
	h := cfg.PluginHost
	host := plugins.NewHost(plugins.Options{
		Registry: registry, Reserved: config.BuiltinProtocols, Log: log.With("component", "plugins"),
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
	if err := host.Start(specs); err != nil {
		for _, e := range unjoin(err) {
			log.Error("plugin refused", "err", e)
		}
	}
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

// runGateway serves until ctx is cancelled, then shuts down within the
// configured grace period.
func runGateway(ctx context.Context, cfg config.Config, log *slog.Logger) (err error) {
	var shipProto *ship.Protocol
	if cfg.Ship.Enabled {
		if shipProto, err = openShip(cfg, log); err != nil {
			return err
		}
	}
	registry, err := buildRegistry(cfg, shipProto)
	if err != nil {
		return err
	}
	pluginHost := startPlugins(cfg, registry, log)
	defer pluginHost.Close()
	dir := cfg.Spool.Dir
	if dir == "" {
		dir = config.StateDir()
	}
	sp, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Limits{MaxRecords: cfg.Spool.MaxFrames, MaxBytes: cfg.Spool.MaxBytes}, spool.Policy(cfg.Spool.FullPolicy))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sp.Close()) }()

	url := cfg.MQTT.URL
	var bridgeUser, bridgePassword string
	if url == "" {
		users := cfg.MQTT.Embedded.Users
		if len(users) > 0 { // the bridge is a client of its own broker
			users = maps.Clone(users)
			bridgeUser, bridgePassword = "wsgate-bridge-"+cfg.Gateway.ID, rand.Text()
			users[bridgeUser] = bridgePassword
		}
		b, err := broker.Start(broker.Options{Address: cfg.MQTT.Embedded.Address, Users: users}, log)
		if errors.Is(err, syscall.EADDRINUSE) {
			// Typically a Mosquitto installed as a service already holds 1883.
			return fmt.Errorf("%w; to use the broker already listening there, set mqtt.url = \"tcp://127.0.0.1:%s\", or move the embedded one with mqtt.embedded.address",
				err, portOf(cfg.MQTT.Embedded.Address))
		}
		if err != nil {
			return err
		}
		defer b.Close()
		url = loopbackURL(b.Address())
		log.Info("embedded MQTT broker running", "address", b.Address())
	}
	bcfg, err := bridgeConfig(cfg, url)
	if err != nil {
		return err
	}
	if bridgeUser != "" {
		bcfg.Username, bcfg.Password = bridgeUser, bridgePassword
	}
	if shipProto != nil {
		bcfg.GatewayCommands = shipProto
	}
	bridge := mqttbridge.New(bcfg, sp, log)
	rt := router.New(bridge, log)
	rt.Watch(bridge)
	bridge.Start(rt)

	locals := devices.NewManager(rt, log, devices.ManagerOptions{})
	var specs []devices.Spec
	for _, d := range cfg.Devices {
		specs = append(specs, devices.Spec{ID: d.ID, Driver: d.Driver, Config: d.Options})
	}
	if err := locals.Open(specs); err != nil {
		for _, e := range unjoin(err) {
			log.Error("local device not started", "err", e)
		}
	}
	var routes []router.Route
	for _, r := range cfg.Routes {
		routes = append(routes, r.RouterRoute())
	}
	if err := rt.SetRoutes(routes, locals.Receiver); err != nil {
		_ = bridge.Close(context.Background())
		return fmt.Errorf("routes: %w", err)
	}
	if err := locals.Run(); err != nil {
		log.Error("local devices", "err", err)
	}
	defer locals.Close()

	gwOpts := gatewayOptions(cfg)
	if shipProto != nil {
		gwOpts.Listeners = append(gwOpts.Listeners, shipListeners(cfg, shipProto)...)
	}
	srv, err := gateway.New(gwOpts, registry, rt, log)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		_ = bridge.Close(context.Background())
		return err
	}
	var shipDone chan struct{}
	if shipProto != nil {
		shipDone = make(chan struct{})
		go func() {
			defer close(shipDone)
			runShip(ctx, cfg, shipProto, srv, log)
		}()
	}
	if cfg.Admin.Address != "" {
		src := admin.Sources{Gateway: srv, Bridge: bridge, Router: rt, Plugins: pluginHost}
		if shipProto != nil {
			src.ShipTrust, src.ShipNode = shipProto.Trust(), shipProto
		}
		adm, err := admin.Start(cfg.Admin.Address, src, log)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			_ = bridge.Close(context.Background())
			return err
		}
		defer adm.Shutdown(context.Background())
	}
	log.Info("wsgate running", "version", versionString(), "gateway", cfg.Gateway.ID, "protocols", registry.Order(), "mqtt", url)
	<-ctx.Done()
	log.Info("shutting down", "grace", cfg.Gateway.ShutdownGrace, "connections", srv.Connections())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.ShutdownGrace)
	defer cancel()
	var errs []error
	if err := srv.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
	}
	if shipDone != nil {
		<-shipDone // its dials end with the server
	}
	locals.Close() // their last frames still reach the bridge
	if err := bridge.Close(shutdownCtx); err != nil {
		errs = append(errs, err)
	}
	log.Info("stopped")
	return errors.Join(errs...)
}
