package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// TestDeviceThatDoesNotWaitForAcks: a device writes 20,000 QoS 1 pubs as
// fast as it can, reading its acks on another goroutine but never waiting
// for them, through a broker path slower than the device (the bridge may
// have only 8 publishes awaiting Mosquitto's PUBACK). The gateway stops
// reading the device while its window of unacked pubs is full, so TCP
// slows the device down: every pub is acked, none is nacked, each reaches
// the broker, and the gateway's memory stays bounded.
func TestDeviceThatDoesNotWaitForAcks(t *testing.T) {
	t.Parallel()
	const total = 20000
	mosq := brokertest.StartMosquitto(t)
	sub := brokertest.Subscribe(t, mosq.URL, "wsgate/flood/telemetry")
	seqs := collectSeqs(t, sub)
	cfg := newProcConfig(t, "flow", mosq.URL)
	cfg.done = `max_inflight = 128
inflight_wait = "30s" # the device, not a stuck broker, is what is slow here`
	cfg.mqtt = "max_inflight = 8"
	gw := startWsgate(t, cfg)
	ws, err := helloDevice(cfg.wsURL(), "flood")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	var mu sync.Mutex
	acked, nacked := map[uint64]bool{}, []deviceMsg{}
	readDone := make(chan error, 1)
	go func() {
		for {
			_ = ws.SetReadDeadline(time.Now().Add(mqttTestWait))
			var m deviceMsg
			if err := ws.ReadJSON(&m); err != nil {
				readDone <- err
				return
			}
			mu.Lock()
			switch m.Op {
			case "ack":
				acked[m.Seq] = true
			default:
				nacked = append(nacked, m)
			}
			n := len(acked) + len(nacked)
			mu.Unlock()
			if n == total {
				readDone <- nil
				return
			}
		}
	}()
	for seq := 1; seq <= total; seq++ {
		pub := `{"op":"pub","ch":"telemetry","data":{"seq":` + strconv.Itoa(seq) + `},"seq":` + strconv.Itoa(seq) + `}`
		if err := ws.WriteMessage(websocket.TextMessage, []byte(pub)); err != nil {
			t.Fatalf("write pub %d: %v", seq, err)
		}
	}
	if err := <-readDone; err != nil {
		mu.Lock()
		t.Fatalf("the device read %v with %d acks, %d nacks", err, len(acked), len(nacked))
	}
	mu.Lock()
	if len(nacked) > 0 {
		t.Errorf("%d pubs not acked: first %+v", len(nacked), nacked[0])
	}
	mu.Unlock()
	if got := seqs.waitUnique(total); len(got) != total {
		t.Errorf("the broker got %d of %d pubs; missing %v", len(got), total, missingSeqs(got, total))
	}
	// The window, not the flood, bounds what the gateway holds.
	if peak := peakRSS(t, gw.cmd.Process.Pid); peak > 100<<20 {
		t.Errorf("the gateway's peak RSS was %d MiB, want at most 100", peak>>20)
	}
}

// peakRSS is a process's peak resident set size (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}
