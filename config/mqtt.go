package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/spool"
)

// maxQoS0Connections bounds mqtt.qos0_connections: a few connections are
// what a broker's per-connection costs call for, not one per device.
const maxQoS0Connections = 16

func (m *MQTT) validate() []fault {
	password, fs := secret(m.Password, m.PasswordFile, "WSGATE_MQTT_PASSWORD", "mqtt.password")
	m.Password = password
	add := func(key, format string, args ...any) {
		fs = append(fs, fault{path: "mqtt." + key, msg: fmt.Sprintf(format, args...)})
	}
	if m.URL == "" {
		if _, _, err := net.SplitHostPort(m.Embedded.Address); err != nil {
			add("embedded.address", "%q is not host:port (e.g. \":1883\")", m.Embedded.Address)
		}
	} else if u, err := url.Parse(m.URL); err != nil || u.Host == "" {
		add("url", "%q is not a broker URL such as tcp://broker:1883", m.URL)
	} else if !slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, u.Scheme) {
		add("url", "scheme %q is not tcp, ssl, ws or wss", u.Scheme)
	}
	if m.URL == "" && len(m.FallbackURLs) > 0 {
		add("fallback_urls", "other nodes of the broker cluster url names; url is empty (the embedded broker)")
	} else {
		for i, fb := range m.FallbackURLs {
			if u, err := url.Parse(fb); err != nil || u.Host == "" {
				add("fallback_urls", "fallback_urls[%d] %q is not a broker URL such as tcp://broker-2:1883", i, fb)
			} else if !sameSchemeFamily(u.Scheme, m.URL) {
				add("fallback_urls", "fallback_urls[%d] %q: the nodes of one cluster are reached like url (%s)", i, fb, m.URL)
			}
		}
	}
	if m.ShareGroup != "" {
		if err := mqttbridge.ValidateTopicLevels(m.ShareGroup); err != nil || strings.Contains(m.ShareGroup, "/") {
			add("share_group", "%q must be one topic level: no /, +, # or leading $", m.ShareGroup)
		}
	}
	if m.ClientID != "" && len(m.ClientID) > 64 {
		add("client_id", "longer than 64 characters")
	}
	if (m.CertFile == "") != (m.KeyFile == "") {
		add("cert_file", "cert_file and key_file go together")
	}
	for _, f := range [][2]string{{"ca_file", m.CAFile}, {"cert_file", m.CertFile}, {"key_file", m.KeyFile}} {
		if f[1] != "" {
			if _, err := os.Stat(f[1]); err != nil {
				add(f[0], "%s", fileProblem(f[1], err))
			}
		}
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"keepalive", m.KeepAlive}, {"connect_timeout", m.ConnectTimeout}, {"reconnect_min", m.ReconnectMin},
		{"reconnect_max", m.ReconnectMax}, {"publish_timeout", m.PublishTimeout},
	} {
		if d.value <= 0 {
			add(d.key, "must be a positive duration such as \"10s\"")
		}
	}
	if m.ReconnectMax < m.ReconnectMin {
		add("reconnect_max", "must not be shorter than reconnect_min")
	}
	if err := mqttbridge.ValidateTopicLevels(m.TopicPrefix); err != nil {
		add("topic_prefix", "%q: %v", m.TopicPrefix, err)
	}
	if err := mqttbridge.ValidateTemplate(m.UplinkTopic); err != nil {
		add("uplink_topic", "%v", err)
	}
	if m.Queue < 1 {
		add("queue", "must be at least 1")
	}
	if m.QueueWait < 0 {
		add("queue_wait", "must not be negative (0 refuses at once when the queue is full)")
	}
	if m.CommandQoS != 0 && m.CommandQoS != 1 {
		add("command_qos", "%d is not 0 or 1", m.CommandQoS)
	}
	if m.QoS0Connections < 1 || m.QoS0Connections > maxQoS0Connections {
		add("qos0_connections", "%d is outside 1 to %d", m.QoS0Connections, maxQoS0Connections)
	}
	if m.MaxInflight < 1 || m.MaxInflight > 65535 {
		add("max_inflight", "%d is outside 1 to 65535 (MQTT packet ids)", m.MaxInflight)
	}
	for user := range m.Embedded.Users {
		if strings.TrimSpace(user) == "" {
			add("embedded.users", "empty user name")
		}
	}
	if host, _, err := net.SplitHostPort(m.Embedded.Address); m.URL == "" && err == nil && !isLoopback(host) && len(m.Embedded.Users) == 0 {
		fs = append(fs, fault{path: "mqtt.embedded.address", warn: true, msg: fmt.Sprintf(
			"the embedded broker on %s is reachable from the network and takes anonymous clients: anyone there can read and command the devices; list users in [mqtt.embedded.users], or listen on 127.0.0.1", m.Embedded.Address)})
	}
	return fs
}

// sameSchemeFamily reports whether scheme connects the way the scheme of
// base does: plain or TLS over TCP, or over WebSocket.
func sameSchemeFamily(scheme, base string) bool {
	family := func(s string) string {
		switch s {
		case "ws", "wss":
			return "ws"
		default:
			return "tcp"
		}
	}
	u, err := url.Parse(base)
	return err == nil && family(scheme) == family(u.Scheme) &&
		slices.Contains([]string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}, scheme)
}

// isLoopback reports whether a listen host accepts only connections from
// this machine; "" and unspecified addresses listen on every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *Admin) validate() []fault {
	token, fs := secret("", a.TokenFile, "WSGATE_ADMIN_TOKEN", "admin.token")
	a.Token = token
	if a.Address == "" {
		return fs
	}
	host, _, err := net.SplitHostPort(a.Address)
	switch {
	case err != nil:
		fs = append(fs, fault{path: "admin.address", msg: fmt.Sprintf("%q is not host:port (e.g. \"127.0.0.1:9180\"), or empty to turn the endpoints off", a.Address)})
	case !isLoopback(host) && a.Token == "":
		fs = append(fs, fault{path: "admin.address", msg: fmt.Sprintf(
			"%s is reachable from the network, where anyone could pair devices or read them: set admin.token_file (a bearer token the admin API then requires), or listen on 127.0.0.1", a.Address)})
	}
	for i, h := range a.Hosts {
		if h == "" || strings.ContainsAny(h, "/ :@") {
			fs = append(fs, fault{path: "admin.hosts", msg: fmt.Sprintf("hosts[%d] %q is not a host name", i, h)})
		}
	}
	return fs
}

func (s Spool) validate() []fault {
	var fs []fault
	if s.MaxFrames < 1 {
		fs = append(fs, fault{path: "spool.max_frames", msg: "must be at least 1"})
	}
	if s.MaxBytes < 1<<10 {
		fs = append(fs, fault{path: "spool.max_bytes", msg: "must be at least 1024"})
	}
	if p := spool.Policy(s.FullPolicy); p != spool.Reject && p != spool.DropOldest {
		fs = append(fs, fault{path: "spool.full_policy", msg: fmt.Sprintf("%q is not reject or drop-oldest", s.FullPolicy)})
	}
	return fs
}
