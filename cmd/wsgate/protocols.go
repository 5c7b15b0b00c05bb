package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/auth"
	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// builtin is an enabled built-in protocol, provisioned from its table.
type builtin struct {
	name     string
	config   module.Config
	protocol protocols.Protocol
}

// builtinNames are the protocols compiled in; plugins may not take them.
func builtinNames() []string { return module.Names() }

// startProtocols provisions the enabled built-in protocols, in the
// configured order, and registers them; plugins register theirs next.
func (g *gatewayRun) startProtocols(context.Context) error {
	registry, err := protocols.NewRegistry(g.cfg.Protocols.Order)
	if err != nil {
		return err
	}
	env := module.Env{Settings: g.cfg.Settings(), Log: g.log}
	for _, name := range g.cfg.Protocols.Order {
		c, ok := g.cfg.Protocols.Modules[name]
		if !ok {
			continue // a plugin's
		}
		p, err := c.New(env)
		if err != nil {
			return fmt.Errorf("protocol %s: %w", name, err)
		}
		if err := registry.Register(p, "builtin"); err != nil {
			return err
		}
		g.protocols = append(g.protocols, builtin{name: name, config: c, protocol: p})
	}
	g.registry = registry
	return nil
}

// tlsProvider returns the enabled protocol among names (all enabled ones
// when names is empty) that brings a TLS identity of its own, if any.
func (g *gatewayRun) tlsProvider(names []string) (module.TLSProvider, bool) {
	for _, b := range g.protocols {
		if len(names) > 0 && !slices.Contains(names, b.name) {
			continue
		}
		if p, ok := b.protocol.(module.TLSProvider); ok {
			return p, true
		}
	}
	return nil, false
}

// gatewayOptions are the server's settings: the [[listeners]] entries and
// the listeners the enabled protocols bring.
func (g *gatewayRun) gatewayOptions() gateway.Options {
	ws := g.cfg.WebSocket
	opts := gateway.Options{
		GatewayID:        g.cfg.Gateway.ID,
		Policy:           protocols.Policy(g.cfg.Protocols.Policy),
		PingInterval:     ws.PingInterval,
		PongTimeout:      ws.PongTimeout,
		CloseTimeout:     ws.CloseTimeout,
		WriteTimeout:     ws.WriteTimeout,
		HandshakeTimeout: ws.HandshakeTimeout,
		MaxMessage:       ws.MaxMessage,
		SendQueue:        ws.SendQueue,
		CommandTimeout:   g.cfg.Gateway.CommandTimeout,
		AllowedOrigins:   ws.AllowedOrigins,
		Limits:           limits(g.cfg.WebSocket),
		Access:           access(g.cfg.Auth),
	}
	for _, l := range g.cfg.Listeners {
		gl := gateway.Listener{
			Address: l.Address, Path: l.Path, Protocols: l.Protocols, Fallback: l.Fallback,
			TLSCert: l.TLSCert, TLSKey: l.TLSKey, Compression: l.Compression, CompressMin: l.CompressMin,
			ClientCA: l.ClientCA, DeviceIDFrom: auth.IDFrom(l.DeviceID),
		}
		if l.Auth != config.AuthNone {
			gl.Auth = gateway.AuthMode(l.Auth)
			if len(gl.Protocols) == 0 {
				// The protocols that authenticate devices themselves are
				// not served where the gateway does it.
				for _, name := range g.cfg.Protocols.Order {
					if m, ok := module.Lookup(name); !ok || !m.SelfAuthenticating {
						gl.Protocols = append(gl.Protocols, name)
					}
				}
			}
		}
		if _, ok := g.tlsProvider(l.Protocols); ok && l.TLSCert != "" {
			gl.RequestClientCert = true // so that such a protocol can admit its clients
		}
		opts.Listeners = append(opts.Listeners, gl)
	}
	for _, b := range g.protocols {
		lc, ok := b.config.(module.Listening)
		if !ok {
			continue
		}
		for _, ml := range lc.Listeners() {
			gl := gateway.Listener{
				Address: ml.Address, Path: ml.Path, Protocols: ml.Protocols, Fallback: ml.Fallback,
				PingInterval: ml.PingInterval, PongTimeout: ml.PongTimeout, MaxMessage: ml.MaxMessage,
			}
			if p, ok := b.protocol.(module.TLSProvider); ok && ml.TLS {
				gl.TLSConfig = p.ListenerTLS()
			}
			opts.Listeners = append(opts.Listeners, gl)
		}
	}
	return opts
}

