package mqttbridge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Topics builds the topics of one gateway from its prefix and uplink
// template. Every level that comes from device input is validated, so a
// device can never publish outside its own subtree.
type Topics struct {
	prefix  string
	gateway string
	uplink  []string // template split into parts around {placeholders}
	// reserved are roots no frame may be published under, each with its
	// trailing "/" (Home Assistant's discovery prefix).
	reserved []string
}

// Placeholders an uplink template may use.
const (
	phPrefix  = "{prefix}"
	phDevice  = "{device}"
	phChannel = "{channel}"
	phGateway = "{gateway}"
)

// DefaultUplinkTemplate is the topic of a device frame.
const DefaultUplinkTemplate = "{prefix}/{device}/{channel}"

// NewTopics checks prefix and template.
func NewTopics(prefix, gateway, template string) (Topics, error) {
	if err := ValidateTopicLevels(prefix); err != nil {
		return Topics{}, fmt.Errorf("prefix %q: %w", prefix, err)
	}
	if err := validateLevel(gateway); err != nil {
		return Topics{}, fmt.Errorf("gateway id %q: %w", gateway, err)
	}
	if err := ValidateTemplate(template); err != nil {
		return Topics{}, err
	}
	return Topics{prefix: prefix, gateway: gateway, uplink: splitTemplate(template)}, nil
}

// ValidateTemplate checks an uplink template: {device} and {channel} must
// each appear once as whole levels, and literal levels must be valid.
func ValidateTemplate(template string) error {
	for _, ph := range []string{phDevice, phChannel} {
		if strings.Count(template, ph) != 1 {
			return fmt.Errorf("template %q must contain %s exactly once", template, ph)
		}
	}
	for level := range strings.SplitSeq(template, "/") {
		switch level {
		case phPrefix, phDevice, phChannel, phGateway:
			continue
		}
		if strings.ContainsAny(level, "{}") {
			return fmt.Errorf("template %q: placeholders must be whole levels, not %q", template, level)
		}
		if err := validateLevel(level); err != nil {
			return fmt.Errorf("template %q: level %q: %w", template, level, err)
		}
	}
	return nil
}

func splitTemplate(t string) []string {
	var parts []string
	for t != "" {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			parts = append(parts, t)
			break
		}
		if i > 0 {
			parts = append(parts, t[:i])
		}
		j := strings.IndexByte(t[i:], '}')
		parts = append(parts, t[i:i+j+1])
		t = t[i+j+1:]
	}
	return parts
}

// Uplink returns the topic of a frame. Channels under "cmd/" are command
// results ("cmd/{name}/result") and always go to {prefix}/{device}/cmd/...
// No frame may land on a status or command topic, whatever the template:
// those belong to the gateway and to the command senders.
func (t Topics) Uplink(device, channel string) (string, error) {
	if err := validateLevel(device); err != nil {
		return "", fmt.Errorf("device %q: %w", device, err)
	}
	if err := ValidateTopicLevels(channel); err != nil {
		return "", fmt.Errorf("channel %q: %w", channel, err)
	}
	if rest, ok := strings.CutPrefix(channel, "cmd/"); ok {
		if _, tail, _ := strings.Cut(rest, "/"); tail != "result" {
			return "", fmt.Errorf("channel %q: %w", channel, errReserved)
		}
		return t.prefix + "/" + device + "/" + channel, nil
	}
	topic := t.fill(device, channel)
	if _, ok := t.parse(topic); ok {
		return "", fmt.Errorf("channel %q: %w", channel, errReserved)
	}
	for _, root := range t.reserved {
		if strings.HasPrefix(topic, root) {
			return "", fmt.Errorf("channel %q: %s is under %s: %w", channel, topic, root, errReservedRoot)
		}
	}
	return topic, nil
}

// Reserve returns topics that refuse every frame whose topic would fall
// under root (Home Assistant's discovery prefix): whatever the uplink
// template, a device can never publish into another application's
// namespace. root must not hold the gateway's own topics.
func (t Topics) Reserve(root string) (Topics, error) {
	if err := ValidateTopicLevels(root); err != nil {
		return t, fmt.Errorf("reserved root %q: %w", root, err)
	}
	if root == t.prefix || strings.HasPrefix(t.prefix, root+"/") || strings.HasPrefix(root, t.prefix+"/") {
		return t, fmt.Errorf("reserved root %q overlaps the topic prefix %q", root, t.prefix)
	}
	t.reserved = append(slices.Clip(t.reserved), root+"/")
	return t, nil
}

func (t Topics) fill(device, channel string) string {
	n := 0
	for _, p := range t.uplink {
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n + len(t.prefix) + len(device) + len(channel))
	for _, p := range t.uplink {
		switch p {
		case phPrefix:
			b.WriteString(t.prefix)
		case phDevice:
			b.WriteString(device)
		case phChannel:
			b.WriteString(channel)
		case phGateway:
			b.WriteString(t.gateway)
		default:
			b.WriteString(p)
		}
	}
	return b.String()
}

// Command is the topic a device's command of that name arrives on.
func (t Topics) Command(device, name string) string { return t.prefix + "/" + device + "/cmd/" + name }

// Status is the retained status topic of a device.
func (t Topics) Status(device string) string { return t.prefix + "/" + device + "/status" }

// StatusFilter matches the status topics of all devices.
func (t Topics) StatusFilter() string { return t.prefix + "/+/status" }

// Commands is the filter a device's commands arrive on.
func (t Topics) Commands(device string) string { return t.prefix + "/" + device + "/cmd/#" }

// AllCommands matches the commands of every device (and their results,
// which parse sets aside).
func (t Topics) AllCommands() string { return t.prefix + "/+/cmd/#" }

