package main

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/gateway/router"
)

// reload re-reads the configuration file and applies, without dropping
// the devices that are connected, what can change while wsgate runs: the
// log level, the WebSocket limits, routes, TLS certificates and CA
// bundles, device tokens and access rules (sessions they no longer admit
// are closed with 1008) and the external broker's credentials. What needs a restart is named in the log
// and left as it runs. An invalid file changes nothing: every problem is
// logged, and returned.
func (g *gatewayRun) reload() (problems []string) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	log := g.log.With("component", "reload")
	if g.path == "" {
		log.Info("nothing to reload: wsgate runs on its defaults, without a configuration file")
		return nil
	}
	cfg, err := config.Load(g.path)
	if err != nil {
		var ps config.Problems
		if !errors.As(err, &ps) {
			log.Error("configuration not reloaded; the running one stays", "err", err)
			return []string{err.Error()}
		}
		for _, p := range ps {
			log.Error("configuration not reloaded; the running one stays", "problem", p.String())
			problems = append(problems, p.String())
		}
		return problems
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "problem", w.String())
	}
	old := g.cfg

	// Routes first: the one change that can still be refused (a route to a
	// local device that is not running), before anything is applied.
	if !reflect.DeepEqual(cfg.Routes, old.Routes) {
		var routes []router.Route
		for _, r := range cfg.Routes {
			routes = append(routes, r.RouterRoute())
		}
		if err := g.router.SetRoutes(routes, g.locals.Receiver); err != nil {
			log.Error("configuration not reloaded; the running one stays", "err", err)
			return []string{"routes: " + err.Error()}
		}
	}
	var applied []string
	if cfg.Log.Level != old.Log.Level {
		g.level.Set(logLevel(cfg.Log.Level))
		applied = append(applied, "log.level")
	}
	if cfg.Runtime != old.Runtime {
		applyRuntime(cfg.Runtime, os.Getenv, os.DirFS("/"), log)
		applied = append(applied, "runtime")
	}
	if limits(cfg.WebSocket) != limits(old.WebSocket) {
		g.server.SetLimits(limits(cfg.WebSocket))
		applied = append(applied, "websocket limits")
	}
	if !reflect.DeepEqual(cfg.Routes, old.Routes) {
		applied = append(applied, "routes")
	}
	if cfg.MQTT.URL != "" && (cfg.MQTT.Username != old.MQTT.Username || cfg.MQTT.Password != old.MQTT.Password) {
		g.bridge.SetCredentials(cfg.MQTT.Username, cfg.MQTT.Password)
		applied = append(applied, "mqtt credentials (from the next connection to the broker)")
	}
	if err := g.server.ReloadCertificates(); err != nil {
		log.Warn("TLS certificates not reloaded; the previous ones stay in service", "err", err)
		problems = append(problems, err.Error())
	}
	// After the certificates: sessions whose client certificate no longer
	// chains to a reloaded CA bundle are closed with the revoked tokens.
	if err := g.server.SetAccess(access(cfg.Auth)); err != nil {
		log.Error("device tokens and access rules not reloaded", "err", err)
		problems = append(problems, err.Error())
	} else if !reflect.DeepEqual(cfg.Auth, old.Auth) {
		applied = append(applied, "auth")
	}

	restart := needsRestart(old, cfg)
	if len(restart) > 0 {
		log.Warn("changed in the file but applied only at the next start", "sections", restart)
	}
	// What was not applied stays as it runs, so that the next reload
	// compares with what is in effect.
	next := old
	next.Log.Level, next.Routes, next.Warnings = cfg.Log.Level, cfg.Routes, cfg.Warnings
	setLimits(&next.WebSocket, cfg.WebSocket)
	next.MQTT.Username, next.MQTT.Password = cfg.MQTT.Username, cfg.MQTT.Password
	next.Auth = cfg.Auth
	next.Runtime = cfg.Runtime
	g.cfg = next
	log.Info("configuration reloaded", "file", g.path, "applied", applied)
	return problems
}

// setLimits copies the limits of from into to.
func setLimits(to *config.WebSocket, from config.WebSocket) {
	to.MaxConnections, to.MaxConnectionsPerAddress = from.MaxConnections, from.MaxConnectionsPerAddress
	to.MessageRate, to.MessageBurst, to.MessageRatePolicy = from.MessageRate, from.MessageBurst, from.MessageRatePolicy
}

// needsRestart names the top-level sections of the configuration that
// differ between a and b in what a reload does not apply.
func needsRestart(a, b config.Config) []string {
	frozen := func(c config.Config) config.Config {
		c.Log.Level, c.Routes, c.Warnings, c.DeviceTables = "", nil, nil, nil
		c.Runtime = config.Runtime{}
		setLimits(&c.WebSocket, config.WebSocket{})
		c.MQTT.Username, c.MQTT.Password = "", ""
		c.Auth = config.Auth{ThrottleAfter: c.Auth.ThrottleAfter, ThrottleBase: c.Auth.ThrottleBase, ThrottleMax: c.Auth.ThrottleMax}
		return c
	}
	a, b = frozen(a), frozen(b)
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var sections []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			f := va.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				name = strings.ToLower(f.Name)
			}
			sections = append(sections, name)
		}
	}
	return slices.Clip(sections)
}
