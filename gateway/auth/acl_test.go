package auth

import (
	"strings"
	"testing"
)

func TestMatchFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filter, channel string
		want            bool
	}{
		{"telemetry", "telemetry", true},
		{"telemetry", "telemetry/x", false},
		{"telemetry", "telemetr", false},
		{"telemetry", "", false},
		{"state/+", "state/door", true},
		{"state/+", "state", false},
		{"state/+", "state/door/open", false},
		{"+/temp", "kitchen/temp", true},
		{"+/temp", "kitchen/hum", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/b/d", false},
		{"+/+", "a", false},
		{"sensors/#", "sensors", true}, // as in MQTT, "#" includes the parent
		{"sensors/#", "sensors/t", true},
		{"sensors/#", "sensors/t/1", true},
		{"sensors/#", "sensorsx", false},
		{"sensors/#", "other/t", false},
		{"+/#", "a", true},
		{"#", "a/b/c", true},
		{"#", "a", true},
	}
	for _, tt := range tests {
		if got := matchFilter(tt.filter, tt.channel); got != tt.want {
			t.Errorf("matchFilter(%q, %q) = %v, want %v", tt.filter, tt.channel, got, tt.want)
		}
		if got := referenceMatch(tt.filter, tt.channel); got != tt.want {
			t.Errorf("referenceMatch(%q, %q) = %v, want %v: the reference is wrong", tt.filter, tt.channel, got, tt.want)
		}
	}
}

// referenceMatch is MQTT filter matching as plainly as it can be written.
func referenceMatch(filter, channel string) bool {
	fl, cl := strings.Split(filter, "/"), strings.Split(channel, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i == len(cl) || (f != "+" && f != cl[i]) {
			return false
		}
	}
	return len(fl) == len(cl)
}

// FuzzMatchFilter checks that matchFilter never panics, whatever the
// filter, and agrees with referenceMatch on every filter NewACL accepts.
func FuzzMatchFilter(f *testing.F) {
	f.Add("sensors/#", "sensors")
	f.Add("state/+", "state/door")
	f.Add("+/+/#", "a/b")
	f.Add("a//b", "a//b")
	f.Add("a/#/b", "a/x")
	f.Fuzz(func(t *testing.T, filter, channel string) {
		got := matchFilter(filter, channel)
		if CheckFilter(filter) != nil {
			return
		}
		if want := referenceMatch(filter, channel); got != want {
			t.Errorf("matchFilter(%q, %q) = %v, the reference says %v", filter, channel, got, want)
		}
	})
}

func TestNewACLRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rule ACLRule
		want string
	}{
		{"empty devices", ACLRule{Publish: []string{"#"}}, "acl rule 1: devices: empty"},
		{"bad devices pattern", ACLRule{Devices: "esp32-[", Publish: []string{"#"}}, "acl rule 1: devices:"},
		{"invalid device id", ACLRule{Devices: "a/b"}, "acl rule 1: devices:"},
		{"empty filter", ACLRule{Devices: "d", Publish: []string{"t", ""}}, `acl rule 1: publish[1] "": empty`},
		{"leading slash", ACLRule{Devices: "d", Publish: []string{"/telemetry"}}, `publish[0] "/telemetry": empty level`},
		{"trailing slash", ACLRule{Devices: "d", Publish: []string{"telemetry/"}}, "empty level"},
		{"double slash", ACLRule{Devices: "d", Publish: []string{"a//b"}}, "empty level"},
		{"# not last", ACLRule{Devices: "d", Publish: []string{"a/#/b"}}, `publish[0] "a/#/b": "#" must be the last level`},
		{"# in a level", ACLRule{Devices: "d", Publish: []string{"a/b#"}}, "whole level"},
		{"+ in a level", ACLRule{Devices: "d", Publish: []string{"sensor+/t"}}, "whole level"},
		{"NUL", ACLRule{Devices: "d", Publish: []string{"a\x00"}}, "NUL"},
		{"cmd", ACLRule{Devices: "d", Publish: []string{"cmd/+/result"}}, "the gateway's own"},
		{"status", ACLRule{Devices: "d", Publish: []string{"status"}}, "the gateway's own"},
		{"empty command", ACLRule{Devices: "d", Commands: []string{"reboot", ""}}, `acl rule 1: commands[1] "": empty`},
		{"bad command pattern", ACLRule{Devices: "d", Commands: []string{"set-["}}, `commands[0] "set-[": not a valid pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewACL([]ACLRule{{Devices: "ok", Publish: []string{"#"}, Commands: []string{"*"}}, tt.rule})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewACL = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestACL(t *testing.T) {
	t.Parallel()
	acl, err := NewACL([]ACLRule{
		{Devices: "esp32-kitchen", Publish: []string{"telemetry"}, Commands: []string{"reboot"}},
		{Devices: "esp32-*", Publish: []string{"sensors/#", "state/+"}, Commands: []string{"set-*"}},
		{Devices: "mute"},
		{Devices: "*", Publish: []string{"#"}, Commands: []string{"*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if acl.Len() != 4 {
		t.Errorf("Len() = %d, want 4", acl.Len())
	}
	publish := []struct {
		device, channel string
		want            bool
	}{
		{"esp32-kitchen", "telemetry", true},
		{"esp32-kitchen", "sensors/t", false}, // the first matching rule decides
		{"esp32-hall", "sensors/t", true},
		{"esp32-hall", "sensors", true},
		{"esp32-hall", "state/door", true},
		{"esp32-hall", "state/door/open", false},
		{"esp32-hall", "telemetry", false},
		{"mute", "telemetry", false},
		{"garage", "anything/at/all", true},
		{"garage", "cmd/reboot/result", false}, // reserved, whatever the rule says
		{"garage", "status", false},
		{"garage", "status/battery", false},
	}
	for _, tt := range publish {
		if got := acl.MayPublish(tt.device, tt.channel); got != tt.want {
			t.Errorf("MayPublish(%q, %q) = %v, want %v", tt.device, tt.channel, got, tt.want)
		}
	}
	receive := []struct {
		device, command string
		want            bool
	}{
		{"esp32-kitchen", "reboot", true},
		{"esp32-kitchen", "set-interval", false},
		{"esp32-hall", "set-interval", true},
		{"esp32-hall", "reboot", false},
		{"mute", "reboot", false},
		{"garage", "open", true},
	}
	for _, tt := range receive {
		if got := acl.MayReceive(tt.device, tt.command); got != tt.want {
			t.Errorf("MayReceive(%q, %q) = %v, want %v", tt.device, tt.command, got, tt.want)
		}
	}
}

func TestACLWithoutMatchingRule(t *testing.T) {
	t.Parallel()
	acl, err := NewACL([]ACLRule{{Devices: "kitchen"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*ACL{nil, acl} {
		if !a.MayPublish("garage", "sensors/t") || !a.MayReceive("garage", "open") {
			t.Errorf("%d rules: a device no rule names is refused", a.Len())
		}
		if a.MayPublish("garage", "cmd/open/result") || a.MayPublish("garage", "status") {
			t.Errorf("%d rules: a reserved channel is allowed", a.Len())
		}
	}
	if n := (*ACL)(nil).Len(); n != 0 {
		t.Errorf("nil ACL: Len() = %d", n)
	}
}

func TestNewACLCopiesRules(t *testing.T) {
	t.Parallel()
	rules := []ACLRule{{Devices: "kitchen", Publish: []string{"telemetry"}, Commands: []string{"reboot"}}}
	acl, err := NewACL(rules)
	if err != nil {
		t.Fatal(err)
	}
	rules[0].Devices = "garage"
	rules[0].Publish[0] = "#"
	rules[0].Commands[0] = "*"
	if acl.MayPublish("kitchen", "other") || acl.MayReceive("kitchen", "open") || !acl.MayPublish("kitchen", "telemetry") {
		t.Error("changing the rules after NewACL changed the ACL")
	}
}

func TestReserved(t *testing.T) {
	t.Parallel()
	for channel, want := range map[string]bool{
		"cmd":               true,
		"cmd/reboot":        true,
		"cmd/reboot/result": true,
		"status":            true,
		"status/battery":    true,
		"statusx":           false,
		"commands":          false,
		"telemetry/cmd":     false,
		"sensors/status":    false,
		"":                  false,
	} {
		if got := Reserved(channel); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", channel, got, want)
		}
	}
}