// SharedCommands is AllCommands as the shared subscription of group: the
// broker hands each command to one gateway of the group.
func (t Topics) SharedCommands(group string) string {
	return "$share/" + group + "/" + t.AllCommands()
}

// Result is the topic of a command's result.
func (t Topics) Result(device, command string) string {
	return t.prefix + "/" + device + "/cmd/" + command + "/result"
}

// GatewayStatus is this gateway's own retained status topic.
func (t Topics) GatewayStatus() string { return t.prefix + "/$gateway/" + t.gateway + "/status" }

// GatewayStatusFilter matches the statuses of every gateway.
func (t Topics) GatewayStatusFilter() string { return t.prefix + "/$gateway/+/status" }

// GatewayCommands matches the commands to this gateway itself.
func (t Topics) GatewayCommands() string { return t.prefix + "/$gateway/" + t.gateway + "/cmd/+" }

// GatewayResult is the topic of a gateway command's result.
func (t Topics) GatewayResult(command string) string {
	return t.prefix + "/$gateway/" + t.gateway + "/cmd/" + command + "/result"
}

// Forward is the inbox of gateway: commands another gateway took for a
// device this one holds.
func (t Topics) Forward(gateway string) string { return t.prefix + "/$gateway/" + gateway + "/forward" }

// Sync is the topic the gateways send themselves markers on (awaitSync). It
// matches StatusFilter, so that a marker comes back through the same
// subscription as the claims: a broker that orders only the messages of one
// subscription (a NATS cluster) still returns it behind every claim made
// before it. No device is called "$sync".
func (t Topics) Sync() string { return t.prefix + "/$sync/status" }

// topicKind is what a topic the bridge receives is for.
type topicKind uint8

const (
	kindNone           topicKind = iota
	kindStatus                   // {prefix}/{device}/status
	kindCommand                  // {prefix}/{device}/cmd/{name}, or .../cmd/{name}/{id}
	kindGatewayCommand           // {prefix}/$gateway/{self}/cmd/{name}
	kindGatewayStatus            // {prefix}/$gateway/{id}/status: device holds the id
	kindForward                  // {prefix}/$gateway/{self}/forward
	kindSync                     // {prefix}/$sync/status
)

// incoming is a message topic split into what the bridge acts on.
type incoming struct {
	kind    topicKind
	device  string
	command string
	id      string // a command's id, when its sender gave one
}

// resultLevel ends the topic of a command's result; it cannot be an id.
const resultLevel = "result"

// maxCommandID bounds the ids senders give commands.
const maxCommandID = 128

// parse classifies a topic received on one of the bridge's subscriptions.
// It does not allocate: Uplink runs it on every frame.
func (t Topics) parse(topic string) (incoming, bool) {
	rest, ok := strings.CutPrefix(topic, t.prefix)
	if !ok {
		return incoming{}, false
	}
	if rest, ok = strings.CutPrefix(rest, "/"); !ok {
		return incoming{}, false
	}
	var levels [4]string
	n := splitLevels(rest, levels[:])
	if levels[0] == "$gateway" {
		self := levels[1] == t.gateway
		switch {
		case n == 4 && self && levels[2] == "cmd" && levels[3] != "":
			return incoming{kind: kindGatewayCommand, command: levels[3]}, true
		case n == 3 && levels[2] == "status" && validateLevel(levels[1]) == nil:
			return incoming{kind: kindGatewayStatus, device: levels[1]}, true
		case n == 3 && self && levels[2] == "forward":
			return incoming{kind: kindForward}, true
		}
		return incoming{}, false
	}
	switch {
	case n == 2 && levels[0] == "$sync" && levels[1] == "status":
		return incoming{kind: kindSync}, true
	case strings.HasPrefix(rest, "$"):
		return incoming{}, false
	case n == 2 && levels[1] == "status":
		return incoming{kind: kindStatus, device: levels[0]}, true
	case n == 3 && levels[1] == "cmd" && levels[2] != "":
		return incoming{kind: kindCommand, device: levels[0], command: levels[2]}, true
	case n == 4 && levels[1] == "cmd" && levels[2] != "" && levels[3] != resultLevel && levels[3] != "":
		return incoming{kind: kindCommand, device: levels[0], command: levels[2], id: levels[3]}, true
	}
	return incoming{}, false // results and deeper levels are not commands
}

// splitLevels puts the first levels of topic into dst and returns how many
// levels topic has, counting no further than len(dst)+1.
func splitLevels(topic string, dst []string) int {
	for n := 0; ; n++ {
		if n == len(dst) {
			return n + 1
		}
		level, rest, more := strings.Cut(topic, "/")
		dst[n] = level
		if !more {
			return n + 1
		}
		topic = rest
	}
}

var (
	errEmptyLevel   = errors.New("empty topic level")
	errWildcard     = errors.New("wildcards + and # are not allowed")
	errNUL          = errors.New("NUL is not allowed")
	errSlash        = errors.New("a single level cannot contain /")
	errDollar       = errors.New("levels starting with $ are reserved")
	errReserved     = errors.New("status and command topics are reserved for the gateway")
	errReservedRoot = errors.New("the topic is reserved for another application")
)

// ValidateTopicLevels checks a "/"-separated topic fragment.
func ValidateTopicLevels(s string) error {
	for level := range strings.SplitSeq(s, "/") {
		if err := validateLevel(level); err != nil {
			return err
		}
	}
	return nil
}

func validateLevel(level string) error {
	switch {
	case level == "":
		return errEmptyLevel
	case strings.ContainsAny(level, "+#"):
		return errWildcard
	case strings.IndexByte(level, 0) >= 0:
		return errNUL
	case strings.IndexByte(level, '/') >= 0: // a device id or gateway id
		return errSlash
	case level[0] == '$':
		return errDollar
	}
	return nil
}
