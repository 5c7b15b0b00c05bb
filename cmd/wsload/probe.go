package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// probe reads the gateway's resource use from outside: resident memory and
// open files from /proc/PID (-pid), goroutines, open files and memory from
// its Prometheus endpoint (-metrics). Values it cannot read are 0.
type probe struct {
	pid     int
	metrics string
	stderr  io.Writer
	warned  bool
}

// reading is one look at the gateway.
type reading struct {
	rssKiB, fds, goroutines int64
}

func newProbe(cfg *config, stderr io.Writer) *probe {
	return &probe{pid: cfg.pid, metrics: cfg.metrics, stderr: stderr}
}

func (p *probe) read() reading {
	var r reading
	if p.metrics != "" {
		m, err := scrape(p.metrics)
		p.warn(err)
		r.goroutines = int64(m["go_goroutines"])
		r.fds = int64(m["process_open_fds"])
		r.rssKiB = int64(m["process_resident_memory_bytes"] / 1024)
	}
	if p.pid > 0 {
		rss, err := procRSS(p.pid)
		p.warn(err)
		if err == nil {
			r.rssKiB = rss
		}
		if entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid)); err == nil {
			r.fds = int64(len(entries))
		}
	}
	return r
}

func (p *probe) warn(err error) {
	if err != nil && !p.warned {
		p.warned = true
		fmt.Fprintf(p.stderr, "wsload: reading the gateway's resource use: %v\n", err)
	}
}

// procRSS is VmRSS of process pid in KiB.
func procRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(status)
}

// parseVmRSS reads the "VmRSS:   1234 kB" line of /proc/PID/status.
func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(rest))
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS line in the process status")
}

// scrape fetches a Prometheus text endpoint and returns its samples without
// labels, by metric name.
func scrape(url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20))
}

// parseMetrics reads the unlabelled samples of the Prometheus text format.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}
