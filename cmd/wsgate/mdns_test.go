package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/wsgate/wsgate/gateway/broker/brokertest"
	"github.com/wsgate/wsgate/mdns"
)

// loopbackMulticast returns the name of the loopback interface, after
// checking that a datagram sent to the mDNS group on it comes back (Linux
// delivers multicast on lo although the interface has no MULTICAST flag).
// Where it does not, the test is skipped with the reason: the mDNS tests
// stay on the machine and need multicast there.
func loopbackMulticast(t *testing.T) string {
	t.Helper()
	ifis, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ifis, func(ifi net.Interface) bool { return ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 })
	if i < 0 {
		t.Skip("multicast unavailable: no loopback interface is up")
	}
	lo := ifis[i]
	group := net.IPv4(224, 0, 0, 251)
	c, err := net.ListenMulticastUDP("udp4", &lo, &net.UDPAddr{IP: group}) // any free port
	if err != nil {
		t.Skipf("multicast unavailable on %s: %v", lo.Name, err)
	}
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	if err := errors.Join(p.SetMulticastInterface(&lo), p.SetMulticastLoopback(true)); err != nil {
		t.Skipf("multicast unavailable on %s: %v", lo.Name, err)
	}
	probe := []byte(rand.Text())
	dst := &net.UDPAddr{IP: group, Port: c.LocalAddr().(*net.UDPAddr).Port}
	if _, err := p.WriteTo(probe, nil, dst); err != nil {
		t.Skipf("multicast unavailable on %s: %v", lo.Name, err)
	}
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Skipf("multicast on %s delivers nothing here: %v", lo.Name, err)
		}
		if bytes.Equal(buf[:n], probe) {
			return lo.Name
		}
	}
}

// browseLoopback browses typ on the loopback interface until the test ends.
func browseLoopback(t *testing.T, lo, typ string) <-chan mdns.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan mdns.Event, 32)
	done := make(chan error, 1)
	opts := mdns.BrowseOptions{Options: mdns.Options{Interfaces: []string{lo}, DisableIPv6: true}, Type: typ, QueryInterval: time.Second}
	go func() {
		done <- mdns.Browse(ctx, opts, func(ev mdns.Event) {
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("browse %s: %v", typ, err)
		}
	})
	return events
}

// nextEvent returns the next event of an instance whose name starts with
// prefix, failing after 15 s.
func nextEvent(t *testing.T, events <-chan mdns.Event, prefix string, kind mdns.EventKind) mdns.Service {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case ev := <-events:
			if strings.HasPrefix(ev.Service.Instance, prefix) && ev.Kind == kind {
				return ev.Service
			}
		case <-timeout:
			t.Fatalf("no %v event for %q within 15 s", kind, prefix)
		}
	}
}

// TestMDNSAnnouncesListeners: each [[listeners]] entry is found by a
// DNS-SD browse for _wsgate._tcp, on loopback, with its port, address and
// TXT record (path, what it serves, TLS, authentication); when the
// gateway stops they say goodbye.
func TestMDNSAnnouncesListeners(t *testing.T) {
	lo := loopbackMulticast(t)
	events := browseLoopback(t, lo, "_wsgate._tcp")
	instance := "wsgate test " + rand.Text()[:8]
	iotPort := brokertest.FreePort(t)
	ts := testConfig(t, fmt.Sprintf(`
[[listeners]]
address = "127.0.0.1:%d"
path = "/iot/"
protocols = ["done"]
auth = "token"

[mdns]
instance = %q
interfaces = [%q]
`, iotPort, instance, lo))
	stop := startInProcess(t, ts.path, ts.wsURL)
	wsPort, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(ts.wsURL, "ws://127.0.0.1:"), "/"))

	want := map[string]struct {
		port int
		txt  []string
	}{
		fmt.Sprintf("%s (ws://127.0.0.1:%d/)", instance, wsPort): {wsPort,
			[]string{"txtvers=1", "id=test-gw", "path=/", "protocols=done", "tls=no", "auth=none"}},
		fmt.Sprintf("%s (ws://127.0.0.1:%d/iot/)", instance, iotPort): {iotPort,
			[]string{"txtvers=1", "id=test-gw", "path=/iot/", "protocols=done", "tls=no", "auth=token"}},
	}
	for range want {
		svc := nextEvent(t, events, instance, mdns.Added)
		w, ok := want[svc.Instance]
		if !ok {
			t.Fatalf("found %q, want one of %v", svc.Instance, want)
		}
		if svc.Port != w.port || !slices.Equal(svc.TXT, w.txt) || !slices.Equal(svc.Addrs, []netip.Addr{netip.MustParseAddr("127.0.0.1")}) {
			t.Errorf("found %+v\nwant port %d, TXT %q, address 127.0.0.1 (the listener's only)", svc, w.port, w.txt)
		}
		delete(want, svc.Instance)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	nextEvent(t, events, instance, mdns.Removed)
	nextEvent(t, events, instance, mdns.Removed)
}

// TestMDNSOff: with [mdns] enabled = false nothing is announced, even where
// the interfaces are named.
func TestMDNSOff(t *testing.T) {
	lo := loopbackMulticast(t)
	events := browseLoopback(t, lo, "_wsgate._tcp")
	instance := "wsgate off " + rand.Text()[:8]
	ts := testConfig(t, fmt.Sprintf("[mdns]\nenabled = false\ninstance = %q\ninterfaces = [%q]\n", instance, lo))
	stop := startInProcess(t, ts.path, ts.wsURL)
	// A gateway with mDNS on, started after it, is found: the browse works
	// and the first gateway's silence is not a slow network.
	other := testConfig(t, fmt.Sprintf("[mdns]\ninstance = %q\ninterfaces = [%q]\n", instance+" on", lo))
	startInProcess(t, other.path, other.wsURL)
	if svc := nextEvent(t, events, instance, mdns.Added); svc.Instance != instance+" on" {
		t.Errorf("found %q, announced with mDNS off", svc.Instance)
	}
	stop()
}
