package main

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// TestFloodingDeviceIsThrottled: with the default message rate, a device
// that writes QoS 1 pubs as fast as it can is held back to its rate, while
// another device's ack round trip stays within 3× its value without the
// flood.
//
// Round trips are medians of many, and the unloaded one counts as at
// least a millisecond: on loopback it is a few hundred microseconds, where
// scheduling noise alone is of the same order.
func TestFloodingDeviceIsThrottled(t *testing.T) {
	ts := testConfig(t, "")
	startInProcess(t, ts.path, ts.wsURL)
	brokertest.Subscribe(t, ts.mqttURL, "wsgate/#") // someone reads what is published

	calm := dialDone(t, ts.wsURL, "calm")
	defer calm.Close()
	seq := 0
	roundTrips := func(n int) time.Duration {
		t.Helper()
		var rtts []time.Duration
		for range n {
			seq++
			start := time.Now()
			if err := calm.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"op":"pub","ch":"t","data":1,"seq":%d}`, seq)); err != nil {
				t.Fatal(err)
			}
			_ = calm.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, msg, err := calm.ReadMessage(); err != nil || string(msg) != fmt.Sprintf(`{"op":"ack","seq":%d}`, seq) {
				t.Fatalf("calm device: %s %v", msg, err)
			}
			rtts = append(rtts, time.Since(start))
			time.Sleep(5 * time.Millisecond)
		}
		slices.Sort(rtts)
		return rtts[len(rtts)/2]
	}
	unloaded := roundTrips(100)

	flood := dialDone(t, ts.wsURL, "flood")
	defer flood.Close()
	var sent, acked, nacked atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // reads acks on its own, never waits for them
		for {
			_, msg, err := flood.ReadMessage()
			if err != nil {
				return
			}
			if len(msg) > 8 && string(msg[:8]) == `{"op":"a` {
				acked.Add(1)
			} else {
				nacked.Add(1)
			}
		}
	}()
	floodStart := time.Now()
	go func() {
		for n := 1; ctx.Err() == nil; n++ {
			if err := flood.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"op":"pub","ch":"f","data":1,"seq":%d}`, n)); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	time.Sleep(500 * time.Millisecond) // the flood is on
	loaded := roundTrips(100)
	elapsed := time.Since(floodStart)
	cancel()

	t.Logf("calm device's median ack round trip: %v alone, %v beside the flood; flood: %d acked, %d nacked in %v",
		unloaded, loaded, acked.Load(), nacked.Load(), elapsed)
	if loaded > 3*max(unloaded, time.Millisecond) {
		t.Errorf("the flood slowed the calm device's round trip from %v to %v", unloaded, loaded)
	}
	// The default rate is 100 a second after a burst of 200: the flood got
	// no more through. (Its burst may also fill done's window of unacked
	// pubs, max_inflight, which then waits for acks: the rate limit is
	// about the gateway's share, not the device's manners.)
	if limit := int64(200 + 100*elapsed.Seconds() + 50); acked.Load()+nacked.Load() > limit {
		t.Errorf("the flooding device had %d pubs read in %v, more than its rate allows (%d)", acked.Load()+nacked.Load(), elapsed, limit)
	}
}
