package exec

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wsgate/wsgate/devices"
)

// Sample is [[devices]] entries for a Raspberry Pi, ready to copy: a
// relay switched by a script per command, and a sensor daemon.
//
//go:embed sample.toml
var Sample string

// Modes.
const (
	ModeOneshot = "oneshot" // one process per command
	ModeDaemon  = "daemon"  // one long-running process
)

// Encodings of a daemon's stdout lines.
const (
	EncodingText = "text" // the line as a JSON string
	EncodingJSON = "json" // each line is a JSON value, published as is
)

// Config is the options of an exec device. NewConfig presets the defaults.
type Config struct {
	// Mode is "oneshot" (a process per command) or "daemon".
	Mode string `toml:"mode"`
	// Command is the program and its arguments, never run by a shell. A
	// bare program name is looked up in PATH when the device opens. In
	// oneshot mode the arguments are templates: {name}, {id}, {device},
	// {args} and {args.FIELD} each fill in, within one argument; {{ and }}
	// stand for literal braces.
	Command []string `toml:"command"`
	// Dir is the working directory; empty is the gateway's.
	Dir string `toml:"dir"`
	// Env lists KEY=value pairs added to the gateway's environment.
	Env []string `toml:"env"`

	// Timeout bounds one oneshot process; it is killed (with its process
	// group) when it runs longer.
	Timeout time.Duration `toml:"timeout"`
	// MaxOutput bounds the stdout and the stderr kept from a oneshot
	// process, each, in bytes.
	MaxOutput int `toml:"max_output"`

	// Encoding turns a daemon's stdout lines into payloads: text or json.
	Encoding string `toml:"encoding"`
	// Channel is the channel a daemon's lines are published on.
	Channel string `toml:"channel"`
	// QoS is the MQTT QoS of a daemon's frames, 0 or 1.
	QoS int `toml:"qos"`
	// MaxLine bounds one stdout or stderr line of a daemon, in bytes.
	MaxLine int `toml:"max_line"`
	// RestartMin and RestartMax bound the delay before a daemon that exited
	// starts again; it doubles while it keeps exiting.
	RestartMin time.Duration `toml:"restart_min"`
	RestartMax time.Duration `toml:"restart_max"`
	// StopGrace is how long a daemon has to exit after SIGTERM before it
	// gets SIGKILL.
	StopGrace time.Duration `toml:"stop_grace"`
}

// NewConfig returns a Config with the defaults: oneshot with a 10s timeout;
// for a daemon, text lines on channel "stdout" at QoS 1.
func NewConfig() *Config {
	return &Config{
		Mode:       ModeOneshot,
		Timeout:    10 * time.Second,
		MaxOutput:  4096,
		Encoding:   EncodingText,
		Channel:    "stdout",
		QoS:        1,
		MaxLine:    4096,
		RestartMin: time.Second,
		RestartMax: 30 * time.Second,
		StopGrace:  5 * time.Second,
	}
}

func init() {
	devices.Register("exec", func() devices.Config { return NewConfig() })
}

// AcceptsFrames implements devices.FrameTaker: a daemon's stdin takes
// routed frames.
func (c *Config) AcceptsFrames() bool { return c.Mode == ModeDaemon }

// Validate reports every problem of the options, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, devices.KeyError(key, format, args...))
	}
	modeOK := c.Mode == ModeOneshot || c.Mode == ModeDaemon
	if !modeOK {
		add("mode", "%q is not %q or %q", c.Mode, ModeOneshot, ModeDaemon)
	}
	if len(c.Command) == 0 {
		add("command", `missing: the program and its arguments, such as ["/usr/local/bin/relay", "{args.state}"]`)
	}
	for i, arg := range c.Command {
		key := fmt.Sprintf("command[%d]", i)
		if i == 0 {
			if problem := programProblem(arg); problem != "" {
				add(key, "%s", problem)
			}
			continue
		}
		t, err := parseTemplate(arg)
		switch {
		case err != nil:
			add(key, "%v", err)
		case !t.literal() && c.Mode == ModeDaemon:
			add(key, "%q holds placeholders, which only mode %q fills", arg, ModeOneshot)
		}
	}
	if c.Dir != "" && !filepath.IsAbs(c.Dir) {
		add("dir", "%q is not an absolute path", c.Dir)
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			add("env", "%q is not KEY=value", kv)
		}
	}
	durationOK(add, "timeout", c.Timeout)
	if c.MaxOutput <= 0 {
		add("max_output", "%d is not a positive number of bytes", c.MaxOutput)
	}
	if c.Encoding != EncodingText && c.Encoding != EncodingJSON {
		add("encoding", "%q is not %q or %q", c.Encoding, EncodingText, EncodingJSON)
	}
	if err := devices.ValidChannel(c.Channel); err != nil {
		add("channel", "%v", err)
	}
	if c.QoS != 0 && c.QoS != 1 {
		add("qos", "%d is not 0 or 1", c.QoS)
	}
	if c.MaxLine <= 0 {
		add("max_line", "%d is not a positive number of bytes", c.MaxLine)
	}
	minOK := durationOK(add, "restart_min", c.RestartMin)
	if durationOK(add, "restart_max", c.RestartMax) && minOK && c.RestartMax < c.RestartMin {
		add("restart_max", "%s is less than restart_min (%s)", c.RestartMax, c.RestartMin)
	}
	durationOK(add, "stop_grace", c.StopGrace)
	return errors.Join(errs...)
}

// programProblem says what is wrong with the program of a command, or "".
func programProblem(p string) string {
	switch {
	case p == "":
		return "the program is empty"
	case strings.ContainsAny(p, "{}"):
		return fmt.Sprintf("the program %q cannot hold placeholders (or braces)", p)
	case !filepath.IsAbs(p) && strings.ContainsRune(p, filepath.Separator):
		return fmt.Sprintf("%q is a relative path; use an absolute path, or a bare name to look it up in PATH", p)
	}
	return ""
}

// durationOK reports a duration that is not positive, or so small that it
// must be a bare number (nanoseconds); it returns whether d is fine.
func durationOK(add func(key, format string, args ...any), key string, d time.Duration) bool {
	switch {
	case d <= 0:
		add(key, `must be a positive duration such as "10s"`)
	case d < time.Millisecond:
		add(key, `%s is less than 1ms; write a duration string such as "10s" (a bare number is nanoseconds)`, d)
	default:
		return true
	}
	return false
}

// Open creates the device: a *Oneshot or a *Daemon. It resolves the
// program, in PATH for a bare name, and fails when it is not an
// executable file; the daemon itself starts in Run.
func (c *Config) Open(id string, log *slog.Logger) (devices.Device, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	path, err := osexec.LookPath(c.Command[0])
	if err != nil {
		return nil, fmt.Errorf("exec: command: %w", err)
	}
	if path != c.Command[0] {
		log.Info("program found in PATH", "program", c.Command[0], "path", path)
	}
	// The program is argv[0] as written; the arguments are templates.
	templates := make([]template, len(c.Command))
	templates[0] = template{{text: c.Command[0]}}
	for i, arg := range c.Command[1:] {
		templates[i+1], _ = parseTemplate(arg) // validated
	}
	var env []string // nil: the gateway's
	if len(c.Env) > 0 {
		env = append(os.Environ(), c.Env...) // the last value of a key wins
	}
	if c.Mode == ModeDaemon {
		return newDaemon(*c, path, templates, env, log), nil
	}
	return newOneshot(id, *c, path, templates, env, log), nil
}

var (
	_ devices.Config     = (*Config)(nil)
	_ devices.FrameTaker = (*Config)(nil)
)
