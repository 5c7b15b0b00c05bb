package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// Example is config/example.toml: every key with its default, documented.
//
//go:embed example.toml
var Example string

// Config is the whole configuration file.
type Config struct {
	Gateway   Gateway    `toml:"gateway"`
	Log       Log        `toml:"log"`
	WebSocket WebSocket  `toml:"websocket"`
	Listeners []Listener `toml:"listeners"`
	// ProtocolTables is the [protocols] table as decoded by the file;
	// Protocols is the same, each built-in protocol's table decoded by
	// its module.
	ProtocolTables map[string]toml.Primitive `toml:"protocols"`
	Protocols      Protocols                 `toml:"-"`
	MQTT           MQTT                      `toml:"mqtt"`
	HomeAssistant  HomeAssistant             `toml:"homeassistant"`
	Spool          Spool                     `toml:"spool"`
	Admin          Admin                     `toml:"admin"`
	MDNS           MDNS                      `toml:"mdns"`
	Auth           Auth                      `toml:"auth"`
	Runtime        Runtime                   `toml:"runtime"`
	// DeviceTables are the [[devices]] entries as decoded by the file;
	// Devices are the same, each with its driver's options.
	DeviceTables []toml.Primitive `toml:"devices"`
	Devices      []Device         `toml:"-"`
	Routes       []Route          `toml:"routes"`
	// Plugins are protocol plugin binaries, run out of process.
	Plugins    []Plugin   `toml:"plugins"`
	PluginHost PluginHost `toml:"plugin_host"`
	// Warnings are what Load found that works but is probably not meant:
	// a door left open.
	Warnings Problems `toml:"-"`
}

// Plugin is one [[plugins]] entry.
type Plugin struct {
	Path   string `toml:"path"`
	SHA256 string `toml:"sha256"`
	// Protocols the plugin implements, so that protocols.order can enable
	// them before the plugin has run.
	Protocols []string `toml:"protocols"`
}

// PluginHost is the [plugin_host] section: how plugins are supervised.
type PluginHost struct {
	// Dir holds plugins found at start: each executable listed in the
	// directory's SHA256SUMS file (the format of sha256sum) is run.
	Dir          string        `toml:"dir"`
	RestartMin   time.Duration `toml:"restart_min"`
	RestartMax   time.Duration `toml:"restart_max"`
	MaxFailures  int           `toml:"max_failures"`
	StallTimeout time.Duration `toml:"stall_timeout"`
}

// Admin is the [admin] section: the operator endpoints (/metrics,
// /healthz, /readyz, /devices, /reload and the protocols' routes).
type Admin struct {
	// Address to serve them on; empty turns them off.
	Address string `toml:"address"`
	// Hosts are names the endpoints answer to besides the address's own
	// host, localhost and loopback addresses (DNS rebinding protection).
	Hosts []string `toml:"hosts"`
	// TokenFile holds a bearer token every request but the health probes
	// must carry (its first line); WSGATE_ADMIN_TOKEN wins over it.
	TokenFile string `toml:"token_file"`
	Token     string `toml:"-"`
}

