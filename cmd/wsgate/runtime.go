package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/config"
)

// goProcs is the GOMAXPROCS Go chose at start (the machine's CPUs, or its
// cgroup's quota), which runtime.max_procs = 0 halves.
var goProcs = runtime.GOMAXPROCS(0)

// applyRuntime sets the garbage collector's percent and soft memory limit
// and the cores that run goroutines from [runtime], except where GOGC,
// GOMEMLIMIT or GOMAXPROCS in the environment already set them (the Go
// runtime read those at start). system is the file system the "auto"
// limit is read from: "/" but in tests.
func applyRuntime(r config.Runtime, getenv func(string) string, system fs.FS, log *slog.Logger) {
	gc, limit, procs := "GOGC", "GOMEMLIMIT", "GOMAXPROCS"
	if getenv("GOGC") == "" {
		debug.SetGCPercent(r.GCPercent)
		gc = strconv.Itoa(r.GCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		n, from := memoryLimit(r.MemoryLimit, system)
		debug.SetMemoryLimit(n)
		limit = from
	}
	if getenv("GOMAXPROCS") == "" {
		n := r.Procs(goProcs)
		runtime.GOMAXPROCS(n)
		procs = strconv.Itoa(n)
		if r.MaxProcs == 0 {
			procs = fmt.Sprintf("%d of %d (auto: half, at least one)", n, goProcs)
		}
	}
	log.Info("runtime tuning", "gc_percent", gc, "memory_limit", limit, "max_procs", procs)
}

// memoryLimit resolves a memory_limit setting to bytes (math.MaxInt64 for
// none) and says how it was found.
func memoryLimit(setting string, system fs.FS) (int64, string) {
	switch setting {
	case "off":
		return math.MaxInt64, "off"
	case "auto":
		if max, ok := cgroupMemoryMax(system); ok {
			n := max / 10 * 9
			return n, fmt.Sprintf("%s (nine tenths of the cgroup's %s)", sizeString(n), sizeString(max))
		}
		if total, ok := memTotal(system); ok {
			n := total / 4
			return n, fmt.Sprintf("%s (a quarter of the machine's %s)", sizeString(n), sizeString(total))
		}
		return math.MaxInt64, "off (the machine's memory is unknown)"
	default:
		n, _ := config.ParseSize(setting) // validated with the configuration
		return n, sizeString(n)
	}
}

// cgroupMemoryMax is the lowest memory.max of the process's cgroup (v2)
// and its parents: systemd's MemoryMax= for a service, a container's
// limit.
func cgroupMemoryMax(system fs.FS) (int64, bool) {
	data, err := fs.ReadFile(system, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	var group string
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			group = rest
		}
	}
	if group == "" {
		return 0, false
	}
	lowest, found := int64(math.MaxInt64), false
	for dir := path.Clean("/" + group); ; dir = path.Dir(dir) {
		raw, err := fs.ReadFile(system, path.Join("sys/fs/cgroup", dir, "memory.max"))
		if err == nil {
			if n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64); err == nil && n > 0 {
				lowest, found = min(lowest, n), true
			}
		}
		if dir == "/" {
			break
		}
	}
	return lowest, found
}

// memTotal is MemTotal from /proc/meminfo, in bytes.
func memTotal(system fs.FS) (int64, bool) {
	f, err := system.Open("proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil || kb <= 0 {
				return 0, false
			}
			return kb << 10, true
		}
	}
	return 0, false
}

// sizeString writes n bytes in the largest unit that keeps it whole
// enough to read: MiB or GiB with one decimal.
func sizeString(n int64) string {
	if n >= 1<<30 {
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + "GiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MiB"
}

// memoryReturner gives back to the system, once things are calm again,
// the heap a burst left behind. After a storm of connections (every device
// reconnecting after a Wi-Fi outage) the heap holds the garbage of their
// handshakes; with every device idle no collection runs for minutes, and
// the runtime returns free pages only down to its goal, so the resident
// size stays at the storm's peak: a parked connection's 2 to 3 KiB live
// stood for 6 KiB resident (docs/BENCHMARKS.md). Every interval, when the
// heap holds much more than after the last return, the returner collects
// and returns the free pages (debug.FreeOSMemory: one collection, a few
// milliseconds for tens of thousands of devices).
type memoryReturner struct {
	tick    <-chan time.Time
	held    func() uint64 // heap bytes taken from the system and not returned
	release func()
	log     *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

// returnEvery is how often the returner looks: often enough that a hub
// is back to its size within a minute of a storm, rarely enough that the
// collections it forces under load are noise beside the ones load makes.
const returnEvery = 30 * time.Second

// returnAbove is the growth over the last return that makes the
// returner act: the larger of this and an eighth of what was held then.
const returnAbove = 1 << 20

func newMemoryReturner(log *slog.Logger) *memoryReturner {
	return &memoryReturner{held: heapHeld, release: debug.FreeOSMemory, log: log}
}

func (m *memoryReturner) start(context.Context) error {
	var ticker *time.Ticker
	if m.tick == nil {
		ticker = time.NewTicker(returnEvery)
		m.tick = ticker.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel, m.done = cancel, make(chan struct{})
	go func() {
		defer close(m.done)
		if ticker != nil {
			defer ticker.Stop()
		}
		m.run(ctx)
	}()
	return nil
}

func (m *memoryReturner) stop(context.Context) error {
	m.cancel()
	<-m.done
	return nil
}

func (m *memoryReturner) run(ctx context.Context) {
	baseline := m.held()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.tick:
		}
		before := m.held()
		if before <= baseline+max(returnAbove, baseline/8) {
			continue
		}
		m.release()
		baseline = m.held()
		m.log.Debug("heap returned to the system", "held_before", sizeString(int64(before)), "held_after", sizeString(int64(baseline)))
	}
}

// heapMetrics are the runtime's classes of heap memory it holds from the
// system: objects (live and not yet collected), free space inside spans,
// and free pages not yet returned.
var heapMetrics = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

func heapHeld() uint64 {
	samples := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var sum uint64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			sum += s.Value.Uint64()
		}
	}
	return sum
}
