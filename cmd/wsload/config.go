package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Modes.
const (
	modeThroughput = "throughput" // every device sends -count messages as fast as it can
	modeLatency    = "latency"    // every device sends -count messages, -rate per second in total
	modeDirect     = "direct"     // the same messages published straight to the broker with paho
	modeIdle       = "idle"       // hold -devices connections for -duration
	modeChurn      = "churn"      // -cycles connect/hello/pub/close cycles
)

// Upper bounds that keep a mistyped flag from exhausting the machine.
const (
	maxDevices     = 1_000_000
	maxCount       = 100_000_000
	maxSize        = 16 << 20
	maxSources     = 4096
	maxInflight    = 65536
	maxConcurrent  = 100_000
	maxSubscribers = 64
)

// channel is the done channel every load pub goes to; the MQTT topic is
// {prefix}/{device}/load with the gateway's default uplink template.
const channel = "load"

var errHelp = errors.New("help requested")

// config is one run, from the command line.
type config struct {
	mode        string
	url         string
	broker      string
	prefix      string
	devices     int
	sources     []netip.Addr
	subprotocol string
	size        int
	qos         byte
	rate        float64
	count       int
	duration    time.Duration
	drain       time.Duration
	cycles      int
	concurrency int
	warmup      time.Duration
	idPrefix    string
	inflight    int
	subscribers int
	pid         int
	metrics     string
	tls         *tls.Config // wss: trusts -ca, or the system's roots
}

// connections is how many sockets the run may hold at once.
func (c *config) connections() int {
	switch c.mode {
	case modeChurn:
		return c.concurrency
	case modeDirect:
		return min(c.devices, maxDirectClients)
	}
	return c.devices
}

// deviceID is the hello id of device (or churn worker) n.
func (c *config) deviceID(n int) string { return c.idPrefix + strconv.Itoa(n) }

// source is the local address for connection n: round-robin over -sources,
// or the zero Addr to let the system choose.
func (c *config) source(n int) netip.Addr {
	if len(c.sources) == 0 {
		return netip.Addr{}
	}
	return c.sources[n%len(c.sources)]
}