// MQTT is the [mqtt] section: the broker the bridge talks to.
type MQTT struct {
	// URL of an external broker; empty runs the embedded one.
	URL string `toml:"url"`
	// FallbackURLs are other nodes of the same broker cluster, tried in
	// order when URL cannot be reached.
	FallbackURLs []string `toml:"fallback_urls"`
	ClientID     string   `toml:"client_id"`
	Username     string   `toml:"username"`
	Password     string   `toml:"password"`
	// PasswordFile holds the password instead (its first line); the
	// environment variable WSGATE_MQTT_PASSWORD wins over both.
	PasswordFile       string        `toml:"password_file"`
	CAFile             string        `toml:"ca_file"`
	CertFile           string        `toml:"cert_file"`
	KeyFile            string        `toml:"key_file"`
	InsecureSkipVerify bool          `toml:"insecure_skip_verify"`
	KeepAlive          time.Duration `toml:"keepalive"`
	ConnectTimeout     time.Duration `toml:"connect_timeout"`
	ReconnectMin       time.Duration `toml:"reconnect_min"`
	ReconnectMax       time.Duration `toml:"reconnect_max"`
	PublishTimeout     time.Duration `toml:"publish_timeout"`
	TopicPrefix        string        `toml:"topic_prefix"`
	UplinkTopic        string        `toml:"uplink_topic"`
	Queue              int           `toml:"queue"`
	QueueWait          time.Duration `toml:"queue_wait"`
	MaxInflight        int           `toml:"max_inflight"`
	OfflineResults     bool          `toml:"offline_results"`
	// CommandQoS is the QoS of the subscriptions to the commands of the
	// devices an instance holds (without share_group).
	CommandQoS int `toml:"command_qos"`
	// ShareGroup: the instances of a fleet take commands through the
	// shared subscription $share/<group>/...; empty: per device.
	ShareGroup string `toml:"share_group"`
	// QoS0Connections: how many broker connections carry QoS 0 uplink
	// frames, the main one included.
	QoS0Connections int      `toml:"qos0_connections"`
	Embedded        Embedded `toml:"embedded"`
}

// Embedded is [mqtt.embedded], used when mqtt.url is empty.
type Embedded struct {
	Address string            `toml:"address"`
	Users   map[string]string `toml:"users"`
}

// Spool is the [spool] section: the on-disk queue for broker outages.
type Spool struct {
	Dir        string `toml:"dir"`
	MaxFrames  int    `toml:"max_frames"`
	MaxBytes   int64  `toml:"max_bytes"`
	FullPolicy string `toml:"full_policy"`
}

// StateDir is where the spool lives when spool.dir is empty:
// $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/wsgate, else
// ~/.local/state/wsgate.
func StateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "wsgate")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "wsgate")
	}
	return "wsgate-state"
}

// Gateway identifies this instance.
type Gateway struct {
	ID            string        `toml:"id"`
	ShutdownGrace time.Duration `toml:"shutdown_grace"`
	// CommandTimeout is how long a device has to answer a command before
	// the gateway answers it with "timeout", for every protocol and local
	// device.
	CommandTimeout time.Duration `toml:"command_timeout"`
}

// Log selects what is logged and how.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// WebSocket holds the limits and timers of every connection.
type WebSocket struct {
	PingInterval     time.Duration `toml:"ping_interval"`
	PongTimeout      time.Duration `toml:"pong_timeout"`
	CloseTimeout     time.Duration `toml:"close_timeout"`
	WriteTimeout     time.Duration `toml:"write_timeout"`
	HandshakeTimeout time.Duration `toml:"handshake_timeout"`
	MaxMessage       int64         `toml:"max_message"`
	SendQueue        int           `toml:"send_queue"`
	AllowedOrigins   []string      `toml:"allowed_origins"`
	// Limits (gateway.Limits); 0 turns each off.
	MaxConnections           int     `toml:"max_connections"`
	MaxConnectionsPerAddress int     `toml:"max_connections_per_address"`
	MessageRate              float64 `toml:"message_rate"`
	MessageBurst             int     `toml:"message_burst"`
	MessageRatePolicy        string  `toml:"message_rate_policy"`
}

// Listener is one [[listeners]] entry.
type Listener struct {
	Address     string   `toml:"address"`
	Path        string   `toml:"path"`
	Protocols   []string `toml:"protocols"`
	Fallback    string   `toml:"fallback"`
	TLSCert     string   `toml:"tls_cert"`
	TLSKey      string   `toml:"tls_key"`
	Compression bool     `toml:"compression"`
	CompressMin int      `toml:"compress_min"`
	// Auth is how devices prove who they are: "none", "token" (a token of
	// [[auth.tokens]], in the protocol's hello or Authorization: Bearer) or
	// "mtls" (a client certificate from ClientCA; the device id from its
	// DeviceID: "cn" or "san-uri").
	Auth     string `toml:"auth"`
	ClientCA string `toml:"client_ca"`
	DeviceID string `toml:"device_id"`
}

