package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// publisher is what the message modes drive: a WebSocket device speaking
// done through the gateway, or a paho publisher straight to the broker.
type publisher interface {
	run(ctx context.Context, p plan)
	counts() *counters
}

// runMessages runs the throughput, latency and direct modes: connect every
// publisher, start the subscriber, send -count messages per publisher, drain
// and report.
func runMessages(parent context.Context, cfg *config, stderr io.Writer) (*summary, error) {
	ctx, cancel := context.WithTimeout(parent, cfg.duration)
	defer cancel()

	var sub *subscriber
	if cfg.broker != "" {
		var err error
		if sub, err = startSubscriber(cfg, cfg.devices, uint64(cfg.count)); err != nil {
			return nil, err
		}
		defer sub.close()
	}

	pubs := make([]publisher, cfg.devices)
	var connected, dropped int
	var teardown func()
	if cfg.mode == modeDirect {
		clients, err := dialDirect(ctx, cfg, min(cfg.devices, maxDirectClients))
		if err != nil {
			return nil, err
		}
		teardown = func() { disconnectAll(clients) }
		for i := range pubs {
			pubs[i] = &directPublisher{client: clients[i%len(clients)], topic: cfg.prefix + "/" + cfg.deviceID(i) + "/" + channel}
		}
		connected = cfg.devices
	} else {
		devs, _, err := connectDevices(ctx, cfg, false, stderr, nil)
		for _, d := range devs {
			if d != nil {
				connected++
			}
		}
		if connected == 0 {
			return nil, fmt.Errorf("%w: no device could connect to %s: %w", errSetup, cfg.url, err)
		}
		longest := len(appendPub(nil, channel, uint64(cfg.count), cfg.qos, time.Now().UnixNano(), cfg.size))
		if m := firstDevice(devs).max; m > 0 && longest > m {
			closeDevices(devs, cfg.concurrency)
			return nil, fmt.Errorf("%w: a pub of -size %d is %d bytes, over the gateway's limit of %d", errSetup, cfg.size, longest, m)
		}
		if connected < cfg.devices {
			fmt.Fprintf(stderr, "wsload: %d of %d devices could not connect (%v); going on with %d\n", cfg.devices-connected, cfg.devices, err, connected)
		}
		teardown = func() {
			for _, d := range devs {
				if d != nil && d.refusal.Load() != nil {
					fmt.Fprintf(stderr, "wsload: the gateway refused pubs; the first: %s\n", *d.refusal.Load())
					break
				}
			}
			for _, d := range devs {
				if d != nil && d.lost() {
					if dropped == 0 {
						fmt.Fprintf(stderr, "wsload: device %s lost its connection: %v\n", d.id, d.readErr)
					}
					dropped++
				}
			}
			closeDevices(devs, cfg.concurrency)
		}
		for i, d := range devs {
			if d != nil {
				pubs[i] = d
			}
		}
	}

	// One message every interval per publisher, publishers evenly staggered:
	// -rate messages per second in total.
	var interval, stagger time.Duration
	if cfg.rate > 0 {
		stagger = time.Duration(float64(time.Second) / cfg.rate)
		interval = stagger * time.Duration(connected)
	}
	fmt.Fprintf(stderr, "wsload: %s: %d publishers, %d messages each, qos %d, %d bytes\n", cfg.mode, connected, cfg.count, cfg.qos, cfg.size)
	start := time.Now()
	cpu0, cpuKnown := processCPU()
	if sub != nil {
		sub.warmupUntil.Store(start.Add(cfg.warmup).UnixNano())
	}
	peak := watchPeakRSS(ctx, cfg, stderr)
	var wg sync.WaitGroup
	active := 0
	for _, p := range pubs {
		if p == nil {
			continue
		}
		pl := plan{count: uint64(cfg.count), qos: cfg.qos, size: cfg.size, inflight: cfg.inflight,
			interval: interval, start: start.Add(time.Duration(active) * stagger)}
		active++
		wg.Go(func() { p.run(ctx, pl) })
	}
	stopProgress := progress(stderr, start, func() string {
		c := total(pubs)
		line := fmt.Sprintf("sent=%d acked=%d nacked=%d errors=%d", c.sent, c.acked, c.nacked, c.errors)
		if sub != nil {
			line += fmt.Sprintf(" received=%d", sub.progress())
		}
		return line
	})
	wg.Wait()
	sendEnd := time.Now()

	sent := make([]uint64, len(pubs))
	for i, p := range pubs {
		if p != nil {
			sent[i] = p.counts().sent.Load()
		}
	}
	c := total(pubs)
	if sub != nil {
		drainAfter(ctx, sub, c.sent, cfg.drain)
	}
	stopProgress()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "wsload: stopped by -duration %v\n", cfg.duration)
	}
	c = total(pubs)
	peakKiB := peak()
	ackRTT := newLatencies(maxSamples)
	for _, p := range pubs {
		if d, ok := p.(*device); ok {
			d.mu.Lock()
			ackRTT.merge(d.ackRTT)
			d.mu.Unlock()
		}
	}
	ackPs, _ := ackRTT.percentiles(0.5, 0.99)
	var st subStats
	var lost uint64
	if sub != nil {
		st = sub.stats()
		lost = sub.lost(sent)
	}
	cpu1, _ := processCPU()
	teardown()

	end := sendEnd
	if st.last.After(end) {
		end = st.last
	}
	elapsed := end.Sub(start)
	perSecond := rate(c.sent, elapsed)
	if sub != nil {
		perSecond = rate(st.received, elapsed)
	}
	sum := &summary{}
	sum.str("mode", cfg.mode).int("devices", int64(cfg.devices)).int("connected", int64(connected)).
		int("qos", int64(cfg.qos)).int("size", int64(cfg.size)).float("rate", cfg.rate, 1).
		uint("sent", c.sent).uint("acked", c.acked).uint("nacked", c.nacked).uint("errors", c.errors).
		uint("received", st.received).uint("lost", lost).uint("dup", st.dup).uint("reordered", st.reordered).
		uint("invalid", st.invalid).int("dropped", int64(dropped)).float("msgs_per_s", perSecond, 0).
		ms("p50_ms", st.p50).ms("p99_ms", st.p99).ms("max_ms", st.max).float("elapsed_s", elapsed.Seconds(), 2).
		ms("ack_p50_ms", ackPs[0]).ms("ack_p99_ms", ackPs[1]).int("rss_peak_kib", peakKiB)
	// What the load itself cost: on a machine the gateway and the broker
	// share with it, part of every rate (docs/BENCHMARKS.md).
	messages := c.sent // as the rate counts them
	if sub != nil {
		messages = st.received
	}
	if cpuKnown && messages > 0 {
		sum.float("load_cpu_us_per_msg", float64((cpu1-cpu0).Microseconds())/float64(messages), 1)
	}
	return sum, nil
}

