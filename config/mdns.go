package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wsgate/wsgate/mdns"
)

// MDNS is the [mdns] section: how the gateway announces itself on the
// local network, so that devices find it without being given its address.
type MDNS struct {
	// Enabled runs the gateway's mDNS responder: each [[listeners]] entry
	// is announced as a _wsgate._tcp service, and the protocols announce
	// and browse theirs (SHIP's _ship._tcp). Off, wsgate sends nothing
	// over mDNS.
	Enabled bool `toml:"enabled"`
	// Instance is the service instance name devices show; empty: the
	// gateway id.
	Instance string `toml:"instance"`
	// Interfaces are the network interfaces mDNS runs on; empty: every
	// interface that is up and multicast-capable, loopback excepted.
	Interfaces []string `toml:"interfaces"`
}

// InstanceName is the instance name the gateway announces: Instance, or
// the gateway id cut to one DNS label.
func (c Config) InstanceName() string {
	if c.MDNS.Instance != "" {
		return c.MDNS.Instance
	}
	return mdns.InstanceName(c.Gateway.ID, "")
}

func (m MDNS) validate() []fault {
	var fs []fault
	if m.Instance != "" {
		if err := mdns.ValidateInstance(m.Instance); err != nil {
			msg := strings.TrimPrefix(err.Error(), mdns.ErrInvalidService.Error()+": ")
			fs = append(fs, fault{path: "mdns.instance", msg: msg})
		}
	}
	for i, name := range m.Interfaces {
		switch {
		case strings.TrimSpace(name) == "":
			fs = append(fs, fault{path: "mdns.interfaces", msg: fmt.Sprintf("entry %d is empty; name an interface such as \"eth0\"", i+1)})
		case slices.Index(m.Interfaces, name) != i:
			fs = append(fs, fault{path: "mdns.interfaces", msg: fmt.Sprintf("%q is listed twice", name)})
		}
	}
	return fs
}