// Protocols is the [protocols] section.
type Protocols struct {
	// Order lists the enabled protocols in the server's preference order.
	Order  []string `toml:"order"`
	Policy string   `toml:"policy"`
	// Modules holds every built-in protocol's configuration, by name:
	// its [protocols.<name>] table decoded over its defaults.
	Modules map[string]module.Config `toml:"-"`
}

// defaultCompressMin is the smallest message sent compressed.
const defaultCompressMin = 256

// Default returns the configuration `wsgate run` uses without a file.
func Default() Config {
	host, err := os.Hostname()
	if err != nil || !validID(host) {
		host = "wsgate"
	}
	return Config{
		Gateway: Gateway{ID: host, ShutdownGrace: 10 * time.Second, CommandTimeout: 30 * time.Second},
		Log:     Log{Level: "info", Format: "text"},
		WebSocket: WebSocket{
			PingInterval:     30 * time.Second,
			PongTimeout:      10 * time.Second,
			CloseTimeout:     5 * time.Second,
			WriteTimeout:     10 * time.Second,
			HandshakeTimeout: 10 * time.Second,
			MaxMessage:       64 << 10,
			SendQueue:        256,
			// A Raspberry Pi holds 10,000 idle devices in well under 100 MB;
			// a home device sends a reading every few seconds, so 100 a
			// second is a runaway loop, held back without losing anything.
			MaxConnections:           10000,
			MaxConnectionsPerAddress: 256,
			MessageRate:              100,
			MessageBurst:             200,
			MessageRatePolicy:        "wait",
		},
		Listeners: []Listener{{Address: ":8080", Path: "/", CompressMin: defaultCompressMin, Auth: AuthNone, DeviceID: "cn"}},
		Protocols: Protocols{Order: module.DefaultOrder(), Policy: string(protocols.PolicyClient), Modules: defaultModules()},
		MQTT: MQTT{
			KeepAlive:       30 * time.Second,
			ConnectTimeout:  10 * time.Second,
			ReconnectMin:    time.Second,
			ReconnectMax:    time.Minute,
			PublishTimeout:  30 * time.Second,
			TopicPrefix:     "wsgate",
			UplinkTopic:     "{prefix}/{device}/{channel}",
			Queue:           4096,
			QueueWait:       time.Second,
			MaxInflight:     1024,
			CommandQoS:      1,
			QoS0Connections: 1,
			// Loopback only, as Mosquitto 2 does: anyone on the network
			// could otherwise command the devices (docs/SECURITY.md).
			Embedded: Embedded{Address: "127.0.0.1:1883"},
		},
		HomeAssistant: defaultHomeAssistant(),
		Spool:         Spool{MaxFrames: 100000, MaxBytes: 64 << 20, FullPolicy: "reject"},
		Admin:         Admin{Address: "127.0.0.1:9180"},
		MDNS:          MDNS{Enabled: true},
		Auth:          defaultAuth(),
		Runtime:       defaultRuntime(),
		PluginHost:    PluginHost{RestartMin: time.Second, RestartMax: 30 * time.Second, MaxFailures: 5, StallTimeout: 10 * time.Second},
	}
}

// Problem is one thing wrong with a configuration file, or, as a
// Warning, one thing that works but is probably not what is wanted (an
// open door).
type Problem struct {
	File    string
	Line    int    // 0 when the key is not in the file (a default)
	Key     string // e.g. "listeners[1].address"
	Msg     string
	Warning bool
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a file; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes and validates a configuration file. Its error lists
// every problem (as Problems) when the file is readable.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, string(data))
}

