package auth

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// ACLRule says what the devices it names may publish and which commands
// they may receive.
type ACLRule struct {
	Devices string // a device id or path.Match pattern
	// Publish are MQTT-style filters on channels, relative to the device:
	// "telemetry", "state/+", "sensors/#", "#". Empty: nothing.
	Publish []string
	// Commands are command names or path.Match patterns ("set-*", "*").
	// Empty: none.
	Commands []string
}

// ACL decides what devices may publish and which commands they may
// receive. The first rule whose Devices names the device decides; a device
// no rule names may do anything but publish on Reserved channels.
//
// A nil *ACL is valid and allows the same, so that a gateway without rules
// needs no special case. An ACL is immutable and safe for concurrent use;
// a reload makes a new one.
type ACL struct {
	rules []ACLRule
}

// NewACL checks every pattern and filter; errors name the rule by its
// index and the field.
func NewACL(rules []ACLRule) (*ACL, error) {
	for i, r := range rules {
		if err := CheckDevices(r.Devices); err != nil {
			return nil, fmt.Errorf("acl rule %d: devices: %w", i, err)
		}
		for j, f := range r.Publish {
			if err := CheckFilter(f); err != nil {
				return nil, fmt.Errorf("acl rule %d: publish[%d] %q: %w", i, j, f, err)
			}
		}
		for j, c := range r.Commands {
			if err := CheckCommand(c); err != nil {
				return nil, fmt.Errorf("acl rule %d: commands[%d] %q: %w", i, j, c, err)
			}
		}
	}
	return &ACL{rules: cloneRules(rules)}, nil
}

// cloneRules copies rules so that the caller's slices cannot change an ACL
// in use.
func cloneRules(rules []ACLRule) []ACLRule {
	out := make([]ACLRule, len(rules))
	for i, r := range rules {
		out[i] = ACLRule{
			Devices:  r.Devices,
			Publish:  append([]string(nil), r.Publish...),
			Commands: append([]string(nil), r.Commands...),
		}
	}
	return out
}

// MayPublish reports whether device may publish on channel. No device may
// publish on a Reserved channel, whatever the rules say, so this is for
// frames decoded from what a device sent; the frames a protocol builds for
// command results (protocols.ResultFrame) are the gateway's and must not
// be checked here.
func (a *ACL) MayPublish(device, channel string) bool {
	if Reserved(channel) {
		return false
	}
	r := a.rule(device)
	if r == nil {
		return true
	}
	for _, f := range r.Publish {
		if matchFilter(f, channel) {
			return true
		}
	}
	return false
}

// MayReceive reports whether command may be sent to device.
func (a *ACL) MayReceive(device, command string) bool {
	r := a.rule(device)
	if r == nil {
		return true
	}
	for _, p := range r.Commands {
		if ok, _ := path.Match(p, command); ok {
			return true
		}
	}
	return false
}

// rule returns the first rule naming device, or nil.
func (a *ACL) rule(device string) *ACLRule {
	if a == nil {
		return nil
	}
	for i := range a.rules {
		if matchDevices(a.rules[i].Devices, device) {
			return &a.rules[i]
		}
	}
	return nil
}

// Len returns the number of rules.
func (a *ACL) Len() int {
	if a == nil {
		return 0
	}
	return len(a.rules)
}

// Reserved reports whether a channel is the gateway's own: its first level
// is "cmd" (commands and their results) or "status" (the device's presence).
// No device may publish there; results of commands reach MQTT through the
// gateway, not as frames a device sent.
func Reserved(channel string) bool {
	first, _, _ := strings.Cut(channel, "/")
	return first == "cmd" || first == "status"
}

// CheckCommand validates a command pattern of a rule: a name, or a
// path.Match pattern such as "set-*".
func CheckCommand(pattern string) error {
	if pattern == "" {
		return errors.New(`empty: name a command or a pattern such as "set-*"`)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return errors.New("not a valid pattern")
	}
	return nil
}

// CheckFilter validates a publish filter: levels separated by '/', none
// empty, "+" a whole level, "#" a whole level and the last. Filters naming
// a Reserved channel are refused since they could never allow anything.
func CheckFilter(filter string) error {
	if filter == "" {
		return errors.New(`empty: name a channel or a filter such as "sensors/#"`)
	}
	if Reserved(filter) {
		return errors.New(`"cmd" and "status" are the gateway's own channels and never allowed`)
	}
	parts := strings.Split(filter, "/")
	for i, level := range parts {
		switch {
		case level == "":
			return errors.New("empty level: filters are relative to the device, with no leading, trailing or double '/'")
		case level == "#" && i < len(parts)-1:
			return errors.New(`"#" must be the last level`)
		case level != "+" && level != "#" && strings.ContainsAny(level, "+#"):
			return errors.New(`"+" and "#" must stand for a whole level`)
		case strings.IndexByte(level, 0) >= 0:
			return errors.New("NUL in a filter")
		}
	}
	return nil
}

// matchFilter reports whether channel matches a checked filter: "+" matches
// one level, a final "#" any number of levels including none, so that
// "sensors/#" matches "sensors" as in MQTT. It runs on every frame and does
// not allocate.
func matchFilter(filter, channel string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		c, crest, cmore := strings.Cut(channel, "/")
		if f != "+" && f != c {
			return false
		}
		if !cmore {
			return !fmore || frest == "#"
		}
		if !fmore {
			return false
		}
		filter, channel = frest, crest
	}
}