// countsTotal is the sum of the publishers' counters.
type countsTotal struct{ sent, acked, nacked, errors uint64 }

func total(pubs []publisher) countsTotal {
	var t countsTotal
	for _, p := range pubs {
		if p == nil {
			continue
		}
		c := p.counts()
		t.sent += c.sent.Load()
		t.acked += c.acked.Load()
		t.nacked += c.nacked.Load()
		t.errors += c.errors.Load()
	}
	return t
}

// connectDevices dials cfg.devices devices, cfg.concurrency at a time, and
// returns them by index (nil for those that failed), the number of failures
// and the first error. onConnect, when not nil, gets the time each
// successful dial, upgrade and hello took; it may be called concurrently.
func connectDevices(ctx context.Context, cfg *config, small bool, stderr io.Writer, onConnect func(time.Duration)) ([]*device, int, error) {
	opt := dialOptions{url: cfg.url, subprotocol: cfg.subprotocol, small: small, tls: cfg.tls}
	devs := make([]*device, cfg.devices)
	var next, connected, failed atomic.Int64
	var firstErr error
	var once sync.Once
	start := time.Now()
	stop := progress(stderr, start, func() string {
		return fmt.Sprintf("connected=%d failed=%d of %d", connected.Load(), failed.Load(), cfg.devices)
	})
	defer stop()
	var wg sync.WaitGroup
	for range min(cfg.concurrency, cfg.devices) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.devices || ctx.Err() != nil {
					return
				}
				t := time.Now()
				d, err := dialDevice(ctx, opt, cfg.deviceID(i), cfg.source(i), cfg.inflight)
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				if onConnect != nil {
					onConnect(time.Since(t))
				}
				devs[i] = d
				connected.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil && connected.Load() < int64(cfg.devices) {
		firstErr = ctx.Err()
	}
	return devs, int(failed.Load()), firstErr
}

func firstDevice(devs []*device) *device {
	for _, d := range devs {
		if d != nil {
			return d
		}
	}
	return nil
}

// teardownTimeout bounds closing all connections at the end of a run.
const teardownTimeout = 10 * time.Second

// closeDevices says bye on every connection and closes it, n at a time;
// after teardownTimeout the rest are closed without a bye.
func closeDevices(devs []*device, n int) {
	deadline := time.Now().Add(teardownTimeout)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(n, 256), len(devs)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(devs) {
					return
				}
				if devs[i] != nil {
					devs[i].close(deadline)
				}
			}
		})
	}
	wg.Wait()
}

// progress prints line() to stderr every second until the returned function
// is called.
func progress(stderr io.Writer, start time.Time, line func() string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				fmt.Fprintf(stderr, "wsload: %5.1fs %s\n", time.Since(start).Seconds(), line())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}
}

var (
	_ publisher = (*device)(nil)
	_ publisher = (*directPublisher)(nil)
)

// watchPeakRSS samples the gateway's resident memory (-pid or -metrics)
// every 100 ms until the returned function is called, which returns the
// largest sample in KiB; 0 without -pid or -metrics.
func watchPeakRSS(ctx context.Context, cfg *config, stderr io.Writer) func() int64 {
	if cfg.pid <= 0 && cfg.metrics == "" {
		return func() int64 { return 0 }
	}
	pr := newProbe(cfg, stderr)
	ctx, cancel := context.WithCancel(ctx)
	var peak int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, pr.read().rssKiB)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		cancel()
		<-done
		return peak
	}
}