const defaultSources = "127.0.0.2-127.0.0.9"

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	var qos int
	var sources, ca string
	fs := flag.NewFlagSet("wsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: wsload [flags]\n\n"+
			"Load generator and device simulator for wsgate; see cmd/wsload/README.md.\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.mode, "mode", modeThroughput, "throughput, latency, direct, idle or churn")
	fs.StringVar(&cfg.url, "url", "ws://127.0.0.1:8080/", "the gateway's WebSocket URL")
	fs.StringVar(&cfg.broker, "broker", "tcp://127.0.0.1:1883", `the MQTT broker the gateway publishes to (subscriber, direct mode); "" runs without a subscriber`)
	fs.StringVar(&cfg.prefix, "prefix", "wsgate", "the gateway's MQTT topic prefix")
	fs.IntVar(&cfg.devices, "devices", 10, "WebSocket connections (devices); in direct mode, MQTT publishers")
	fs.StringVar(&sources, "sources", defaultSources, `local source addresses, round-robin: "A-B", "A-lastoctet", "A,B,C" or "" for the system's choice (the default applies only to a loopback -url)`)
	fs.StringVar(&cfg.subprotocol, "subprotocol", "done", "the subprotocol offered (the device speaks done)")
	fs.IntVar(&cfg.size, "size", 200, "payload bytes: a JSON object with seq, send time and padding")
	fs.IntVar(&qos, "qos", 0, "QoS of every pub and of the subscription: 0 or 1")
	fs.Float64Var(&cfg.rate, "rate", 0, "messages per second in total (latency mode; optional in direct mode)")
	fs.IntVar(&cfg.count, "count", 1000, "messages per device (throughput, latency, direct)")
	fs.DurationVar(&cfg.duration, "duration", 60*time.Second, "how long idle mode holds its connections; the bound of every mode")
	fs.DurationVar(&cfg.drain, "drain", 2*time.Second, "after sending, how long the subscriber waits without receiving anything before it gives up on the rest")
	fs.IntVar(&cfg.cycles, "cycles", 1000, "churn: connect/hello/pub/close cycles in total")
	fs.IntVar(&cfg.concurrency, "concurrency", 16, "churn: workers; other modes: connections dialled at once")
	fs.DurationVar(&cfg.warmup, "warmup", 0, "leave messages sent in this first part of the run out of the latency percentiles")
	fs.StringVar(&cfg.idPrefix, "id-prefix", "load-", "device ids are this prefix and a number from 0")
	fs.IntVar(&cfg.inflight, "inflight", 64, "QoS 1 pubs per device awaiting their ack")
	fs.IntVar(&cfg.subscribers, "subscribers", 4, "MQTT connections that receive the messages, each for a share of the devices")
	fs.IntVar(&cfg.pid, "pid", 0, "the gateway's process id: report its resident memory (idle, churn)")
	fs.StringVar(&ca, "ca", "", "wss: a PEM file of the certificates to trust (e.g. the gateway's self-signed one) instead of the system's")
	fs.StringVar(&cfg.metrics, "metrics", "", "the gateway's Prometheus endpoint, e.g. http://127.0.0.1:9180/metrics: report goroutines, open files, memory (idle, churn)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError(stderr, "unexpected argument %q", fs.Arg(0))
	}
	sourcesSet := false
	fs.Visit(func(f *flag.Flag) { sourcesSet = sourcesSet || f.Name == "sources" })
	if !sourcesSet && !loopbackURL(cfg.url) {
		sources = "" // the default range only reaches a gateway on loopback
	}
	var err error
	if cfg.sources, err = parseSources(sources); err != nil {
		return nil, usageError(stderr, "-sources: %v", err)
	}
	if qos != 0 && qos != 1 {
		return nil, usageError(stderr, "-qos must be 0 or 1")
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, usageError(stderr, "-ca: %v", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, usageError(stderr, "-ca %s: no PEM certificate in it", ca)
		}
		cfg.tls = &tls.Config{RootCAs: roots}
	}
	cfg.qos = byte(qos)
	if err := cfg.validate(); err != nil {
		return nil, usageError(stderr, "%v", err)
	}
	return cfg, nil
}

func usageError(stderr io.Writer, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	fmt.Fprintf(stderr, "wsload: %v\n", err)
	return err
}

