package exec

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/devices"
	"github.com/wsgate/wsgate/devices/devicetest"
	"github.com/wsgate/wsgate/protocols"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string
	}{
		{"oneshot", func(c *Config) {}, nil},
		{"bare name from PATH", func(c *Config) { c.Command = []string{"relay", "{args}"} }, nil},
		{"daemon", func(c *Config) { c.Mode, c.Command = ModeDaemon, []string{"/bin/sensor", "--pin", "4", "{{json}}"} }, nil},
		{"empty command", func(c *Config) { c.Command = nil },
			[]string{`command: missing: the program and its arguments, such as ["/usr/local/bin/relay", "{args.state}"]`}},
		{"empty program", func(c *Config) { c.Command = []string{""} },
			[]string{"command[0]: the program is empty"}},
		{"relative program", func(c *Config) { c.Command = []string{"./relay", "{name}"} },
			[]string{`command[0]: "./relay" is a relative path; use an absolute path, or a bare name to look it up in PATH`}},
		{"program placeholder", func(c *Config) { c.Command = []string{"/usr/bin/{name}"} },
			[]string{`command[0]: the program "/usr/bin/{name}" cannot hold placeholders (or braces)`}},
		{"unknown mode", func(c *Config) { c.Mode = "cron" },
			[]string{`mode: "cron" is not "oneshot" or "daemon"`}},
		{"unknown placeholders", func(c *Config) {
			c.Command = []string{"/bin/relay", "{nmae}", "--x={args.}", "{args.a.b}", "{args", "a}b", "{}"}
		}, []string{
			"command[1]: unknown placeholder {nmae} (known: {name}, {id}, {device}, {args} and {args.FIELD})",
			"command[2]: {args.} names no field",
			"command[3]: {args.a.b}: only top-level fields of args can be used",
			`command[4]: a "{" without its "}"; write "{{" for a literal one`,
			`command[5]: a lone "}"; write "}}" for a literal one`,
			"command[6]: unknown placeholder {} (known: {name}, {id}, {device}, {args} and {args.FIELD})",
		}},
		{"placeholders in a daemon", func(c *Config) { c.Mode, c.Command = ModeDaemon, []string{"/bin/sensor", "{name}"} },
			[]string{`command[1]: "{name}" holds placeholders, which only mode "oneshot" fills`}},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second },
			[]string{`timeout: must be a positive duration such as "10s"`}},
		{"bare number timeout", func(c *Config) { c.Timeout = 10 },
			[]string{`timeout: 10ns is less than 1ms; write a duration string such as "10s" (a bare number is nanoseconds)`}},
		{"dir and env", func(c *Config) { c.Dir, c.Env = "tmp", []string{"A=1", "B", "=2"} },
			[]string{
				`dir: "tmp" is not an absolute path`,
				`env: "B" is not KEY=value`,
				`env: "=2" is not KEY=value`,
			}},
		{"daemon output", func(c *Config) { c.Encoding, c.Channel, c.QoS, c.MaxLine, c.MaxOutput = "hex", "status", 2, 0, -1 },
			[]string{
				"max_output: -1 is not a positive number of bytes",
				`encoding: "hex" is not "text" or "json"`,
				`channel: "status" starts with cmd or status, which belong to the gateway`,
				"qos: 2 is not 0 or 1",
				"max_line: 0 is not a positive number of bytes",
			}},
		{"restart", func(c *Config) { c.RestartMin, c.RestartMax, c.StopGrace = time.Minute, time.Second, 0 },
			[]string{
				"restart_max: 1s is less than restart_min (1m0s)",
				`stop_grace: must be a positive duration such as "10s"`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			c.Command = []string{"/usr/local/bin/relay", "{name}", "{args.state}"}
			tt.modify(c)
			got := devicetest.Problems(t, c)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestArgv(t *testing.T) {
	t.Parallel()
	command := []string{"/bin/relay", "{name}", "{args.state}", "--n={args.n}", "{args.obj}", "{args}", "{id}@{device}", "{{lit}}"}
	tests := []struct {
		name, cmdName, args string
		want                []string
		err                 string
	}{
		{"fields", "set", `{"state": "on", "n": 5, "obj": {"x": [1, 2]}}`,
			[]string{"/bin/relay", "set", "on", "--n=5", `{"x":[1,2]}`, `{"state": "on", "n": 5, "obj": {"x": [1, 2]}}`, "c7@relay", "{lit}"}, ""},
		{"null and strings with quotes", "set", `{"state": "say \"hi\"", "n": null, "obj": "a b"}`,
			[]string{"/bin/relay", "set", `say "hi"`, "--n=null", "a b", `{"state": "say \"hi\"", "n": null, "obj": "a b"}`, "c7@relay", "{lit}"}, ""},
		{"missing field", "set", `{"n": 1}`, nil, `{args.state}: args have no field "state"`},
		{"args not an object", "set", `[1]`, nil, "{args.state}: args are not a JSON object"},
		{"no args", "set", ``, nil, "{args.state}: args are not a JSON object"},
	}
	templates := []template{{{text: command[0]}}}
	for _, a := range command[1:] {
		tmpl, err := parseTemplate(a)
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, tmpl)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := argv(templates, "relay", protocols.Command{ID: "c7", Name: tt.cmdName, Args: json.RawMessage(tt.args)})
			if errText(err) != tt.err || strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") {
				t.Errorf("argv = %q, %v\nwant %q, %s", got, err, tt.want, tt.err)
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRegistered(t *testing.T) {
	t.Parallel()
	newConfig, ok := devices.Lookup("exec")
	if !ok {
		t.Fatal(`driver "exec" not registered`)
	}
	if _, ok := newConfig().(*Config); !ok {
		t.Fatalf("NewConfig returns %T", newConfig())
	}
}

// TestSample decodes the sample the way the config package does: each
// [[devices]] table into the id and driver, and again into the options,
// with no key left over.
func TestSample(t *testing.T) {
	t.Parallel()
	modes := map[string]bool{}
	for _, e := range devicetest.Sample(t, Sample, "exec", NewConfig) {
		modes[e.Config.Mode] = true
	}
	if !modes[ModeOneshot] || !modes[ModeDaemon] {
		t.Errorf("the sample shows modes %v, want both", modes)
	}
	for _, key := range []string{"mode", "command", "dir", "env", "timeout", "max_output", "encoding", "channel",
		"qos", "max_line", "restart_min", "restart_max", "stop_grace"} {
		if !strings.Contains(Sample, "\n"+key+" = ") {
			t.Errorf("sample lacks %s", key)
		}
	}
}
