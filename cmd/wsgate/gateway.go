package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/done"
)

// buildRegistry registers the built-in protocols in the configured order.
func buildRegistry(cfg config.Config) (*protocols.Registry, error) {
	registry, err := protocols.NewRegistry(cfg.Protocols.Order)
	if err != nil {
		return nil, err
	}
	if err := registry.Register(done.New(cfg.Protocols.Done), "builtin"); err != nil {
		return nil, err
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
		opts.Listeners = append(opts.Listeners, gateway.Listener(l))
	}
	return opts
}

// runGateway serves until ctx is cancelled, then shuts down within the
// configured grace period.
func runGateway(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	registry, err := buildRegistry(cfg)
	if err != nil {
		return err
	}
	rt := router.New(sink, log)
	srv, err := gateway.New(gatewayOptions(cfg), registry, rt, log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info("wsgate running", "version", versionString(), "gateway", cfg.Gateway.ID, "protocols", registry.Order())
	<-ctx.Done()
	log.Info("shutting down", "grace", cfg.Gateway.ShutdownGrace, "connections", srv.Connections())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
