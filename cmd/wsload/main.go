// Command wsload is the load generator and device simulator for wsgate's
// benchmarks and soak tests. It opens WebSocket connections that speak the
// `done` protocol, publishes numbered messages through the gateway, and
// measures on the MQTT side what arrived: count, loss and duplicates by seq,
// reordering and end-to-end latency.
//
//	wsload -mode throughput -devices 10 -count 10000 -size 200 -qos 0
//	wsload -mode latency -devices 100 -rate 2000 -count 600 -qos 1
//	wsload -mode direct -devices 10 -count 10000 -size 200 -qos 0   # the broker alone: the ceiling
//	wsload -mode idle -devices 20000 -duration 60s -pid $(pidof wsgate)
//	wsload -mode churn -cycles 5000 -concurrency 32 -metrics http://127.0.0.1:9180/metrics
//
// Progress goes to stderr; exactly one summary line of key=value pairs goes
// to stdout at the end (see README.md for every key). Every mode stops after
// -duration at the latest (plus a few seconds to close its connections).
//
// Exit status: 0 when the run completed, even with loss (it is a
// measurement); 1 when it could not start (no connection to the gateway or
// the broker); 2 on a usage error.
//
// wsload is a client of the gateway like any device: it imports nothing of
// the gateway's packages, only the WebSocket and MQTT libraries.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errSetup marks failures that stop a run before it measured anything:
// the gateway or the broker cannot be reached, the message does not fit.
var errSetup = errors.New("setup failed")

// run executes one load run and returns the process exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		return 2
	}
	raiseOpenFileLimit(cfg.connections(), stderr)
	warnPortRange(cfg, stderr)

	var sum *summary
	switch cfg.mode {
	case modeIdle:
		sum, err = runIdle(ctx, cfg, stderr)
	case modeChurn:
		sum, err = runChurn(ctx, cfg, stderr)
	default:
		sum, err = runMessages(ctx, cfg, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "wsload: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, sum.String())
	return 0
}