// gatewayCommands routes the commands to the gateway itself
// ({prefix}/$gateway/{id}/cmd/{name}) to the protocols that take them.
type gatewayCommands map[string]module.GatewayCommander

func (g *gatewayRun) gatewayCommands() gatewayCommands {
	commands := gatewayCommands{}
	for _, b := range g.protocols {
		if gc, ok := b.protocol.(module.GatewayCommander); ok {
			for _, name := range gc.GatewayCommands() {
				commands[name] = gc
			}
		}
	}
	return commands
}

// GatewayCommand implements mqttbridge.GatewayCommander.
func (gc gatewayCommands) GatewayCommand(name string, args json.RawMessage) (any, error) {
	c, ok := gc[name]
	if !ok {
		return nil, fmt.Errorf("unknown command %q (the gateway takes %s)", name, strings.Join(slices.Sorted(maps.Keys(gc)), ", "))
	}
	return c.GatewayCommand(name, args)
}

// adminExtras are the admin routes, metrics and peers to pair that the
// protocols bring.
func (g *gatewayRun) adminExtras() (routes []module.AdminRoute, collectors []prometheus.Collector, pairers []module.Pairer) {
	for _, b := range g.protocols {
		if r, ok := b.protocol.(module.AdminRouter); ok {
			routes = append(routes, r.AdminRoutes()...)
		}
		if c, ok := b.protocol.(prometheus.Collector); ok {
			collectors = append(collectors, c)
		}
		if p, ok := b.protocol.(module.Pairer); ok {
			pairers = append(pairers, p)
		}
	}
	return routes, collectors, pairers
}

// runnerComponents start the protocols' background work once the server
// runs (they dial through it): one component for each enabled built-in
// protocol, which does nothing unless the protocol is a module.Runner.
func (g *gatewayRun) runnerComponents() []component {
	var cs []component
	for _, name := range g.cfg.Protocols.Order {
		if _, ok := g.cfg.Protocols.Modules[name]; !ok {
			continue // a plugin's
		}
		cs = append(cs, component{
			name: "protocol " + name,
			start: func(ctx context.Context) error {
				if r, ok := g.runner(name); ok {
					return r.Start(ctx, serverHost{srv: g.server, mdns: g.responder()})
				}
				return nil
			},
			stop: func(ctx context.Context) error {
				if r, ok := g.runner(name); ok {
					return r.Stop(ctx)
				}
				return nil
			},
		})
	}
	return cs
}

// runner returns the enabled protocol name if it has background work.
func (g *gatewayRun) runner(name string) (module.Runner, bool) {
	for _, b := range g.protocols {
		if b.name == name {
			r, ok := b.protocol.(module.Runner)
			return r, ok
		}
	}
	return nil, false
}

// serverHost lets protocols dial through the WebSocket server and
// announce on the gateway's mDNS responder.
type serverHost struct {
	srv  *gateway.Server
	mdns *mdns.Responder
}

func (h serverHost) MDNS() *mdns.Responder { return h.mdns }

func (h serverHost) Dial(ctx context.Context, opts module.DialOptions, p protocols.Protocol) error {
	return h.srv.Dial(ctx, gateway.DialOptions{
		URL: opts.URL, TLSConfig: opts.TLSConfig, PingInterval: opts.PingInterval, PongTimeout: opts.PongTimeout,
		MaxMessage: opts.MaxMessage,
	}, p)
}

var _ module.Host = serverHost{}

// limits are the WebSocket limits of the configuration.
func limits(ws config.WebSocket) gateway.Limits {
	return gateway.Limits{
		MaxConnections: ws.MaxConnections, MaxPerAddress: ws.MaxConnectionsPerAddress,
		MessageRate: ws.MessageRate, MessageBurst: ws.MessageBurst, RatePolicy: gateway.RatePolicy(ws.MessageRatePolicy),
	}
}

// access is the device authentication and access rules of the
// configuration.
func access(a config.Auth) gateway.Access {
	return gateway.Access{Tokens: a.TokenRules(), ACL: a.ACLRules(), Throttle: a.ThrottleOptions()}
}