// Parse decodes and validates doc; name is used in problem reports.
func Parse(name, doc string) (Config, error) {
	cfg := Default()
	cfg.Listeners = nil // a file that lists none gets the default below
	lines := locateKeys(doc)
	md, sectionErrs, failedSections, straySections, err := decodeSections(doc, &cfg)
	if err != nil {
		return Config{}, Problems{decodeProblem(name, lines, err)}
	}
	if len(cfg.Listeners) == 0 {
		cfg.Listeners = Default().Listeners
	}
	var ps Problems
	errs, failed, stray := cfg.decodeProtocols(&md)
	for _, err := range append(sectionErrs, errs...) {
		ps = append(ps, decodeProblem(name, lines, err))
	}
	unknown := map[string]bool{}
	undecided := map[string]bool{} // tables whose decoding stopped at a problem
	for _, section := range failedSections {
		undecided[section] = true
	}
	for _, table := range failed {
		undecided[toml.Key{"protocols", table}.String()] = true
	}
	var strayKeys []toml.Key
	for _, section := range straySections {
		strayKeys = append(strayKeys, toml.Key{section})
	}
	for _, table := range stray {
		strayKeys = append(strayKeys, toml.Key{"protocols", table})
	}
	for _, key := range strayKeys {
		unknown[key.String()] = true // its keys are not reported one by one
		msg := "unknown key"
		if t := md.Type(key...); t == "Hash" {
			msg = "unknown table" + tableHint(key)
		}
		ps = append(ps, Problem{File: name, Line: lines.line(key.String()), Key: key.String(), Msg: msg})
	}
	skipDeviceKeys := map[string]bool{} // "devices.N." prefixes whose other keys are not reported
	// Each [[devices]] entry is decoded twice, for its id and driver and
	// for the driver's options; keys neither knows stay undecoded.
	for i, table := range cfg.DeviceTables {
		d, err := decodeDevice(&md, table)
		if err != nil {
			// Decoding stopped at this value: the table's other keys are
			// not known to be wrong, so only this problem is reported.
			ps = append(ps, decodeProblem(name, lines, err))
			skipDeviceKeys[fmt.Sprintf("devices.%d.", i)] = true
			continue
		}
		if d.Options == nil {
			line := lines.line(fmt.Sprintf("devices.%d.driver", i))
			ps = append(ps, Problem{File: name, Line: line, Key: fmt.Sprintf("devices[%d].driver", i),
				Msg: fmt.Sprintf("unknown driver %q (built in: %s)", d.Driver, strings.Join(devices.Drivers(), ", "))})
			skipDeviceKeys[fmt.Sprintf("devices.%d.", i)] = true
		}
		cfg.Devices = append(cfg.Devices, d)
	}
	for _, key := range md.Undecoded() {
		if underUnknown(key, undecided) {
			continue // not known to be wrong: decoding stopped before it
		}
		k := key.String()
		unknown[k] = true
		line, at := lines.takeUnindexed(k)
		if underUnknown(key, unknown) {
			continue // the unknown table is reported, not each of its keys
		}
		if prefix, _, ok := strings.Cut(at, "."); ok && prefix == "devices" {
			if rest := strings.SplitN(at, ".", 3); len(rest) == 3 && skipDeviceKeys[rest[0]+"."+rest[1]+"."] {
				continue // options of an unknown driver: the driver is reported
			}
		}
		msg := "unknown key"
		if t := md.Type(key...); t == "Hash" || t == "ArrayHash" {
			msg = "unknown table" + tableHint(key)
		}
		ps = append(ps, Problem{File: name, Line: line, Key: displayKey(at), Msg: msg})
	}
	for _, key := range md.Keys() {
		// A bare integer decodes into a time.Duration as nanoseconds: 30
		// would be 30ns, never what anyone means.
		if md.Type(key...) == "Integer" && fieldType(key) == durationType {
			line, at := lines.takeUnindexed(key.String())
			ps = append(ps, Problem{File: name, Line: line, Key: displayKey(at), Msg: `must be a duration string such as "30s" (a bare number would be nanoseconds)`})
		}
	}
	var warnings Problems
	for _, f := range cfg.validate() {
		if underUnknown(toml.Key(strings.Split(f.path, ".")), undecided) || undecided[f.path] {
			continue // decoding stopped there: what is left is not known to be wrong
		}
		at := f.path
		if f.at != "" {
			at = f.at
		}
		p := Problem{File: name, Line: lines.line(at), Key: displayKey(f.path), Msg: f.msg, Warning: f.warn}
		if f.warn {
			warnings = append(warnings, p)
		} else {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return Config{}, ps.sorted()
	}
	cfg.Warnings = warnings.sorted()
	return cfg, nil
}

// sorted puts problems in file order; those of keys the file does not set
// come last.
func (ps Problems) sorted() Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line - a.Line
		}
		return a.Line - b.Line
	})
	return ps
}

