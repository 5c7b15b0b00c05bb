package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const mqttTimeout = 10 * time.Second // connect, subscribe, disconnect

// subscriber receives the load messages from the broker and keeps the
// statistics: per-device seqs (loss, duplicates, reordering) and end-to-end
// latency from the send time in each payload. With several MQTT connections
// (-subscribers) each takes a fixed share of the devices, subscribed by exact
// topic, so every device's messages still arrive on one connection in order.
type subscriber struct {
	clients  []mqtt.Client
	shards   []*subShard
	trackers []seqTracker // device i belongs to shard i % len(shards)
	prefix   string       // "{prefix}/"
	idPrefix string

	warmupUntil atomic.Int64 // Unix nanos: earlier sends stay out of the latencies
}

// subShard is what one subscriber connection received.
type subShard struct {
	mu       sync.Mutex
	lat      *latencies
	received uint64 // deliveries, duplicates included
	distinct uint64
	invalid  uint64 // deliveries that are not load messages of this run
	last     time.Time
}

// subStats is a snapshot of the subscriber's counts.
type subStats struct {
	received, distinct, dup, reordered, invalid uint64
	p50, p99, max                               time.Duration
	last                                        time.Time
}

// subscribeBatch is the most topic filters sent in one SUBSCRIBE.
const subscribeBatch = 256

// startSubscriber connects -subscribers clients to the broker and subscribes
// them to the topics of n devices sending up to limit seqs each: one client
// takes {prefix}/+/load, several split the exact topics between them. It
// returns once the broker granted every subscription.
func startSubscriber(cfg *config, n int, limit uint64) (*subscriber, error) {
	k := min(cfg.subscribers, n)
	s := &subscriber{
		prefix:   cfg.prefix + "/",
		idPrefix: cfg.idPrefix,
		trackers: make([]seqTracker, n),
	}
	for i := range s.trackers {
		s.trackers[i].limit = limit
	}
	samples := int(min(uint64(n)*limit, maxSamples) / uint64(k))
	for i := range k {
		sh := &subShard{lat: newLatencies(max(samples, 1))}
		s.shards = append(s.shards, sh)
		opts := mqtt.NewClientOptions().
			AddBroker(cfg.broker).
			SetClientID(fmt.Sprintf("wsload-sub-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, i)).
			SetCleanSession(true).
			SetAutoReconnect(false).
			SetConnectRetry(false).
			SetConnectTimeout(mqttTimeout).
			SetOrderMatters(true) // one goroutine handles deliveries: no per-message goroutine
		c := mqtt.NewClient(opts)
		if err := wait(c.Connect()); err != nil {
			s.close()
			return nil, fmt.Errorf("%w: subscriber: connect to %s: %w", errSetup, cfg.broker, err)
		}
		s.clients = append(s.clients, c)
		handler := func(_ mqtt.Client, m mqtt.Message) { s.handle(i, m) }
		filters := make(map[string]byte)
		if k == 1 {
			filters[cfg.prefix+"/+/"+channel] = cfg.qos
		}
		for dev := i; k > 1 && dev < n; dev += k {
			filters[cfg.prefix+"/"+cfg.deviceID(dev)+"/"+channel] = cfg.qos
			if len(filters) == subscribeBatch || dev+k >= n {
				if err := subscribe(c, filters, handler); err != nil {
					s.close()
					return nil, err
				}
				clear(filters)
			}
		}
		if k == 1 {
			if err := subscribe(c, filters, handler); err != nil {
				s.close()
				return nil, err
			}
		}
	}
	return s, nil
}

// subscribe subscribes to filters and checks that the broker granted each.
func subscribe(c mqtt.Client, filters map[string]byte, handler mqtt.MessageHandler) error {
	tok := c.SubscribeMultiple(filters, handler)
	if err := wait(tok); err != nil {
		return fmt.Errorf("%w: subscriber: subscribe: %w", errSetup, err)
	}
	for topic, granted := range tok.(*mqtt.SubscribeToken).Result() {
		if granted > 1 {
			return fmt.Errorf("%w: subscriber: the broker refused the subscription to %s (code %#x)", errSetup, topic, granted)
		}
	}
	return nil
}

// wait waits for an MQTT token for mqttTimeout.
func wait(tok mqtt.Token) error {
	if !tok.WaitTimeout(mqttTimeout) {
		return errors.New("timed out")
	}
	return tok.Error()
}

// handle takes one delivery to shard k; paho calls it from one goroutine
// per connection.
func (s *subscriber) handle(k int, m mqtt.Message) {
	now := time.Now()
	dev, okDev := s.device(m.Topic())
	seq, sent, okPayload := parsePayload(m.Payload())
	sh := s.shards[k]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.received++
	sh.last = now
	if !okDev || !okPayload || dev%len(s.shards) != k {
		sh.invalid++
		return
	}
	tr := &s.trackers[dev]
	before := tr.distinct
	if !tr.observe(seq) {
		sh.invalid++
		return
	}
	if tr.distinct == before {
		return // a duplicate: its latency would count twice
	}
	sh.distinct++
	if sent >= s.warmupUntil.Load() {
		sh.lat.add(time.Duration(now.UnixNano() - sent))
	}
}

// device is the index of the device that published on topic, from
// {prefix}/{id-prefix}{n}/load.
func (s *subscriber) device(topic string) (int, bool) {
	rest, ok := strings.CutPrefix(topic, s.prefix)
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutPrefix(rest, s.idPrefix)
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, "/"+channel)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n >= len(s.trackers) || strconv.Itoa(n) != num {
		return 0, false
	}
	return n, true
}

// drain waits until distinct messages reach expected, nothing has arrived
// for idle, or ctx ends.
func (s *subscriber) drain(ctx context.Context, expected uint64, idle time.Duration) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		st := s.counts()
		if st.distinct >= expected {
			return
		}
		last := st.last
		if last.Before(start) {
			last = start
		}
		if time.Since(last) >= idle {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// finalDrain is how long the subscriber still waits for messages in flight
// when the run was stopped (by -duration or a signal) before it drained.
const finalDrain = time.Second

// drainAfter drains the subscriber after the sending stopped: within ctx,
// or for finalDrain at most when ctx has already ended, so that messages in
// flight when a run is cut short are not counted as lost.
func drainAfter(ctx context.Context, s *subscriber, expected uint64, idle time.Duration) {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), finalDrain)
		defer cancel()
	}
	s.drain(ctx, expected, idle)
}

