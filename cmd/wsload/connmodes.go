package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// settleTime is how long churn mode waits after its last cycle before it
// reads the gateway's figures again: the gateway may take up to a second to
// close a connection (it drains what the client still sends), so one second
// would catch the last closes still under way.
const settleTime = 3 * time.Second

// runIdle opens -devices connections, says hello on each and holds them
// until -duration has passed since the start, then reports how many
// connected and what they cost the gateway.
func runIdle(parent context.Context, cfg *config, stderr io.Writer) (*summary, error) {
	begin := time.Now()
	ctx, cancel := context.WithTimeout(parent, cfg.duration)
	defer cancel()
	pr := newProbe(cfg, stderr)
	before := pr.read()

	var mu sync.Mutex
	lat := newLatencies(min(cfg.devices, maxSamples))
	devs, failed, err := connectDevices(ctx, cfg, true, stderr, func(d time.Duration) {
		mu.Lock()
		lat.add(d)
		mu.Unlock()
	})
	connectTime := time.Since(begin)
	connected := countDevices(devs)
	if connected == 0 && parent.Err() == nil {
		return nil, fmt.Errorf("%w: no device could connect to %s: %w", errSetup, cfg.url, err)
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "wsload: %d connections failed, the first: %v\n", failed, err)
	}
	fmt.Fprintf(stderr, "wsload: %d connections in %.2fs; holding them until %v have passed\n", connected, connectTime.Seconds(), cfg.duration)
	connectedReading := pr.read()

	stop := progress(stderr, begin, func() string {
		return fmt.Sprintf("holding, dropped=%d", countLost(devs))
	})
	<-ctx.Done()
	stop()
	after := pr.read()
	dropped := countLost(devs)
	closeDevices(devs, cfg.concurrency)

	ps, maxD := lat.percentiles(0.50, 0.99)
	var perConn float64
	if connected > 0 && before.rssKiB > 0 && after.rssKiB > 0 {
		perConn = float64(after.rssKiB-before.rssKiB) / float64(connected)
	}
	sum := &summary{}
	sum.str("mode", cfg.mode).int("devices", int64(cfg.devices)).int("connected", int64(connected)).
		int("failed", int64(failed)).int("dropped", int64(dropped)).float("connect_s", connectTime.Seconds(), 2).
		ms("p50_ms", ps[0]).ms("p99_ms", ps[1]).ms("max_ms", maxD).
		int("rss_before_kib", before.rssKiB).int("rss_connected_kib", connectedReading.rssKiB).
		int("rss_after_kib", after.rssKiB).float("kib_per_conn", perConn, 2).
		int("goroutines_before", before.goroutines).int("goroutines_after", after.goroutines).
		int("fds_before", before.fds).int("fds_after", after.fds).
		uint("nofile", openFileLimit()).float("elapsed_s", time.Since(begin).Seconds(), 2)
	return sum, nil
}

func countDevices(devs []*device) int {
	n := 0
	for _, d := range devs {
		if d != nil {
			n++
		}
	}
	return n
}

// countLost is the number of connections the gateway ended.
func countLost(devs []*device) int {
	n := 0
	for _, d := range devs {
		if d != nil && d.lost() {
			n++
		}
	}
	return n
}

