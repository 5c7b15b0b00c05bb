package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParseSources(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []string // first and last, or all when short
		n       int
		wantErr string
	}{
		{in: "", n: 0},
		{in: "none", n: 0},
		{in: "127.0.0.2-127.0.0.9", want: []string{"127.0.0.2", "127.0.0.9"}, n: 8},
		{in: "127.0.0.2-9", want: []string{"127.0.0.2", "127.0.0.9"}, n: 8},
		{in: "127.0.0.5-5", want: []string{"127.0.0.5", "127.0.0.5"}, n: 1},
		{in: "10.0.0.250-10.0.1.3", want: []string{"10.0.0.250", "10.0.1.3"}, n: 10},
		{in: " 10.0.0.1 , 10.0.0.3,::1", want: []string{"10.0.0.1", "::1"}, n: 3},
		{in: "127.0.0.9-127.0.0.2", wantErr: "ends before it starts"},
		{in: "127.0.0.9-2", wantErr: "ends before it starts"},
		{in: "::1-::5", wantErr: "IPv4"},
		{in: "127.0.0.1-::5", wantErr: "want an IPv4"},
		{in: "127.0.0.1-300", wantErr: "want an IPv4"},
		{in: "localhost", wantErr: "not an IP"},
		{in: "10.0.0.1,,10.0.0.2", wantErr: "empty item"},
		{in: "10.0.0.0-10.0.255.255", wantErr: "more than"},
	}
	for _, tt := range tests {
		got, err := parseSources(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseSources(%q) error %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSources(%q): %v", tt.in, err)
			continue
		}
		if len(got) != tt.n {
			t.Errorf("parseSources(%q) gave %d addresses, want %d: %v", tt.in, len(got), tt.n, got)
			continue
		}
		if tt.n > 0 && (got[0].String() != tt.want[0] || got[len(got)-1].String() != tt.want[1]) {
			t.Errorf("parseSources(%q) = %v, want %s ... %s", tt.in, got, tt.want[0], tt.want[1])
		}
	}
}

func TestSourceRoundRobin(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags([]string{"-sources", "127.0.0.2-4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for n := range 5 {
		got = append(got, cfg.source(n).String())
	}
	if want := "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.2 127.0.0.3"; strings.Join(got, " ") != want {
		t.Errorf("sources %v, want %s", got, want)
	}
	if a := (&config{}).source(3); a.IsValid() || tcpAddr(a) != nil {
		t.Errorf("without -sources: %v, want the system's choice", a)
	}
	if a := tcpAddr(netip.MustParseAddr("127.0.0.2")); a.String() != "127.0.0.2:0" {
		t.Errorf("tcpAddr = %v", a)
	}
}

func TestDefaultSourcesOnlyForLoopback(t *testing.T) {
	t.Parallel()
	for url, n := range map[string]int{
		"ws://127.0.0.1:8080/":     8,
		"ws://localhost:8080/":     8,
		"ws://[::1]:8080/":         8,
		"ws://192.0.2.7:8080/":     0,
		"wss://gw.example.org/ws/": 0,
	} {
		cfg, err := parseFlags([]string{"-url", url}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.sources) != n {
			t.Errorf("-url %s: %d default sources, want %d", url, len(cfg.sources), n)
		}
	}
	cfg, err := parseFlags([]string{"-url", "ws://192.0.2.7/", "-sources", "192.0.2.10-11"}, io.Discard)
	if err != nil || len(cfg.sources) != 2 {
		t.Errorf("explicit -sources with a remote -url: %v, %v", cfg, err)
	}
}

func TestFlagDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.mode != modeThroughput || cfg.devices != 10 || cfg.size != 200 || cfg.qos != 0 || cfg.inflight != 64 ||
		cfg.prefix != "wsgate" || cfg.idPrefix != "load-" || cfg.subprotocol != "done" || cfg.deviceID(3) != "load-3" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-mode", "storm"},
		{"-qos", "2"},
		{"-devices", "0"},
		{"-count", "0"},
		{"-mode", "latency"},
		{"-mode", "throughput", "-rate", "100"},
		{"-mode", "direct", "-broker", ""},
		{"-id-prefix", "bad/prefix"},
		{"-url", "http://127.0.0.1/"},
		{"-sources", "nowhere"},
		{"-duration", "0s"},
		{"-subscribers", "0"},
		{"-metrics", "127.0.0.1:9180"},
		{"-no-such-flag"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		var stdout bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("wsload %v: exit %d, want 2; stderr: %s", args, code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("wsload %v printed %q on stdout", args, stdout.String())
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, io.Discard, &stderr); code != 0 || !strings.Contains(stderr.String(), "-mode") {
		t.Errorf("-h: exit %d, usage %q", code, stderr.String())
	}
}

func TestNoGatewayExitsOne(t *testing.T) {
	t.Parallel()
	// A port that was free a moment ago: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var stdout, stderr bytes.Buffer
	args := []string{"-url", fmt.Sprintf("ws://127.0.0.1:%d/", port), "-broker", "", "-devices", "2", "-duration", "10s"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
		t.Errorf("exit %d, want 1; stderr: %s", code, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("a failed setup printed a summary: %q", stdout.String())
	}
	args = []string{"-mode", "direct", "-broker", fmt.Sprintf("tcp://127.0.0.1:%d", port), "-duration", "10s"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
		t.Errorf("direct without a broker: exit %d, want 1", code)
	}
}
