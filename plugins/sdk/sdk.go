// Package sdk is what a protocol plugin imports. A plugin author writes a
// protocols.Protocol, exactly as for a built-in protocol, and hands it to
// Serve in main:
//
//	func main() { sdk.Serve(myprotocol.New()) }
//
// The gateway starts the binary, checks its checksum and handshake, and
// runs one session per device connection through it. The SDK keeps the
// contract a built-in protocol has: a panic in a session closes only its
// connection, no Outlet method waits on the network (Attach waits, boundedly,
// for the gateway's answer), and NewSession's error, GoingAway and the TLS
// state cross the process boundary. plugins/README.md is the tutorial.
//
// It depends on the protocols contract and plugins/proto, never on the
// gateway.
package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-plugin"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// Version is reported to the gateway by Describe; set it from main (for
// example with -ldflags "-X github.com/wsgate/wsgate/plugins/sdk.Version=1.2.0").
var Version = "dev"

// Serve runs the protocols as a wsgate plugin and does not return. It exits
// when the gateway stops the plugin, and also when the gateway process dies
// without doing so, so that no plugin outlives its gateway.
func Serve(ps ...protocols.Protocol) {
	if len(ps) == 0 {
		fmt.Fprintln(os.Stderr, "sdk.Serve: no protocols")
		os.Exit(2)
	}
	srv := &server{protocols: make(map[string]protocols.Protocol)}
	for _, p := range ps {
		srv.protocols[p.Name()] = p
		srv.names = append(srv.names, p.Name())
	}
	go exitWithParent(os.Getppid())
	if os.Getenv("GOGC") == "" {
		// A plugin's live heap is a few MiB while every message allocates
		// its events and actions: at the default GOGC the collector runs
		// so often that it costs a plugin about a third of its throughput. A
		// higher target trades a few MiB for that; GOGC overrides it.
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// Half the cores, as the gateway takes by default (runtime.max_procs):
		// a plugin shares the machine with the gateway and the broker, and
		// its events cross goroutines whose hand-overs cost more across
		// cores: on one core of two the OCPP example spent about a third
		// less CPU a message (docs/BENCHMARKS.md); GOMAXPROCS overrides it.
		runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)/2))
	}
	if os.Getenv(pluginpb.Handshake.MagicCookieKey) == pluginpb.Handshake.MagicCookieValue {
		// Started by a gateway (go-plugin itself explains to a user who
		// runs the binary by hand what it is for).
		conn, err := linkConn()
		if err != nil {
			fmt.Fprintln(os.Stderr, "wsgate plugin:", err)
			os.Exit(2)
		}
		go func() {
			err := srv.serveLink(conn)
			// The gateway closed the link, which it does only to stop
			// this process, or it is gone: nobody is served any more.
			if err != nil && !errors.Is(err, io.EOF) {
				Logger().Error("the link to the gateway failed", "err", err.Error())
			}
			os.Exit(0)
		}()
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: pluginpb.Handshake,
		Plugins:         plugin.PluginSet{pluginpb.PluginName: &pluginpb.GRPCPlugin{Impl: srv}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
	os.Exit(0)
}

// linkConn is the plugin's end of the link, which the gateway passed it.
func linkConn() (net.Conn, error) {
	f, err := pluginpb.LinkFile()
	if err != nil {
		return nil, err
	}
	defer f.Close() // FileConn has its own copy
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("the link from the gateway: %w", err)
	}
	return conn, nil
}

// exitWithParent ends the plugin when its parent, the gateway, is gone: a
// gateway killed with SIGKILL cannot stop its plugins itself.
func exitWithParent(parent int) {
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			os.Exit(0)
		}
	}
}

// stderr is the process's standard error as the gateway reads it: once
// Serve runs, go-plugin points os.Stderr elsewhere.
var stderr = os.Stderr

// Logger returns a logger whose lines reach the gateway's log, at their
// level and with the plugin's name. Write nothing else to stdout: it is
// the go-plugin handshake channel.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		// go-plugin parses hclog's JSON keys on the gateway side.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				a.Key = "@timestamp"
				if t, ok := a.Value.Any().(time.Time); ok {
					a.Value = slog.StringValue(t.Format(hclogTimeFormat))
				}
			case slog.LevelKey:
				a.Key = "@level"
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(hclogLevel(l))
				}
			case slog.MessageKey:
				a.Key = "@message"
			}
			return a
		},
	}))
}

// hclogTimeFormat is the only timestamp layout go-plugin parses.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

func hclogLevel(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "error"
	case l >= slog.LevelWarn:
		return "warn"
	case l >= slog.LevelInfo:
		return "info"
	}
	return "debug"
}

// server serves the gRPC contract for the protocols of this plugin.
type server struct {
	pluginpb.UnimplementedProtocolServer
	protocols map[string]protocols.Protocol
	names     []string
}

func (s *server) Describe(context.Context, *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	return &pluginpb.DescribeResponse{Protocols: s.names, Version: Version}, nil
}