// counts sums the shards' counters (not the trackers' or latencies).
func (s *subscriber) counts() subStats {
	var st subStats
	for _, sh := range s.shards {
		sh.mu.Lock()
		st.received += sh.received
		st.distinct += sh.distinct
		st.invalid += sh.invalid
		if sh.last.After(st.last) {
			st.last = sh.last
		}
		sh.mu.Unlock()
	}
	return st
}

// progress is the number of deliveries so far.
func (s *subscriber) progress() uint64 { return s.counts().received }

// stats returns the counts and latency percentiles so far. Call it once the
// deliveries are over: it locks every shard while it reads the trackers.
func (s *subscriber) stats() subStats {
	for _, sh := range s.shards {
		sh.mu.Lock()
		defer sh.mu.Unlock()
	}
	all := newLatencies(maxSamples)
	var st subStats
	for _, sh := range s.shards {
		st.received += sh.received
		st.distinct += sh.distinct
		st.invalid += sh.invalid
		if sh.last.After(st.last) {
			st.last = sh.last
		}
		all.merge(sh.lat)
	}
	for i := range s.trackers {
		st.dup += s.trackers[i].dup
		st.reordered += s.trackers[i].reordered
	}
	ps, maxD := all.percentiles(0.50, 0.99)
	st.p50, st.p99, st.max = ps[0], ps[1], maxD
	return st
}

// lost is how many of the seqs each device sent (sent[i] of device i,
// numbered from 1) never arrived.
func (s *subscriber) lost(sent []uint64) uint64 {
	for _, sh := range s.shards {
		sh.mu.Lock()
		defer sh.mu.Unlock()
	}
	var n uint64
	for i, k := range sent {
		n += s.trackers[i].lost(k)
	}
	return n
}

func (s *subscriber) close() { disconnectAll(s.clients) }
