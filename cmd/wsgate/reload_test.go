package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
)

// edit rewrites the process's configuration file, replacing old by new.
func (p *wsgateProc) edit(old, new string) {
	p.t.Helper()
	doc, err := os.ReadFile(p.path)
	if err != nil {
		p.t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte(old)) {
		p.t.Fatalf("%s has no %q", p.path, old)
	}
	if err := os.WriteFile(p.path, bytes.Replace(doc, []byte(old), []byte(new), 1), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// hup sends SIGHUP and waits until the log has one more line containing
// done than before.
func (p *wsgateProc) hup(done string) {
	p.t.Helper()
	before := strings.Count(p.log.String(), done)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		p.t.Fatalf("SIGHUP: %v", err)
	}
	deadline := time.Now().Add(mqttTestWait)
	for strings.Count(p.log.String(), done) <= before {
		select {
		case <-p.exited:
			p.t.Fatalf("wsgate exited with %d after SIGHUP:\n%s", p.status, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q in the log after SIGHUP:\n%s", done, p.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadOnSIGHUP: SIGHUP re-reads the file and applies it while a
// device streams QoS 1 frames; an invalid file is reported with its line
// and changes nothing; 20 SIGHUPs under load drop no session and lose no
// acknowledged frame, and the process never ends on one.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	const total = 6000
	mosq := brokertest.StartMosquitto(t)
	rec := collectSeqs(t, brokertest.SubscribeSession(t, mosq.URL, "wsgate/hup-1/zl", brokertest.ClientID("hup-sub")))
	cfg := newProcConfig(t, "gw-hup", mosq.URL)
	// A second listener takes devices with tokens.
	tokenPort := brokertest.FreePort(t)
	kitchenEntry, garageEntry := tokenEntry(t, "kitchen", "k-token"), tokenEntry(t, "garage", "g-token")
	cfg.extra = fmt.Sprintf("\n[[listeners]]\naddress = \"127.0.0.1:%d\"\nauth = \"token\"\n\n%s%s", tokenPort, kitchenEntry, garageEntry)
	tokenURL := fmt.Sprintf("ws://127.0.0.1:%d/", tokenPort)
	gw := startWsgate(t, cfg)
	gw.waitReady(t)

	dev, errc := startStreaming(t, cfg.wsURL(), "hup-1", total)

	// A valid change: applied, and said so.
	waitAcked(t, dev, total/10, errc)
	gw.edit(`level = "info"`, `level = "debug"`)
	gw.hup("configuration reloaded")
	if log := gw.log.String(); !strings.Contains(log, "applied=[log.level]") {
		t.Errorf("the reload does not say it applied log.level:\n%s", log)
	}
	// An invalid file: every problem with its line, and the running
	// configuration stays.
	gw.edit("send_queue = 1024", "send_queue = 0")
	gw.hup("configuration not reloaded")
	if !strings.Contains(gw.log.String(), fmt.Sprintf("%s:9: websocket.send_queue: 0 is outside 1 to 65536 messages", gw.path)) {
		t.Errorf("the refusal does not name the file, line and key:\n%s", gw.log.String())
	}
	gw.edit("send_queue = 0", "send_queue = 1024")
	// Something that needs a restart is named, not applied.
	gw.edit(`shutdown_grace = "10s"`, `shutdown_grace = "11s"`)
	gw.hup("configuration reloaded")
	if !strings.Contains(gw.log.String(), "applied only at the next start") || !strings.Contains(gw.log.String(), "sections=[gateway]") {
		t.Errorf("the reload does not name the section that needs a restart:\n%s", gw.log.String())
	}

	// A new token set: the revoked device is closed with 1008, the one
	// whose token stays keeps its session, the new token works.
	kitchen, welcome := helloToken(t, tokenURL, "kitchen", "k-token")
	garage, welcome2 := helloToken(t, tokenURL, "garage", "g-token")
	if !strings.Contains(welcome, `"op":"welcome"`) || !strings.Contains(welcome2, `"op":"welcome"`) {
		t.Fatalf("token devices: %s %s", welcome, welcome2)
	}
	gw.edit(garageEntry, tokenEntry(t, "cellar", "c-token"))
	gw.hup("configuration reloaded")
	wantClosed(t, garage, 1008)
	if err := kitchen.WriteMessage(websocket.TextMessage, []byte(`{"op":"pub","ch":"t","data":1,"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	_ = kitchen.SetReadDeadline(time.Now().Add(mqttTestWait))
	if _, msg, err := kitchen.ReadMessage(); err != nil || string(msg) != `{"op":"ack","seq":1}` {
		t.Errorf("the device whose token stays: %s %v", msg, err)
	}
	if _, welcome := helloToken(t, tokenURL, "cellar", "c-token"); !strings.Contains(welcome, `"op":"welcome"`) {
		t.Errorf("the new token: %s", welcome)
	}

	// 20 SIGHUPs while frames flow.
	for i := range 20 {
		waitAcked(t, dev, total/10+i*total/30, errc)
		gw.hup("configuration reloaded")
	}

	waitStreamed(t, dev, errc)
	if missing := missingSeqs(rec.waitUnique(total), total); len(missing) > 0 {
		t.Errorf("%d acked seqs never reached the subscriber, e.g. %v", len(missing), missing[:min(10, len(missing))])
	}
	dev.mu.Lock()
	nacks, sessions := dev.nacks, dev.sessions
	dev.mu.Unlock()
	if nacks != 0 || sessions != 1 {
		t.Errorf("%d nacks, %d sessions: a reload must not disturb a healthy device", nacks, sessions)
	}
	if code := gw.term(); code != 0 {
		t.Errorf("wsgate exited with %d after SIGTERM", code)
	}
}
