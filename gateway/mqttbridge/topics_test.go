package mqttbridge

import (
	"errors"
	"strings"
	"testing"
)

func mustTopics(t *testing.T, prefix, gateway, template string) Topics {
	t.Helper()
	topics, err := NewTopics(prefix, gateway, template)
	if err != nil {
		t.Fatalf("NewTopics(%q, %q, %q): %v", prefix, gateway, template, err)
	}
	return topics
}

func TestNewTopicsRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, prefix, gateway, template string
	}{
		{"empty prefix", "", "gw", DefaultUplinkTemplate},
		{"empty prefix level", "a//b", "gw", DefaultUplinkTemplate},
		{"prefix trailing slash", "wsgate/", "gw", DefaultUplinkTemplate},
		{"prefix plus", "a/+", "gw", DefaultUplinkTemplate},
		{"prefix hash", "#", "gw", DefaultUplinkTemplate},
		{"prefix dollar", "$SYS", "gw", DefaultUplinkTemplate},
		{"prefix dollar in a later level", "a/$b", "gw", DefaultUplinkTemplate},
		{"prefix NUL", "ws\x00gate", "gw", DefaultUplinkTemplate},
		{"empty gateway", "wsgate", "", DefaultUplinkTemplate},
		{"gateway with a slash", "wsgate", "a/b", DefaultUplinkTemplate},
		{"gateway wildcard", "wsgate", "gw+", DefaultUplinkTemplate},
		{"gateway dollar", "wsgate", "$gw", DefaultUplinkTemplate},
		{"no device", "wsgate", "gw", "{prefix}/{channel}"},
		{"no channel", "wsgate", "gw", "{prefix}/{device}"},
		{"device twice", "wsgate", "gw", "{prefix}/{device}/{device}/{channel}"},
		{"channel twice", "wsgate", "gw", "{prefix}/{device}/{channel}/{channel}"},
		{"placeholder inside a level", "wsgate", "gw", "{prefix}/dev-{device}/{channel}"},
		{"two placeholders in a level", "wsgate", "gw", "{prefix}/{device}{channel}"},
		{"unknown placeholder", "wsgate", "gw", "{prefix}/{site}/{device}/{channel}"},
		{"empty template level", "wsgate", "gw", "{prefix}//{device}/{channel}"},
		{"leading slash", "wsgate", "gw", "/{device}/{channel}"},
		{"trailing slash", "wsgate", "gw", "{prefix}/{device}/{channel}/"},
		{"wildcard literal", "wsgate", "gw", "{prefix}/+/{device}/{channel}"},
		{"hash literal", "wsgate", "gw", "{prefix}/{device}/{channel}/#"},
		{"dollar literal", "wsgate", "gw", "$share/{device}/{channel}"},
		{"NUL literal", "wsgate", "gw", "{prefix}/a\x00/{device}/{channel}"},
	} {
		if _, err := NewTopics(tc.prefix, tc.gateway, tc.template); err == nil {
			t.Errorf("%s: NewTopics(%q, %q, %q) succeeded", tc.name, tc.prefix, tc.gateway, tc.template)
		}
	}
}

func TestUplinkTemplates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		prefix, template, device, channel, want string
	}{
		{"wsgate", DefaultUplinkTemplate, "heatpump-7", "telemetry", "wsgate/heatpump-7/telemetry"},
		{"wsgate", DefaultUplinkTemplate, "d1", "sensors/temp", "wsgate/d1/sensors/temp"},
		{"home/hub", DefaultUplinkTemplate, "d1", "t", "home/hub/d1/t"},
		{"wsgate", "{prefix}/{gateway}/{device}/{channel}", "d1", "a/b", "wsgate/gw-1/d1/a/b"},
		{"wsgate", "site/{device}/data/{channel}", "d1", "t", "site/d1/data/t"},
		{"wsgate", "{channel}/{device}", "d1", "t/u", "t/u/d1"},
		{"wsgate", "{prefix}/{device}/{channel}/{gateway}/{gateway}", "d", "c", "wsgate/d/c/gw-1/gw-1"},
		// Levels a device may use that merely look special.
		{"wsgate", DefaultUplinkTemplate, "d1", "x/status", "wsgate/d1/x/status"},
		{"wsgate", DefaultUplinkTemplate, "d1", "a$/b", "wsgate/d1/a$/b"},
		{"wsgate", DefaultUplinkTemplate, "ünï", "çh", "wsgate/ünï/çh"},
		// A channel "status" is harmless where it cannot land on a status topic.
		{"wsgate", "{prefix}/{device}/data/{channel}", "d1", "status", "wsgate/d1/data/status"},
	} {
		topics := mustTopics(t, tc.prefix, "gw-1", tc.template)
		got, err := topics.Uplink(tc.device, tc.channel)
		if err != nil || got != tc.want {
			t.Errorf("template %q: Uplink(%q, %q) = %q, %v; want %q", tc.template, tc.device, tc.channel, got, err, tc.want)
		}
	}
}

