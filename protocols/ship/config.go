package ship

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/protocols/module"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/machine"
)

// Config is the [protocols.ship] table: SHIP's own wss:// listener, the
// identity, trust and timers, and the SHIP servers the gateway dials.
type Config struct {
	Address string `toml:"address"`
	Path    string `toml:"path"`
	// Dir keeps the key, the certificate and the trust store; empty: the
	// state directory's "ship".
	Dir         string `toml:"dir"`
	SHIPID      string `toml:"ship_id"`
	AutoAccept  bool   `toml:"auto_accept"`
	AllowTLS13  bool   `toml:"allow_tls13"`
	SKIMismatch string `toml:"ski_mismatch"`
	MaxMessage  int64  `toml:"max_message"`
	// PingInterval and PongTimeout are the SHIP connections' keepalive
	// (ship.md section 3: a ping at least every 50 s, 10 s for the pong).
	PingInterval time.Duration `toml:"ping_interval"`
	PongTimeout  time.Duration `toml:"pong_timeout"`
	QoS          int           `toml:"qos"`
	Announce     bool          `toml:"announce"`
	Browse       bool          `toml:"browse"`
	Brand        string        `toml:"brand"`
	Model        string        `toml:"model"`
	DeviceType   string        `toml:"device_type"`
	Serial       string        `toml:"serial"`
	Categories   []int         `toml:"categories"`
	Timers       Timers        `toml:"timers"`
	Peers        []PeerConfig  `toml:"peers"`
}

// Timers are the timers of ship.md section 7.
type Timers struct {
	CMI                   time.Duration `toml:"cmi"`
	HelloInit             time.Duration `toml:"hello_init"`
	HelloProlongThreshold time.Duration `toml:"hello_prolong_threshold"`
	HelloProlongGap       time.Duration `toml:"hello_prolong_gap"`
	HelloProlongMin       time.Duration `toml:"hello_prolong_min"`
	ProtocolHandshake     time.Duration `toml:"protocol_handshake"`
	PIN                   time.Duration `toml:"pin"`
	AccessMethods         time.Duration `toml:"access_methods"`
	Close                 time.Duration `toml:"close"`
	AbortDelay            time.Duration `toml:"abort_delay"`
	// ReconnectDelays are "min-max" ranges: the random wait before the
	// first dial, the second, and every further one.
	ReconnectDelays []string `toml:"reconnect_delays"`
}

// PeerConfig is one [[protocols.ship.peers]] entry: a SHIP server the
// gateway dials.
type PeerConfig struct {
	SKI string `toml:"ski"`
	// Address is host:port (with Path), or a whole wss:// URL; empty waits
	// for mDNS to find the peer.
	Address string `toml:"address"`
	Path    string `toml:"path"`
	SHIPID  string `toml:"ship_id"`
}

// DefaultConfig returns the defaults of sample.toml.
func DefaultConfig() Config {
	return Config{
		Address: ":4711", Path: "/ship/", SKIMismatch: "computed",
		MaxMessage: 1 << 20, PingInterval: 50 * time.Second, PongTimeout: 10 * time.Second, QoS: 1,
		Announce: true, Browse: true, Brand: "wsgate", Model: "wsgate", DeviceType: "EnergyManagementSystem",
		Categories: []int{2},
		Timers: Timers{
			CMI: machine.DefaultCMITimeout, HelloInit: machine.DefaultHelloInit,
			HelloProlongThreshold: machine.DefaultHelloProlongThrInc, HelloProlongGap: machine.DefaultHelloProlongWaitingGap,
			HelloProlongMin: machine.DefaultHelloProlongMin, ProtocolHandshake: machine.DefaultProtocolHandshakeWait,
			PIN: machine.DefaultPinWait, AccessMethods: machine.DefaultAccessMethodsWait,
			Close: machine.DefaultCloseWait, AbortDelay: machine.DefaultAbortDelay,
			ReconnectDelays: []string{"0s-3s", "3s-10s", "10s-20s"},
		},
	}
}

