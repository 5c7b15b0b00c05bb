package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// maxDirectClients caps the MQTT connections of direct mode: up to it every
// device has its own paho client, beyond it devices share them round-robin.
const maxDirectClients = 256

// directPublisher publishes one device's messages straight to the broker,
// on the topic the gateway would use: the ceiling the gateway is measured
// against.
type directPublisher struct {
	counters
	client mqtt.Client
	topic  string
}

func (d *directPublisher) counts() *counters { return &d.counters }

// dialDirect connects n paho clients.
func dialDirect(ctx context.Context, cfg *config, n int) ([]mqtt.Client, error) {
	clients := make([]mqtt.Client, 0, n)
	for i := range n {
		if ctx.Err() != nil {
			disconnectAll(clients)
			return nil, ctx.Err()
		}
		opts := mqtt.NewClientOptions().
			AddBroker(cfg.broker).
			SetClientID(fmt.Sprintf("wsload-pub-%d-%d", os.Getpid(), i)).
			SetCleanSession(true).
			SetAutoReconnect(false).
			SetConnectRetry(false).
			SetConnectTimeout(mqttTimeout)
		c := mqtt.NewClient(opts)
		if err := wait(c.Connect()); err != nil {
			disconnectAll(clients)
			return nil, fmt.Errorf("%w: direct: connect to %s: %w", errSetup, cfg.broker, err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// disconnectAll disconnects the clients in parallel: a quarter of a second
// at most in all.
func disconnectAll(clients []mqtt.Client) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() { c.Disconnect(250) })
	}
	wg.Wait()
}

// run publishes messages 1..p.count like a device does through the gateway,
// keeping at most p.inflight publishes (of either QoS) unfinished.
func (d *directPublisher) run(ctx context.Context, p plan) {
	window := make([]mqtt.Token, p.inflight) // a ring: the token of seq is at seq % inflight
	settle := func(tok mqtt.Token) bool {
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return false
		}
		switch {
		case tok.Error() != nil:
			d.errors.Add(1)
		case p.qos == 1:
			d.acked.Add(1)
		}
		return true
	}
	defer func() {
		for _, tok := range window {
			if tok != nil && !settle(tok) {
				return
			}
		}
	}()
	first := max(p.first, 1)
	for seq := first; seq < first+p.count; seq++ {
		if p.interval > 0 && !sleepUntil(ctx, p.start.Add(time.Duration(seq-first)*p.interval), nil) {
			return
		}
		slot := &window[seq%uint64(p.inflight)]
		if *slot != nil {
			if !settle(*slot) {
				return
			}
			*slot = nil
		}
		if ctx.Err() != nil {
			return
		}
		// paho keeps the payload until it is written: one buffer per message.
		payload := appendPayload(make([]byte, 0, p.size+minPayload), seq, time.Now().UnixNano(), p.size)
		*slot = d.client.Publish(d.topic, p.qos, false, payload)
		d.sent.Add(1)
	}
}

// sleepUntil waits for t; false when ctx ended or stop was closed first (a
// nil stop never is).
func sleepUntil(ctx context.Context, t time.Time, stop <-chan struct{}) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}