// A device can never publish outside its own subtree, nor on the topics
// the gateway and command senders own.
func TestUplinkRejectsInjection(t *testing.T) {
	t.Parallel()
	for _, template := range []string{DefaultUplinkTemplate, "{prefix}/{gateway}/{device}/{channel}", "{channel}/{device}"} {
		topics := mustTopics(t, "wsgate", "gw-1", template)
		for _, tc := range []struct{ device, channel string }{
			{"+", "t"}, {"#", "t"}, {"a+", "t"}, {"a#b", "t"},
			{"", "t"}, {"a/b", "t"}, {"/a", "t"}, {"$SYS", "t"}, {"$", "t"}, {"a\x00", "t"},
			{"d", "+"}, {"d", "#"}, {"d", "a/+"}, {"d", "a/#"}, {"d", "+/a"}, {"d", "a+b"},
			{"d", ""}, {"d", "/"}, {"d", "a//b"}, {"d", "/a"}, {"d", "a/"},
			{"d", "$SYS"}, {"d", "a/$b"}, {"d", "$"}, {"d", "a\x00"}, {"d", "\x00"},
			// Command topics and malformed results: a frame is never a command.
			{"d", "cmd/reboot"}, {"d", "cmd/"}, {"d", "cmd/x/y"}, {"d", "cmd/x/y/result"},
			{"d", "cmd/x/result/more"}, {"d", "cmd//result"},
		} {
			if got, err := topics.Uplink(tc.device, tc.channel); err == nil {
				t.Errorf("template %q: Uplink(%q, %q) = %q, want an error", template, tc.device, tc.channel, got)
			}
		}
	}
	// With the default template a channel named status or cmd/... would be
	// a status or a command topic.
	topics := mustTopics(t, "wsgate", "gw-1", DefaultUplinkTemplate)
	for _, channel := range []string{"status"} {
		if got, err := topics.Uplink("d", channel); !errors.Is(err, errReserved) {
			t.Errorf("Uplink(d, %q) = %q, %v; want a reserved-topic error", channel, got, err)
		}
	}
	// Nor can a template turn one device's frames into another's status.
	topics = mustTopics(t, "wsgate", "gw-1", "{prefix}/{channel}/{device}")
	if got, err := topics.Uplink("status", "other"); err == nil {
		t.Errorf("Uplink(status, other) = %q: a status topic of device other", got)
	}
}

// Results always go to {prefix}/{device}/cmd/{name}/result, whatever the
// uplink template.
func TestResultsIgnoreTheTemplate(t *testing.T) {
	t.Parallel()
	for _, template := range []string{DefaultUplinkTemplate, "site/{gateway}/{channel}/{device}", "{channel}/{device}"} {
		topics := mustTopics(t, "wsgate", "gw-1", template)
		got, err := topics.Uplink("d1", "cmd/set-interval/result")
		if want := "wsgate/d1/cmd/set-interval/result"; err != nil || got != want {
			t.Errorf("template %q: result topic %q, %v; want %q", template, got, err, want)
		}
		if got != topics.Result("d1", "set-interval") {
			t.Errorf("Uplink and Result disagree: %q, %q", got, topics.Result("d1", "set-interval"))
		}
	}
}

