package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// loadConfig reads path, or returns the defaults when path is empty (with
// the secrets the environment gives, WSGATE_ADMIN_TOKEN and the like).
func loadConfig(path string) (config.Config, error) {
	if path == "" {
		return config.Parse("the built-in defaults", "")
	}
	return config.Load(path)
}

// reportConfigError prints a config error, one problem a line.
func reportConfigError(stderr io.Writer, err error) {
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(stderr, p)
		}
		return
	}
	fmt.Fprintln(stderr, "wsgate:", err)
}

func check(path string, stdout, stderr io.Writer) int {
	if path == "" {
		fmt.Fprintln(stderr, "wsgate check: -config FILE is required")
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		reportConfigError(stderr, err)
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", path, len(ps))
		}
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, w)
	}
	if n := len(cfg.Warnings); n > 0 {
		fmt.Fprintf(stdout, "%s: ok, with %d warning(s)\n", path, n)
		return 0
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

// declared stands for a built-in protocol in `wsgate protocols`, which
// describes a configuration without provisioning it (that may make keys).
type declared string

func (d declared) Name() string { return string(d) }

func (d declared) NewSession(context.Context, protocols.SessionInfo, protocols.Outlet) (protocols.Session, error) {
	return nil, errors.New("listing only")
}

func listProtocols(path string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err != nil {
		reportConfigError(stderr, err)
		return 1
	}
	registry, err := protocols.NewRegistry(cfg.Protocols.Order)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate:", err)
		return 1
	}
	for _, name := range builtinNames() {
		if err := registry.Register(declared(name), "builtin"); err != nil {
			fmt.Fprintln(stderr, "wsgate:", err)
			return 1
		}
	}
	// Plugins describe their protocols only when they run.
	host := startPlugins(cfg, registry, newLogger(config.Log{Level: "warn", Format: "text"}, stderr, nil))
	defer host.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PREF\tNAME\tORIGIN\tSTATE\n")
	for i, e := range registry.Entries() {
		pref, state := "-", "disabled"
		if e.Enabled {
			pref, state = fmt.Sprint(i+1), "enabled"
			if !e.Ready {
				state = "unavailable"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", pref, e.Name, e.Origin, state)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "negotiation policy: %s\n\nlisteners:\n", cfg.Protocols.Policy)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	listener := func(scheme, address, path string, served []string, fallback string) {
		if len(served) == 0 {
			served = cfg.Protocols.Order
		}
		line := fmt.Sprintf("  %s://%s%s\t%s", scheme, address, path, strings.Join(served, ", "))
		if fallback != "" {
			line += fmt.Sprintf(" (no offer: %s)", fallback)
		}
		fmt.Fprintln(tw, line)
	}
	for _, l := range cfg.Listeners {
		listener(map[bool]string{false: "ws", true: "wss"}[l.TLSCert != ""], l.Address, l.Path, l.Protocols, l.Fallback)
	}
	for _, name := range cfg.Protocols.Order {
		if lc, ok := cfg.Protocols.Modules[name].(module.Listening); ok {
			for _, l := range lc.Listeners() {
				listener(map[bool]string{false: "ws", true: "wss"}[l.TLS], l.Address, l.Path, l.Protocols, l.Fallback)
			}
		}
	}
	tw.Flush()
	return 0
}

func serve(ctx context.Context, path string, stderr io.Writer) int {
	// SIGHUP re-reads the configuration (systemctl reload, a closed
	// terminal, a log rotation): it must never end the process, so it is
	// caught before anything else can go wrong.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := loadConfig(path)
	if err != nil {
		reportConfigError(stderr, err)
		return 1
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, stderr, level)
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "problem", w.String())
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runGateway(ctx, cfg, runOptions{path: path, log: log, level: level, reloads: hup}); err != nil {
		log.Error("wsgate stopped", "err", err)
		return 1
	}
	return 0
}

// newLogger writes cfg's format at the level of level, which it sets from
// cfg (nil: a level of its own).
func newLogger(cfg config.Log, w io.Writer, level *slog.LevelVar) *slog.Logger {
	if level == nil {
		level = new(slog.LevelVar)
	}
	level.Set(logLevel(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func logLevel(name string) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(name))) // validated by config
	return level
}

// subcommandModules are the built-in protocols that have subcommands.
func subcommandModules() []string {
	var names []string
	for _, m := range module.All() {
		if _, ok := m.NewConfig().(module.Subcommand); ok {
			names = append(names, m.Name)
		}
	}
	return slices.Clip(names)
}

// reloadCommand asks the running gateway, through its admin API, to re-read
// its configuration file, and prints what kept it from applying it.
func reloadCommand(ctx context.Context, path, addr string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(path)
	if err != nil {
		reportConfigError(stderr, err)
		return 1
	}
	if addr == "" {
		addr = cfg.Admin.Address
	}
	if err := (adminClient{addr: addr, token: cfg.Admin.Token}).Call(ctx, http.MethodPost, "/reload", nil); err != nil {
		fmt.Fprintf(stderr, "wsgate reload: %v\n", err)
		fmt.Fprintln(stderr, "(without the admin API, SIGHUP does the same: systemctl reload wsgate, or kill -HUP the gateway's pid)")
		return 1
	}
	fmt.Fprintln(stdout, "configuration reloaded")
	return 0
}