func (c *config) validate() error {
	switch c.mode {
	case modeThroughput, modeLatency, modeDirect, modeIdle, modeChurn:
	default:
		return fmt.Errorf("-mode %q: want throughput, latency, direct, idle or churn", c.mode)
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("-url %q: want ws://host:port/path or wss://host:port/path", c.url)
	}
	if c.broker != "" {
		b, err := url.Parse(c.broker)
		if err != nil || b.Host == "" {
			return fmt.Errorf("-broker %q: want tcp://host:port (or ssl://, ws://, wss://)", c.broker)
		}
	}
	if c.mode == modeDirect && c.broker == "" {
		return errors.New("-mode direct needs -broker")
	}
	if c.prefix == "" || strings.ContainsAny(c.prefix, "+#\x00") {
		return fmt.Errorf("-prefix %q: want MQTT topic levels without wildcards", c.prefix)
	}
	if c.devices < 1 || c.devices > maxDevices {
		return fmt.Errorf("-devices %d: want 1 to %d", c.devices, maxDevices)
	}
	if c.subprotocol == "" || strings.ContainsAny(c.subprotocol, " ,\t") {
		return fmt.Errorf("-subprotocol %q: want one token", c.subprotocol)
	}
	if c.size < 0 || c.size > maxSize {
		return fmt.Errorf("-size %d: want 0 to %d", c.size, maxSize)
	}
	if c.count < 1 || c.count > maxCount {
		return fmt.Errorf("-count %d: want 1 to %d", c.count, maxCount)
	}
	if c.duration <= 0 {
		return fmt.Errorf("-duration %v: want a positive duration", c.duration)
	}
	if c.drain < 0 {
		return fmt.Errorf("-drain %v: want a duration of 0 or more", c.drain)
	}
	if c.warmup < 0 {
		return fmt.Errorf("-warmup %v: want a duration of 0 or more", c.warmup)
	}
	if c.cycles < 1 || c.cycles > maxCount {
		return fmt.Errorf("-cycles %d: want 1 to %d", c.cycles, maxCount)
	}
	if c.concurrency < 1 || c.concurrency > maxConcurrent {
		return fmt.Errorf("-concurrency %d: want 1 to %d", c.concurrency, maxConcurrent)
	}
	if c.inflight < 1 || c.inflight > maxInflight {
		return fmt.Errorf("-inflight %d: want 1 to %d", c.inflight, maxInflight)
	}
	if c.subscribers < 1 || c.subscribers > maxSubscribers {
		return fmt.Errorf("-subscribers %d: want 1 to %d", c.subscribers, maxSubscribers)
	}
	switch {
	case c.rate < 0:
		return fmt.Errorf("-rate %v: want 0 or more", c.rate)
	case c.mode == modeLatency && c.rate == 0:
		return errors.New("-mode latency needs -rate (messages per second in total)")
	case c.mode == modeThroughput && c.rate > 0:
		return errors.New("-mode throughput sends as fast as it can: use -mode latency for a fixed -rate")
	}
	if !validID(c.idPrefix + strconv.Itoa(max(c.devices, c.concurrency))) {
		return fmt.Errorf("-id-prefix %q: device ids are 1-128 characters of A-Z a-z 0-9 . _ -", c.idPrefix)
	}
	if c.pid < 0 {
		return fmt.Errorf("-pid %d: want a process id", c.pid)
	}
	if c.metrics != "" {
		if m, err := url.Parse(c.metrics); err != nil || (m.Scheme != "http" && m.Scheme != "https") {
			return fmt.Errorf("-metrics %q: want http://host:port/metrics", c.metrics)
		}
	}
	return nil
}

// validID reports whether id is a valid done device id.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// loopbackURL reports whether the WebSocket URL names a loopback host.
func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// parseSources parses a list of local addresses: comma-separated items, each
// an address ("127.0.0.2", "::1"), an IPv4 range ("127.0.0.2-127.0.0.9") or
// an IPv4 range ending at a last octet ("127.0.0.2-9"). "" and "none" mean
// no list: the system picks the source address.
func parseSources(s string) ([]netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []netip.Addr
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty item in %q", s)
		}
		from, to, isRange := strings.Cut(item, "-")
		first, err := netip.ParseAddr(from)
		if err != nil {
			return nil, fmt.Errorf("%q: not an IP address", from)
		}
		if !isRange {
			out = append(out, first)
		} else {
			last, err := rangeEnd(first, to)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", item, err)
			}
			for a := first; a.Compare(last) <= 0 && len(out) <= maxSources; a = a.Next() {
				out = append(out, a)
			}
		}
		if len(out) > maxSources {
			return nil, fmt.Errorf("more than %d addresses", maxSources)
		}
	}
	return out, nil
}

// rangeEnd parses the end of the IPv4 range that starts at first: a whole
// address or the last octet alone.
func rangeEnd(first netip.Addr, to string) (netip.Addr, error) {
	if !first.Is4() {
		return netip.Addr{}, errors.New("ranges are for IPv4 addresses; list IPv6 addresses one by one")
	}
	var last netip.Addr
	if octet, err := strconv.ParseUint(to, 10, 8); err == nil {
		b := first.As4()
		b[3] = byte(octet)
		last = netip.AddrFrom4(b)
	} else if last, err = netip.ParseAddr(to); err != nil || !last.Is4() {
		return netip.Addr{}, fmt.Errorf("%q: want an IPv4 address or a last octet", to)
	}
	if last.Less(first) {
		return netip.Addr{}, errors.New("the range ends before it starts")
	}
	return last, nil
}

// tcpAddr is the local address to bind for a source, or nil.
func tcpAddr(a netip.Addr) *net.TCPAddr {
	if !a.IsValid() {
		return nil
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
}