// decodeSections decodes doc one top-level section at a time into its
// field of cfg, so that a value of the wrong type in one section does not
// hide the problems of the others (the decoder stops at the first value it
// cannot take). It returns the decoding errors and the sections they
// stopped; err is a syntax error, which ends everything.
func decodeSections(doc string, cfg *Config) (md toml.MetaData, errs []error, failed, stray []string, err error) {
	var sections map[string]toml.Primitive
	if md, err = toml.Decode(doc, &sections); err != nil {
		return md, nil, nil, nil, err
	}
	v := reflect.ValueOf(cfg).Elem()
	known := map[string]bool{}
	for i := range v.NumField() {
		key, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("toml"), ",")
		section, ok := sections[key]
		known[key] = true
		if key == "" || key == "-" || !ok {
			continue
		}
		if err := md.PrimitiveDecode(section, v.Field(i).Addr().Interface()); err != nil {
			errs, failed = append(errs, err), append(failed, key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(sections)) {
		if !known[key] {
			stray = append(stray, key)
		}
	}
	return md, errs, failed, stray, nil
}

// underUnknown reports whether a parent of key is an unknown key.
func underUnknown(key toml.Key, unknown map[string]bool) bool {
	for i := 1; i < len(key); i++ {
		if unknown[key[:i].String()] {
			return true
		}
	}
	return false
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	// typeErr matches the decoder's type mismatch errors, which are not
	// ParseErrors: `toml: line 3 (last key "websocket.max_message"):
	// incompatible types: TOML value has type string; destination has type
	// integer`.
	typeErr = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)
	typeMsg = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
)

// decodeProblem turns a decoding error into a problem with a line and key
// where the decoder tells them.
func decodeProblem(name string, lines *keyLines, err error) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if d, ok := strings.CutPrefix(msg, "invalid duration: "); ok {
			msg = d + ` is not a duration such as "500ms", "10s" or "5m"`
		}
		key := pe.LastKey
		if key != "" {
			key = displayKey(lines.indexedAt(key, pe.Position.Line))
		}
		return Problem{File: name, Line: pe.Position.Line, Key: key, Msg: msg}
	}
	m := typeErr.FindStringSubmatch(err.Error())
	if m == nil {
		return Problem{File: name, Msg: err.Error()}
	}
	line, _ := strconv.Atoi(m[1])
	key, uerr := strconv.Unquote(m[2])
	if uerr != nil {
		key = m[2]
	}
	msg := m[3]
	if t := typeMsg.FindStringSubmatch(msg); t != nil {
		want := t[2]
		if ft := fieldType(strings.Split(key, ".")); ft != nil {
			want = describeType(ft)
		}
		msg = fmt.Sprintf("must be %s, not %s", want, describeTOML(t[1]))
	}
	return Problem{File: name, Line: line, Key: displayKey(lines.indexedAt(key, line)), Msg: msg}
}

// fieldType is the Go type a key decodes into, or nil when Config has no
// such key.
func fieldType(key []string) reflect.Type {
	if len(key) >= 2 && key[0] == "protocols" && key[1] != "order" && key[1] != "policy" {
		m, ok := module.Lookup(key[1])
		if !ok {
			return nil
		}
		return keyType(reflect.TypeOf(m.NewConfig()).Elem(), key[2:])
	}
	if len(key) >= 1 && key[0] == "protocols" {
		return keyType(reflect.TypeFor[Protocols](), key[1:])
	}
	return keyType(reflect.TypeFor[Config](), key)
}

// keyType is the Go type key decodes into below a value of type t.
func keyType(t reflect.Type, key []string) reflect.Type {
	for _, part := range key {
		for t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			t = t.Elem() // an array of tables: its elements' keys
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			var found bool
			for i := range t.NumField() {
				f := t.Field(i)
				if name, _, _ := strings.Cut(f.Tag.Get("toml"), ","); name == part {
					t, found = f.Type, true
					break
				}
			}
			if !found {
				return nil
			}
		default:
			return nil
		}
	}
	return t
}