// MachineConfig returns the state machine's timers.
func (t Timers) MachineConfig() machine.Config {
	return machine.Config{
		CMITimeout: t.CMI, HelloInit: t.HelloInit, HelloProlongThrInc: t.HelloProlongThreshold,
		HelloProlongWaitingGap: t.HelloProlongGap, HelloProlongMin: t.HelloProlongMin,
		ProtocolHandshakeWait: t.ProtocolHandshake, PinWait: t.PIN, AccessMethodsWait: t.AccessMethods,
		CloseWait: t.Close, AbortDelay: t.AbortDelay,
	}
}

// Delays parses ReconnectDelays (validated already).
func (t Timers) Delays() []DelayRange {
	var out []DelayRange
	for _, s := range t.ReconnectDelays {
		if r, err := parseDelayRange(s); err == nil {
			out = append(out, r)
		}
	}
	return out
}

func parseDelayRange(s string) (DelayRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return DelayRange{}, fmt.Errorf("%q is not a range such as \"3s-10s\"", s)
	}
	min, err1 := time.ParseDuration(strings.TrimSpace(lo))
	max, err2 := time.ParseDuration(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || min < 0 || max < min {
		return DelayRange{}, fmt.Errorf("%q is not a range such as \"3s-10s\" (two durations, the first not above the second)", s)
	}
	return DelayRange{Min: min, Max: max}, nil
}

// URL is where the peer is dialled, "" when discovery must find it.
func (p PeerConfig) URL() string {
	if p.Address == "" || strings.Contains(p.Address, "://") {
		return p.Address
	}
	path := p.Path
	if path == "" {
		path = "/ship/"
	}
	return "wss://" + p.Address + path
}

// TLSOptions returns the TLS layer's settings.
func (c *Config) TLSOptions() identity.TLSOptions {
	policy, _ := identity.ParseMismatchPolicy(c.SKIMismatch)
	return identity.TLSOptions{AllowTLS13: c.AllowTLS13, Mismatch: policy}
}

// dir is where the key, the certificate and the trust store live.
func (c *Config) dir(s module.Settings) string {
	if c.Dir != "" {
		return c.Dir
	}
	return filepath.Join(s.StateDir, "ship")
}

// Listeners implements module.Listening: SHIP's wss:// listener on path,
// which mDNS announces, and on every other path too, since ship-go's client
// retries without a path and its server ignores the path (ship.md section
// 3). It serves every enabled protocol: SHIP to clients that present a
// SHIP certificate (Admit), the others to the rest. A client that offers
// no subprotocol gets SHIP, as a few SHIP devices offer none.
func (c *Config) Listeners() []module.Listener {
	l := module.Listener{
		AddressKey: "address", Address: c.Address, Path: c.Path, Fallback: Name, TLS: true,
		PingInterval: c.PingInterval, PongTimeout: c.PongTimeout, MaxMessage: c.MaxMessage,
	}
	ls := []module.Listener{l}
	if c.Path != "/" {
		l.Path = "/"
		ls = append(ls, l)
	}
	return ls
}