// runChurn runs -cycles cycles of connect, hello, one pub, bye and close
// with -concurrency workers. Worker w is device {id-prefix}{w}; its pubs carry
// seq 1, 2, ... across its cycles, so the subscriber counts loss as usual.
func runChurn(parent context.Context, cfg *config, stderr io.Writer) (*summary, error) {
	ctx, cancel := context.WithTimeout(parent, cfg.duration)
	defer cancel()

	var sub *subscriber
	if cfg.broker != "" {
		var err error
		if sub, err = startSubscriber(cfg, cfg.concurrency, uint64(cfg.cycles)); err != nil {
			return nil, err
		}
		defer sub.close()
	}
	pr := newProbe(cfg, stderr)
	before := pr.read()

	opt := dialOptions{url: cfg.url, subprotocol: cfg.subprotocol, tls: cfg.tls}
	var next, ok, failed atomic.Int64
	sent := make([]uint64, cfg.concurrency) // worker w's pubs written; only w touches sent[w]
	var mu sync.Mutex
	lat := newLatencies(min(cfg.cycles, maxSamples))
	var firstErr error
	start := time.Now()
	if sub != nil {
		sub.warmupUntil.Store(start.Add(cfg.warmup).UnixNano())
	}
	stop := progress(stderr, start, func() string {
		line := fmt.Sprintf("cycles=%d errors=%d", ok.Load(), failed.Load())
		if sub != nil {
			line += fmt.Sprintf(" received=%d", sub.progress())
		}
		return line
	})
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= cfg.cycles {
					return
				}
				t := time.Now()
				wrote, err := churnCycle(ctx, cfg, opt, w, cfg.source(k), sent[w]+1)
				if wrote {
					sent[w]++
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
				} else {
					lat.add(time.Since(t))
				}
				mu.Unlock()
				if err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	cyclesEnd := time.Now()
	var totalSent uint64
	for _, n := range sent {
		totalSent += n
	}
	if sub != nil {
		drainAfter(ctx, sub, totalSent, cfg.drain)
	}
	stop()
	if firstErr != nil {
		fmt.Fprintf(stderr, "wsload: %d cycles failed, the first: %v\n", failed.Load(), firstErr)
	}
	if ok.Load() == 0 && firstErr != nil {
		return nil, fmt.Errorf("%w: no cycle succeeded: %w", errSetup, firstErr)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "wsload: stopped by -duration %v after %d cycles\n", cfg.duration, ok.Load()+failed.Load())
	}
	if wait := settleTime - time.Since(cyclesEnd); wait > 0 && parent.Err() == nil {
		time.Sleep(wait)
	}
	after := pr.read()

	var st subStats
	var lost uint64
	if sub != nil {
		st = sub.stats()
		lost = sub.lost(sent)
	}
	ps, maxD := lat.percentiles(0.50, 0.99)
	elapsed := cyclesEnd.Sub(start)
	sum := &summary{}
	sum.str("mode", cfg.mode).int("concurrency", int64(cfg.concurrency)).int("qos", int64(cfg.qos)).
		int("size", int64(cfg.size)).int("cycles", ok.Load()).int("errors", failed.Load()).
		uint("sent", totalSent).uint("received", st.received).uint("lost", lost).uint("dup", st.dup).
		float("cycles_per_s", rate(uint64(ok.Load()), elapsed), 1).
		ms("p50_ms", ps[0]).ms("p99_ms", ps[1]).ms("max_ms", maxD).
		int("rss_before_kib", before.rssKiB).int("rss_after_kib", after.rssKiB).
		int("goroutines_before", before.goroutines).int("goroutines_after", after.goroutines).
		int("fds_before", before.fds).int("fds_after", after.fds).
		float("elapsed_s", elapsed.Seconds(), 2)
	return sum, nil
}

// churnCycle connects as worker w's device, publishes seq once (waiting
// for the ack at QoS 1), says bye and closes. wrote reports whether the pub
// was written, so the next cycle uses the next seq.
func churnCycle(ctx context.Context, cfg *config, opt dialOptions, w int, src netip.Addr, seq uint64) (wrote bool, err error) {
	d, err := dialDevice(ctx, opt, cfg.deviceID(w), src, 1)
	if err != nil {
		return false, err
	}
	defer d.close(time.Now().Add(closeTimeout))
	pctx, cancel := context.WithTimeout(ctx, writeTimeout) // bounds the wait for the ack
	defer cancel()
	d.run(pctx, plan{first: seq, count: 1, qos: cfg.qos, size: cfg.size, inflight: 1})
	c := total([]publisher{d})
	switch {
	case c.sent == 0:
		return false, fmt.Errorf("device %s: the pub was not written", d.id)
	case cfg.qos == 1 && c.acked == 0:
		return true, fmt.Errorf("device %s: pub seq %d: no ack (nacks %d, errors %d)", d.id, seq, c.nacked, c.errors)
	case c.errors > 0:
		return true, fmt.Errorf("device %s: pub seq %d: the gateway answered with an error", d.id, seq)
	}
	return true, nil
}
