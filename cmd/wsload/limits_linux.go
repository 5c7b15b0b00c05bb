package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// raiseOpenFileLimit raises the soft limit of open files to the hard limit
// and warns when it is still too low for need connections.
func raiseOpenFileLimit(need int, stderr io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	if want := uint64(need) + 64; lim.Cur < want {
		fmt.Fprintf(stderr, "wsload: the open-file limit is %d, too low for %d connections; raise the hard limit (ulimit -Hn, LimitNOFILE=)\n", lim.Cur, need)
	}
}

// openFileLimit is the current soft limit of open files.
func openFileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

// warnPortRange warns when the connections from one source address could
// exceed the ephemeral port range.
func warnPortRange(cfg *config, stderr io.Writer) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return
	}
	var lo, hi int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &lo, &hi); err != nil || hi < lo {
		return
	}
	perSource := cfg.connections() / max(len(cfg.sources), 1)
	if ports := hi - lo + 1; perSource > ports {
		fmt.Fprintf(stderr, "wsload: %d connections per source address, but only %d ephemeral ports (%d-%d): spread them with -sources\n", perSource, ports, lo, hi)
	}
}
