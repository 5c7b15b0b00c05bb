package config

import (
	"fmt"
	"strings"

	"github.com/wsgate/wsgate/gateway/mqttbridge"
)

// HomeAssistant is the [homeassistant] section: MQTT discovery, so that
// devices that describe their entities appear in Home Assistant by
// themselves (docs/HOMEASSISTANT.md).
type HomeAssistant struct {
	Enabled bool `toml:"enabled"`
	// DiscoveryPrefix is Home Assistant's discovery prefix (its MQTT
	// integration's setting).
	DiscoveryPrefix string `toml:"discovery_prefix"`
	// Mode is "device" (one configuration per device: Home Assistant
	// 2024.11 and later) or "component" (one per entity: every version).
	Mode string `toml:"mode"`
	// StatusTopic is where Home Assistant publishes "online" when it
	// starts (its birth message).
	StatusTopic string `toml:"status_topic"`
}

func defaultHomeAssistant() HomeAssistant {
	return HomeAssistant{Enabled: true, DiscoveryPrefix: "homeassistant", Mode: "device", StatusTopic: "homeassistant/status"}
}

func (c *Config) validateHomeAssistant() []fault {
	h := c.HomeAssistant
	var fs []fault
	add := func(key, format string, args ...any) {
		fs = append(fs, fault{path: "homeassistant." + key, msg: fmt.Sprintf(format, args...)})
	}
	if err := mqttbridge.ValidateTopicLevels(h.DiscoveryPrefix); err != nil {
		add("discovery_prefix", "%q: %v", h.DiscoveryPrefix, err)
	} else if p := c.MQTT.TopicPrefix; within(h.DiscoveryPrefix, p) || within(p, h.DiscoveryPrefix) {
		add("discovery_prefix", "%q and mqtt.topic_prefix %q overlap: devices could publish into Home Assistant's discovery, or not at all", h.DiscoveryPrefix, p)
	}
	if h.Mode != "device" && h.Mode != "component" {
		add("mode", "%q is not device or component", h.Mode)
	}
	if err := mqttbridge.ValidateTopicLevels(h.StatusTopic); err != nil {
		add("status_topic", "%q: %v", h.StatusTopic, err)
	} else if within(h.StatusTopic, c.MQTT.TopicPrefix) {
		add("status_topic", "%q is under mqtt.topic_prefix %q, among the devices' topics", h.StatusTopic, c.MQTT.TopicPrefix)
	}
	return fs
}

// within reports whether topic is root or below it.
func within(topic, root string) bool {
	return topic == root || strings.HasPrefix(topic, root+"/")
}