func TestFixedTopics(t *testing.T) {
	t.Parallel()
	topics := mustTopics(t, "home/wsgate", "hub-1", "{channel}/{device}")
	for _, tc := range []struct{ got, want string }{
		{topics.Status("d1"), "home/wsgate/d1/status"},
		{topics.StatusFilter(), "home/wsgate/+/status"},
		{topics.Commands("d1"), "home/wsgate/d1/cmd/#"},
		{topics.AllCommands(), "home/wsgate/+/cmd/#"},
		{topics.SharedCommands("fleet"), "$share/fleet/home/wsgate/+/cmd/#"},
		{topics.GatewayStatusFilter(), "home/wsgate/$gateway/+/status"},
		{topics.Forward("hub-2"), "home/wsgate/$gateway/hub-2/forward"},
		{topics.Sync(), "home/wsgate/$sync/status"},
		{topics.Result("d1", "go"), "home/wsgate/d1/cmd/go/result"},
		{topics.GatewayStatus(), "home/wsgate/$gateway/hub-1/status"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	topics := mustTopics(t, "wsgate", "gw", DefaultUplinkTemplate)
	for _, tc := range []struct {
		topic string
		want  incoming
		ok    bool
	}{
		{"wsgate/d1/status", incoming{kind: kindStatus, device: "d1"}, true},
		{"wsgate/d1/cmd/reboot", incoming{kind: kindCommand, device: "d1", command: "reboot"}, true},
		{"wsgate/d1/cmd/reboot/c-17", incoming{kind: kindCommand, device: "d1", command: "reboot", id: "c-17"}, true},
		{"wsgate/d1/cmd/reboot/result", incoming{}, false},
		{"wsgate/d1/cmd/reboot/", incoming{}, false},
		{"wsgate/d1/cmd/", incoming{}, false},
		{"wsgate/d1/cmd", incoming{}, false},
		{"wsgate/d1/telemetry", incoming{}, false},
		{"wsgate/d1/a/status", incoming{}, false},
		{"other/d1/status", incoming{}, false},
		{"wsgatex/d1/status", incoming{}, false},
		{"wsgate", incoming{}, false},
		{"wsgate/", incoming{}, false},
		{"wsgate/$gateway/gw/cmd/ship-peers", incoming{kind: kindGatewayCommand, command: "ship-peers"}, true},
		{"wsgate/$gateway/gw/cmd/ship-peers/result", incoming{}, false},
		{"wsgate/$gateway/other/cmd/ship-peers", incoming{}, false},
		{"wsgate/$gateway/gw/cmd/", incoming{}, false},
		{"wsgate/$gateway/gw/status", incoming{kind: kindGatewayStatus, device: "gw"}, true},
		{"wsgate/$gateway/other/status", incoming{kind: kindGatewayStatus, device: "other"}, true},
		{"wsgate/$gateway/gw/forward", incoming{kind: kindForward}, true},
		{"wsgate/$gateway/other/forward", incoming{}, false},
		{"wsgate/$sync/status", incoming{kind: kindSync}, true},
		{"wsgate/$gateway/gw/sync", incoming{}, false},
		{"wsgate/$gateway/other/sync", incoming{}, false},
		{"wsgate/$gateway/gw/other", incoming{}, false},
		{"wsgate/$d1/status", incoming{}, false},
		{"wsgate/d1/cmd/a/b/c", incoming{}, false},
	} {
		got, ok := topics.parse(tc.topic)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v, %v", tc.topic, got, ok, tc.want, tc.ok)
		}
	}
}

// TestUplinkAllocations: a frame's topic costs one allocation, the topic
// itself (Uplink runs for every frame).
func TestUplinkAllocations(t *testing.T) {
	topics := mustTopics(t, "wsgate", "gw", DefaultUplinkTemplate)
	if n := testing.AllocsPerRun(100, func() { topics.parse("wsgate/d1/cmd/reboot") }); n != 0 {
		t.Errorf("parse allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = topics.Uplink("d1", "sensors/temp") }); n != 1 {
		t.Errorf("Uplink allocates %v times, want 1", n)
	}
}

func TestValidateTopicLevels(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]error{
		"a":     nil,
		"a/b/c": nil,
		"a b":   nil,
		"":      errEmptyLevel,
		"a//b":  errEmptyLevel,
		"a/":    errEmptyLevel,
		"+":     errWildcard,
		"a/#":   errWildcard,
		"a\x00": errNUL,
		"$x":    errDollar,
		"a/$":   errDollar,
	} {
		if err := ValidateTopicLevels(s); !errors.Is(err, want) && !(err == nil && want == nil) {
			t.Errorf("ValidateTopicLevels(%q) = %v, want %v", s, err, want)
		}
	}
	if err := ValidateTopicLevels(strings.Repeat("a/", 100) + "b"); err != nil {
		t.Errorf("deep topic: %v", err)
	}
}

// TestReserve: with Home Assistant's discovery prefix reserved, no frame
// lands under it, whatever the template lets a device id or channel spell;
// the rest goes through.
func TestReserve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		template, device, channel string
		refused                   bool
	}{
		{DefaultUplinkTemplate, "d1", "homeassistant/sensor/x/config", false}, // below wsgate/d1/
		{"{device}/{channel}", "homeassistant", "sensor/x/config", true},
		{"{device}/{channel}", "homeassistant", "status", true},
		{"{device}/{channel}", "homeassistants", "x", false},
		{"homeassistant/{device}/{channel}", "d1", "x", true},
		{"{prefix}/{device}/{channel}", "homeassistant", "x", false},
	} {
		topics, err := mustTopics(t, "wsgate", "gw", tc.template).Reserve("homeassistant")
		if err != nil {
			t.Fatal(err)
		}
		topic, err := topics.Uplink(tc.device, tc.channel)
		if refused := errors.Is(err, errReservedRoot); refused != tc.refused {
			t.Errorf("%s %s/%s: %q, %v; refused %v, want %v", tc.template, tc.device, tc.channel, topic, err, refused, tc.refused)
		}
	}
	for _, root := range []string{"wsgate", "wsgate/ha", "", "a/#", "$ha"} {
		if _, err := mustTopics(t, "wsgate", "gw", DefaultUplinkTemplate).Reserve(root); err == nil {
			t.Errorf("Reserve(%q) accepted", root)
		}
	}
	if _, err := mustTopics(t, "site/wsgate", "gw", DefaultUplinkTemplate).Reserve("site"); err == nil {
		t.Error("Reserve of a root above the prefix accepted")
	}
	if got := mustTopics(t, "wsgate", "gw", DefaultUplinkTemplate).Command("d1", "set"); got != "wsgate/d1/cmd/set" {
		t.Errorf("Command = %q", got)
	}
}