// describeType names what a key of Go type t takes, in TOML words.
func describeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration string such as "10s"`
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "an array of strings"
	case t.Kind() == reflect.Slice:
		return "an array"
	}
	return "a table"
}

// describeTOML names the Go type the decoder reports for a TOML value.
func describeTOML(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "int64":
		return "an integer"
	case goType == "float64":
		return "a float"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["):
		return "a table"
	case strings.Contains(goType, "time.") || strings.Contains(goType, "Local"):
		return "a date or time"
	}
	return goType
}

// fault is a validation failure at a key path such as "listeners.1.path".
type fault struct {
	path string
	msg  string
	at   string // where to point instead of path, e.g. one entry of a table
	warn bool   // a warning, not an error
}

// displayKey turns "listeners.1.path" into "listeners[1].path".
func displayKey(path string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for i, p := range parts {
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func (c *Config) validate() []fault {
	var fs []fault
	add := func(path, format string, args ...any) {
		fs = append(fs, fault{path: path, msg: fmt.Sprintf(format, args...)})
	}
	if !validID(c.Gateway.ID) {
		add("gateway.id", "%q must be 1-128 characters without / + # NUL or a leading $", c.Gateway.ID)
	}
	if c.Gateway.ShutdownGrace <= 0 {
		add("gateway.shutdown_grace", "must be a positive duration such as \"10s\"")
	}
	if c.Gateway.CommandTimeout <= 0 {
		add("gateway.command_timeout", "must be a positive duration such as \"30s\"")
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		add("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "%q is not text or json", c.Log.Format)
	}

	ws := c.WebSocket
	if ws.PingInterval < 0 {
		add("websocket.ping_interval", "must not be negative (0 turns keepalive pings off)")
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"websocket.pong_timeout", ws.PongTimeout}, {"websocket.close_timeout", ws.CloseTimeout},
		{"websocket.write_timeout", ws.WriteTimeout}, {"websocket.handshake_timeout", ws.HandshakeTimeout},
	} {
		if d.value <= 0 {
			add(d.key, "must be a positive duration such as \"10s\"")
		}
	}
	if ws.MaxMessage < 128 || ws.MaxMessage > 64<<20 {
		add("websocket.max_message", "%d is outside 128 to 67108864 bytes", ws.MaxMessage)
	}
	if ws.SendQueue < 1 || ws.SendQueue > 1<<16 {
		add("websocket.send_queue", "%d is outside 1 to 65536 messages", ws.SendQueue)
	}
	for _, l := range []struct {
		key   string
		value int
	}{{"max_connections", ws.MaxConnections}, {"max_connections_per_address", ws.MaxConnectionsPerAddress}, {"message_burst", ws.MessageBurst}} {
		if l.value < 0 {
			add("websocket."+l.key, "must not be negative (0 turns the limit off)")
		}
	}
	if ws.MessageRate < 0 {
		add("websocket.message_rate", "must not be negative (0 turns the limit off)")
	}
	if !gateway.RatePolicy(ws.MessageRatePolicy).Valid() {
		add("websocket.message_rate_policy", "%q is not wait, busy or close", ws.MessageRatePolicy)
	}

	order := c.Protocols.Order
	if len(order) == 0 {
		add("protocols.order", "enable at least one protocol")
	}
	declared := c.pluginProtocols()
	builtin := module.Names()
	for i, name := range order {
		tag, omitted := module.Omitted(name)
		switch {
		case slices.Index(order, name) != i:
			add("protocols.order", "protocol %q is listed twice", name)
		case slices.Contains(builtin, name) || slices.Contains(declared, name):
		case omitted:
			add("protocols.order", "%q is not in this build of wsgate (built with -tags %s)", name, tag)
		case c.PluginHost.Dir == "":
			add("protocols.order", "unknown protocol %q (built in: %s; plugins declare theirs in [[plugins]] protocols)", name, strings.Join(builtin, ", "))
		}
	}
	if !protocols.Policy(c.Protocols.Policy).Valid() {
		add("protocols.policy", "%q is not client or server", c.Protocols.Policy)
	}
	fs = append(fs, c.validateModules()...)

	fs = append(fs, c.MQTT.validate()...)
	fs = append(fs, c.validateHomeAssistant()...)
	fs = append(fs, c.validateRuntime()...)
	fs = append(fs, c.Spool.validate()...)
	fs = append(fs, c.Admin.validate()...)
	fs = append(fs, c.MDNS.validate()...)
	fs = append(fs, c.Auth.validate()...)
	fs = append(fs, c.validatePlugins()...)
	fs = append(fs, c.validateDevices()...)

	moduleListeners := c.moduleListeners()
	type route struct{ address, path string }
	seen := map[route]int{}
	tlsByAddr := map[string]bool{}
	for i, l := range c.Listeners {
		at := func(key string) string { return fmt.Sprintf("listeners.%d.%s", i, key) }
		if _, port, err := net.SplitHostPort(l.Address); err != nil {
			add(at("address"), "%q is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")", l.Address)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add(at("address"), "port %q is not a number from 0 to 65535", port)
		}
		if l.Path == "" {
			c.Listeners[i].Path, l.Path = "/", "/"
		}
		if l.CompressMin == 0 {
			c.Listeners[i].CompressMin = defaultCompressMin
		} else if l.CompressMin < 0 {
			add(at("compress_min"), "must not be negative")
		}
		if !strings.HasPrefix(l.Path, "/") {
			add(at("path"), "%q must start with /", l.Path)
		}
		if j, dup := seen[route{l.Address, l.Path}]; dup {
			add(at("path"), "address %s and path %s are already used by listeners[%d]", l.Address, l.Path, j)
		}
		seen[route{l.Address, l.Path}] = i
		for _, name := range l.Protocols {
			if !slices.Contains(order, name) {
				add(at("protocols"), "%q is not enabled in protocols.order", name)
			}
		}
		if l.Fallback != "" {
			if !slices.Contains(order, l.Fallback) {
				add(at("fallback"), "%q is not enabled in protocols.order", l.Fallback)
			} else if len(l.Protocols) > 0 && !slices.Contains(l.Protocols, l.Fallback) {
				add(at("fallback"), "%q is not among this listener's protocols", l.Fallback)
			}
		}
		hasTLS := l.TLSCert != "" || l.TLSKey != ""
		switch {
		case l.TLSCert != "" && l.TLSKey == "":
			add(at("tls_cert"), "needs tls_key too (the certificate's private key)")
		case l.TLSCert == "" && l.TLSKey != "":
			add(at("tls_key"), "needs tls_cert too (the certificate of this key)")
		}
		for _, f := range [][2]string{{"tls_cert", l.TLSCert}, {"tls_key", l.TLSKey}} {
			if f[1] != "" {
				if _, err := os.Stat(f[1]); err != nil {
					add(at(f[0]), "%s", fileProblem(f[1], err))
				}
			}
		}
		fs = append(fs, c.validateListenerAuth(i, &c.Listeners[i])...)
		if l.Auth != "" && l.Auth != AuthNone {
			for _, name := range l.Protocols {
				if m, ok := module.Lookup(name); ok && m.SelfAuthenticating {
					add(at("protocols"), "%q authenticates its devices itself; a listener with auth = %q cannot serve it", name, l.Auth)
				}
			}
		}
		if prev, ok := tlsByAddr[l.Address]; ok && prev != hasTLS {
			add(at("tls_cert"), "listeners on %s must all use TLS or all not", l.Address)
		}
		tlsByAddr[l.Address] = hasTLS
		if ml, ok := moduleListeners[l.Address]; ok {
			add(at("address"), "%s is the %s protocol's own listener (protocols.%s.%s); give this listener another address",
				l.Address, ml.protocol, ml.protocol, ml.AddressKey)
		}
	}
	return fs
}

// fileProblem says why a file named in the config cannot be used.
func fileProblem(path string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("cannot read %q: %v", path, err)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// validID: the gateway id is an MQTT topic level.
func validID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.HasPrefix(id, "$") && !strings.ContainsAny(id, "/+#\x00")
}
