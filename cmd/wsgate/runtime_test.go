package main

import (
	"io"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"testing/fstest"
	"time"

	"github.com/wsgate/wsgate/config"
	"go.uber.org/goleak"
)

const meminfo1GiB = "MemTotal:        1048576 kB\nMemFree:          524288 kB\n"

func TestMemoryLimit(t *testing.T) {
	service := "0::/system.slice/wsgate.service\n"
	for _, tc := range []struct {
		name    string
		setting string
		files   fstest.MapFS
		want    int64
	}{
		{name: "off", setting: "off", want: math.MaxInt64},
		{name: "a size", setting: "300MiB", want: 300 << 20},
		{name: "auto on a 1 GiB machine", setting: "auto", files: fstest.MapFS{
			"proc/meminfo": {Data: []byte(meminfo1GiB)},
		}, want: 256 << 20},
		{name: "auto under systemd MemoryMax", setting: "auto", files: fstest.MapFS{
			"proc/self/cgroup": {Data: []byte(service)},
			"sys/fs/cgroup/system.slice/wsgate.service/memory.max": {Data: []byte("209715200\n")},
			"proc/meminfo": {Data: []byte(meminfo1GiB)},
		}, want: 200 << 20 / 10 * 9},
		{name: "auto: a parent's lower limit counts", setting: "auto", files: fstest.MapFS{
			"proc/self/cgroup": {Data: []byte(service)},
			"sys/fs/cgroup/system.slice/wsgate.service/memory.max": {Data: []byte("max\n")},
			"sys/fs/cgroup/system.slice/memory.max":                {Data: []byte("104857600\n")},
			"proc/meminfo":                                         {Data: []byte(meminfo1GiB)},
		}, want: 100 << 20 / 10 * 9},
		{name: "auto: cgroup without a limit", setting: "auto", files: fstest.MapFS{
			"proc/self/cgroup": {Data: []byte(service)},
			"sys/fs/cgroup/system.slice/wsgate.service/memory.max": {Data: []byte("max\n")},
			"proc/meminfo": {Data: []byte(meminfo1GiB)},
		}, want: 256 << 20},
		{name: "auto, nothing known", setting: "auto", files: fstest.MapFS{}, want: math.MaxInt64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, how := memoryLimit(tc.setting, tc.files)
			if got != tc.want {
				t.Errorf("memoryLimit(%q) = %d (%s), want %d", tc.setting, got, how, tc.want)
			}
		})
	}
}

func TestApplyRuntime(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	oldProcs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit); runtime.GOMAXPROCS(oldProcs) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := config.Runtime{GCPercent: 70, MemoryLimit: "auto", MaxProcs: 3}
	files := fstest.MapFS{"proc/meminfo": {Data: []byte(meminfo1GiB)}}
	const untouched = 5 // GOMAXPROCS before each case

	for _, tc := range []struct {
		name        string
		env         map[string]string
		wantPercent int
		wantLimit   int64
		wantProcs   int
	}{
		{name: "configuration", wantPercent: 70, wantLimit: 256 << 20, wantProcs: 3},
		{name: "GOGC set", env: map[string]string{"GOGC": "200"}, wantPercent: 100, wantLimit: 256 << 20, wantProcs: 3},
		{name: "GOMEMLIMIT set", env: map[string]string{"GOMEMLIMIT": "1GiB"}, wantPercent: 70, wantLimit: math.MaxInt64, wantProcs: 3},
		{name: "GOMAXPROCS set", env: map[string]string{"GOMAXPROCS": "5"}, wantPercent: 70, wantLimit: 256 << 20, wantProcs: untouched},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			runtime.GOMAXPROCS(untouched)
			applyRuntime(r, func(k string) string { return tc.env[k] }, files, log)
			if got := debug.SetGCPercent(100); got != tc.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tc.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tc.wantLimit)
			}
			if got := runtime.GOMAXPROCS(0); got != tc.wantProcs {
				t.Errorf("GOMAXPROCS %d, want %d", got, tc.wantProcs)
			}
		})
	}
}

func TestMemoryReturner(t *testing.T) {
	defer goleak.VerifyNone(t)
	const MiB = 1 << 20
	// Each tick: what the heap holds when the returner looks, whether it
	// must return memory then, and what it holds after that return.
	type look struct {
		held, after uint64
		release     bool
	}
	for _, tc := range []struct {
		name     string
		baseline uint64
		ticks    []look
	}{
		{name: "calm", baseline: 20 * MiB, ticks: []look{{held: 22 * MiB}, {held: 21 * MiB}, {held: 22 * MiB}}},
		{name: "a storm, then calm", baseline: 20 * MiB, ticks: []look{
			{held: 60 * MiB, release: true, after: 25 * MiB}, {held: 28 * MiB}, {held: 30 * MiB, release: true, after: 24 * MiB}, {held: 26 * MiB}}},
		{name: "a small heap: a mebibyte", baseline: 6 * MiB, ticks: []look{
			{held: 7 * MiB}, {held: 7*MiB + 1, release: true, after: 6 * MiB}, {held: 7 * MiB}}},
		{name: "a large heap: an eighth of it", baseline: 400 * MiB, ticks: []look{
			{held: 440 * MiB}, {held: 451 * MiB, release: true, after: 410 * MiB}, {held: 450 * MiB}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tick := make(chan time.Time)
			held := make(chan uint64)
			released := make(chan struct{}, 1)
			m := &memoryReturner{
				tick:    tick,
				held:    func() uint64 { return <-held },
				release: func() { released <- struct{}{} },
				log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			if err := m.start(t.Context()); err != nil {
				t.Fatal(err)
			}
			// A returner that acted where it should not have waits for a look
			// at the heap instead of a tick, and the other way round.
			send := func(n int, what string, send func()) {
				done := make(chan struct{})
				go func() { send(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("tick %d: the returner does not take the %s (did it return memory where it should not, or not where it should?)", n, what)
				}
			}
			send(0, "first look", func() { held <- tc.baseline })
			for n, l := range tc.ticks {
				send(n+1, "tick", func() { tick <- time.Time{} })
				send(n+1, "look", func() { held <- l.held })
				if l.release {
					select {
					case <-released:
					case <-time.After(10 * time.Second):
						t.Fatalf("tick %d: holding %d MiB, nothing returned", n+1, l.held/MiB)
					}
					send(n+1, "look after the return", func() { held <- l.after })
				}
			}
			if err := m.stop(t.Context()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-released:
				t.Errorf("memory returned where it should not have been")
			default:
			}
		})
	}
}
