package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	t.Parallel()
	status := "Name:\twsgate\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 12345 {
		t.Errorf("parseVmRSS = %d, %v; want 12345", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("no VmRSS line: no error")
	}
	if rss, err := procRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("procRSS(self) = %d, %v", rss, err)
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
process_open_fds 17
process_resident_memory_bytes 2.4576e+07
wsgate_sessions{protocol="done"} 3
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 42 || m["process_open_fds"] != 17 || m["process_resident_memory_bytes"] != 24576000 {
		t.Errorf("metrics %v", m)
	}
	if _, ok := m[`wsgate_sessions{protocol="done"}`]; ok {
		t.Error("a labelled sample was kept")
	}
}

func TestSubscriberDeviceFromTopic(t *testing.T) {
	t.Parallel()
	s := &subscriber{prefix: "wsgate/", idPrefix: "load-", trackers: make([]seqTracker, 10)}
	for topic, want := range map[string]int{
		"wsgate/load-0/load":      0,
		"wsgate/load-9/load":      9,
		"wsgate/load-10/load":     -1, // beyond -devices
		"wsgate/load-03/load":     -1, // not an id this run uses
		"wsgate/load--1/load":     -1,
		"wsgate/other-1/load":     -1,
		"wsgate/load-1/telemetry": -1,
		"other/load-1/load":       -1,
		"wsgate/load-1/load/x":    -1,
	} {
		n, ok := s.device(topic)
		if (want < 0 && ok) || (want >= 0 && (!ok || n != want)) {
			t.Errorf("device(%q) = %d, %v; want %d", topic, n, ok, want)
		}
	}
}