// Validate implements module.Config.
func (c *Config) Validate(module.Settings) error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, module.Errorf(key, format, args...)) }
	if c.Path == "" {
		c.Path = "/"
	}
	if _, port, err := net.SplitHostPort(c.Address); err != nil {
		add("address", "%q is not host:port (e.g. \":4711\")", c.Address)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("address", "port %q is not a number from 0 to 65535", port)
	}
	if !strings.HasPrefix(c.Path, "/") || len(c.Path) > 32 {
		add("path", "%q must start with / and be at most 32 bytes (it is announced over mDNS)", c.Path)
	}
	if c.SHIPID != "" {
		if err := identity.ValidateSHIPID(c.SHIPID); err != nil {
			add("ship_id", "%v", err)
		}
	}
	if _, err := identity.ParseMismatchPolicy(c.SKIMismatch); err != nil {
		add("ski_mismatch", "%q is not computed, reject or extension", c.SKIMismatch)
	}
	if c.MaxMessage < 64<<10 || c.MaxMessage > 64<<20 {
		add("max_message", "%d is outside 65536 to 67108864 bytes (SPINE messages are often several KiB)", c.MaxMessage)
	}
	if c.PingInterval <= 0 || c.PingInterval > 50*time.Second {
		add("ping_interval", "must be a positive duration of at most 50s (SHIP pings at least every 50 s)")
	}
	if c.PongTimeout <= 0 {
		add("pong_timeout", "must be a positive duration such as \"10s\"")
	}
	if c.QoS != 0 && c.QoS != 1 {
		add("qos", "%d is not 0 or 1", c.QoS)
	}
	for _, f := range [][2]string{{"brand", c.Brand}, {"model", c.Model}, {"device_type", c.DeviceType}, {"serial", c.Serial}} {
		if len(f[1]) > 32 {
			add(f[0], "longer than 32 bytes (the mDNS TXT limit)")
		}
	}
	for _, cat := range c.Categories {
		if cat < 1 || cat > 7 {
			add("categories", "%d is not a SHIP device category (1 to 7)", cat)
		}
	}
	errs = append(errs, c.Timers.validate()...)
	seen := map[string]int{}
	for i, p := range c.Peers {
		at := func(key string) string { return fmt.Sprintf("peers.%d.%s", i, key) }
		ski, err := identity.NormalizeSKI(p.SKI)
		if err != nil {
			add(at("ski"), "%q is not an SKI (40 hex digits)", p.SKI)
		} else if j, dup := seen[ski]; dup {
			add(at("ski"), "also the SKI of protocols.ship.peers[%d]", j)
		}
		seen[ski] = i
		if p.Address != "" {
			if strings.Contains(p.Address, "://") {
				if u, err := url.Parse(p.Address); err != nil || u.Scheme != "wss" || u.Host == "" {
					add(at("address"), "%q is not host:port or a wss:// URL", p.Address)
				}
			} else if _, _, err := net.SplitHostPort(p.Address); err != nil {
				add(at("address"), "%q is not host:port or a wss:// URL", p.Address)
			}
		}
		if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			add(at("path"), "%q must start with /", p.Path)
		}
		if p.SHIPID != "" {
			if err := identity.ValidateSHIPID(p.SHIPID); err != nil {
				add(at("ship_id"), "%v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (t Timers) validate() []error {
	var errs []error
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"cmi", t.CMI}, {"hello_init", t.HelloInit}, {"hello_prolong_threshold", t.HelloProlongThreshold},
		{"hello_prolong_gap", t.HelloProlongGap}, {"hello_prolong_min", t.HelloProlongMin},
		{"protocol_handshake", t.ProtocolHandshake}, {"pin", t.PIN}, {"access_methods", t.AccessMethods},
		{"close", t.Close}, {"abort_delay", t.AbortDelay},
	} {
		if d.value <= 0 {
			errs = append(errs, module.Errorf("timers."+d.key, "must be a positive duration such as \"10s\""))
		}
	}
	if len(errs) == 0 {
		cfg := t.MachineConfig()
		cfg.LocalSHIPID = "wsgate"
		if err := cfg.Validate(); err != nil {
			errs = append(errs, module.Errorf("timers", "%v", err))
		}
	}
	if len(t.ReconnectDelays) == 0 {
		errs = append(errs, module.Errorf("timers.reconnect_delays", "list at least one range such as \"3s-10s\""))
	}
	for _, r := range t.ReconnectDelays {
		if _, err := parseDelayRange(r); err != nil {
			errs = append(errs, module.Errorf("timers.reconnect_delays", "%v", err))
		}
	}
	return errs
}
