package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// pluginProtocols lists the protocol names the [[plugins]] entries declare.
func (c *Config) pluginProtocols() []string {
	var names []string
	for _, p := range c.Plugins {
		names = append(names, p.Protocols...)
	}
	return names
}

func (c *Config) validatePlugins() []fault {
	var fs []fault
	add := func(path, format string, args ...any) {
		fs = append(fs, fault{path: path, msg: fmt.Sprintf(format, args...)})
	}
	seen := map[string]int{}
	for i, p := range c.Plugins {
		at := func(key string) string { return fmt.Sprintf("plugins.%d.%s", i, key) }
		if len(p.Protocols) == 0 {
			add(at("protocols"), "list the protocol names the plugin implements")
		}
		for _, name := range p.Protocols {
			switch {
			case !protocols.IsToken(name):
				add(at("protocols"), "%q is not a valid subprotocol token", name)
			case slices.Contains(module.Names(), name):
				add(at("protocols"), "%q is built in and cannot come from a plugin", name)
			default:
				if j, dup := seen[name]; dup {
					add(at("protocols"), "%q is also declared by plugins[%d]", name, j)
				}
				seen[name] = i
			}
		}
		want, err := hex.DecodeString(p.SHA256)
		if err != nil || len(want) != sha256.Size {
			add(at("sha256"), "must be the 64 hex digits of the binary's SHA-256 (sha256sum prints it)")
		}
		if p.Path == "" {
			add(at("path"), "the plugin binary is required")
			continue
		}
		// A plugin that cannot run is not a mistake in this file: the
		// gateway logs it and runs without it, and says so here.
		warn := func(key, format string, args ...any) {
			fs = append(fs, fault{path: at(key), warn: true, msg: fmt.Sprintf(format, args...) + "; wsgate runs without this plugin"})
		}
		got, err := fileSHA256(p.Path)
		switch {
		case err != nil:
			warn("path", "%s", fileProblem(p.Path, err))
		case len(want) == sha256.Size && got != strings.ToLower(p.SHA256):
			warn("sha256", "does not match %s (its SHA-256 is %s)", p.Path, got)
		}
	}
	h := c.PluginHost
	if h.Dir != "" {
		if st, err := os.Stat(h.Dir); err != nil || !st.IsDir() {
			add("plugin_host.dir", "%q is not a directory", h.Dir)
		}
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{{"restart_min", h.RestartMin}, {"restart_max", h.RestartMax}, {"stall_timeout", h.StallTimeout}} {
		if d.value <= 0 {
			add("plugin_host."+d.key, "must be a positive duration such as \"10s\"")
		}
	}
	if h.RestartMax < h.RestartMin {
		add("plugin_host.restart_max", "must not be shorter than restart_min")
	}
	if h.MaxFailures < 1 {
		add("plugin_host.max_failures", "must be at least 1")
	}
	return fs
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
