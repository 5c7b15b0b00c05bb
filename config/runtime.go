package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Runtime is the [runtime] section: how Go's garbage collector trades
// memory for CPU (docs/ARCHITECTURE.md, "Memory"), and how many cores run
// the gateway's goroutines at once. The environment variables GOGC,
// GOMEMLIMIT and GOMAXPROCS, when set, take precedence, as for any Go
// program.
type Runtime struct {
	// GCPercent is GOGC: the heap may grow this many percent over what is
	// live before a collection. Go's default is 100; a hub's idle devices
	// allocate little, so 50 costs little CPU and saves memory.
	GCPercent int `toml:"gc_percent"`
	// MemoryLimit is GOMEMLIMIT, a soft limit under which the collector
	// works harder: "auto" (nine tenths of the cgroup's memory.max, such as
	// systemd's MemoryMax=, or else a quarter of the machine's memory),
	// "off", or a size such as "256MiB".
	MemoryLimit string `toml:"memory_limit"`
	// MaxProcs is GOMAXPROCS, the cores that run goroutines at once: 0
	// (auto) is half of those Go would use (the machine's, or its cgroup's
	// CPU quota), at least one. The gateway shares its machine with its
	// broker, and handing a message from goroutine to goroutine across
	// cores costs more than the parallelism gains (docs/BENCHMARKS.md).
	MaxProcs int `toml:"max_procs"`
}

func defaultRuntime() Runtime { return Runtime{GCPercent: 50, MemoryLimit: "auto"} }

// Procs is the GOMAXPROCS that max_procs asks for, given the one Go chose
// (goProcs): the setting, or for 0 half of goProcs, at least one.
func (r Runtime) Procs(goProcs int) int {
	if r.MaxProcs > 0 {
		return r.MaxProcs
	}
	return max(1, goProcs/2)
}

func (c *Config) validateRuntime() []fault {
	var fs []fault
	if r := c.Runtime; r.GCPercent < 10 || r.GCPercent > 1000 {
		fs = append(fs, fault{path: "runtime.gc_percent", msg: fmt.Sprintf("%d is outside 10 to 1000", r.GCPercent)})
	}
	if p := c.Runtime.MaxProcs; p < 0 || p > maxProcs {
		fs = append(fs, fault{path: "runtime.max_procs", msg: fmt.Sprintf("%d is outside 0 (auto) to %d", p, maxProcs)})
	}
	switch m := c.Runtime.MemoryLimit; m {
	case "auto", "off":
	default:
		n, err := ParseSize(m)
		if err != nil {
			fs = append(fs, fault{path: "runtime.memory_limit", msg: fmt.Sprintf("%q is not auto, off or a size such as \"256MiB\": %v", m, err)})
		} else if n < 16<<20 {
			fs = append(fs, fault{path: "runtime.memory_limit", msg: fmt.Sprintf("%q is under 16MiB: the gateway would spend its time collecting", m)})
		}
	}
	return fs
}

// maxProcs bounds runtime.max_procs, well above any machine wsgate runs
// on: a typo of a few digits is caught.
const maxProcs = 1024

// sizeUnits are GOMEMLIMIT's units.
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// ParseSize reads a size the way Go reads GOMEMLIMIT: a whole number of
// bytes with an optional unit B, KiB, MiB, GiB or TiB.
func ParseSize(s string) (int64, error) {
	number, scale := s, int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			number, scale = rest, u.bytes
			break
		}
	}
	n, err := strconv.ParseInt(number, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a whole number of B, KiB, MiB, GiB or TiB")
	}
	if n > (1<<63-1)/scale {
		return 0, fmt.Errorf("too large")
	}
	return n * scale, nil
}
