package config

import (
	"fmt"
	"os"
	"time"

	"github.com/wsgate/wsgate/gateway/auth"
)

// Auth is the [auth] section: device tokens, access rules, and the
// throttling of addresses that fail to authenticate.
type Auth struct {
	// After ThrottleAfter failures from one address the address is refused
	// for ThrottleBase, doubling with every further failure up to
	// ThrottleMax.
	ThrottleAfter int           `toml:"throttle_after"`
	ThrottleBase  time.Duration `toml:"throttle_base"`
	ThrottleMax   time.Duration `toml:"throttle_max"`
	Tokens        []TokenRule   `toml:"tokens"`
	ACL           []ACLRule     `toml:"acl"`
}

// TokenRule is one [[auth.tokens]] entry: the hash of a device token and
// the devices it authenticates.
type TokenRule struct {
	Devices string `toml:"devices"`
	Hash    string `toml:"hash"`
	// HashFile holds the hash instead (its first line).
	HashFile string `toml:"hash_file"`
}

// ACLRule is one [[auth.acl]] entry. A list that is not given allows
// everything of its kind; an empty list allows nothing.
type ACLRule struct {
	Devices  string    `toml:"devices"`
	Publish  *[]string `toml:"publish"`
	Commands *[]string `toml:"commands"`
}

func defaultAuth() Auth {
	return Auth{ThrottleAfter: 5, ThrottleBase: time.Second, ThrottleMax: 5 * time.Minute}
}

// TokenRules are the token rules for the gateway, hashes resolved.
func (a Auth) TokenRules() []auth.TokenRule {
	rules := make([]auth.TokenRule, len(a.Tokens))
	for i, r := range a.Tokens {
		rules[i] = auth.TokenRule{Devices: r.Devices, Hash: r.Hash}
	}
	return rules
}

// ACLRules are the access rules for the gateway.
func (a Auth) ACLRules() []auth.ACLRule {
	rules := make([]auth.ACLRule, len(a.ACL))
	for i, r := range a.ACL {
		rules[i] = auth.ACLRule{Devices: r.Devices, Publish: []string{"#"}, Commands: []string{"*"}}
		if r.Publish != nil {
			rules[i].Publish = *r.Publish
		}
		if r.Commands != nil {
			rules[i].Commands = *r.Commands
		}
	}
	return rules
}

// ThrottleOptions are the throttle's settings.
func (a Auth) ThrottleOptions() auth.ThrottleOptions {
	return auth.ThrottleOptions{After: a.ThrottleAfter, Base: a.ThrottleBase, Max: a.ThrottleMax}
}

func (a *Auth) validate() []fault {
	var fs []fault
	add := func(path, format string, args ...any) {
		fs = append(fs, fault{path: path, msg: fmt.Sprintf(format, args...)})
	}
	if a.ThrottleAfter < 1 {
		add("auth.throttle_after", "must be at least 1")
	}
	if a.ThrottleBase <= 0 {
		add("auth.throttle_base", "must be a positive duration such as \"1s\"")
	}
	if a.ThrottleMax < a.ThrottleBase {
		add("auth.throttle_max", "must not be shorter than throttle_base")
	}
	for i := range a.Tokens {
		r := &a.Tokens[i]
		at := func(key string) string { return fmt.Sprintf("auth.tokens.%d.%s", i, key) }
		if r.HashFile != "" {
			if r.Hash != "" {
				add(at("hash_file"), "set hash or hash_file, not both")
				continue
			}
			h, err := readSecretFile(r.HashFile)
			if err != nil {
				add(at("hash_file"), "%v", err)
				continue
			}
			r.Hash = h
		}
		switch {
		case r.Hash == "":
			add(at("hash"), "the hash of the device's token is required (wsgate token hash prints one)")
		case !auth.LooksHashed(r.Hash):
			add(at("hash"), "this is not a hash: keep only the output of `wsgate token hash` here, never the token itself")
		default:
			if err := auth.ParseHash(r.Hash); err != nil {
				add(at("hash"), "%v", err)
			}
		}
		if err := auth.CheckDevices(r.Devices); err != nil {
			add(at("devices"), "%v", err)
		}
	}
	for i, r := range a.ACLRules() {
		at := func(key string) string { return fmt.Sprintf("auth.acl.%d.%s", i, key) }
		if err := auth.CheckDevices(r.Devices); err != nil {
			add(at("devices"), "%v", err)
		}
		for _, f := range r.Publish {
			if err := auth.CheckFilter(f); err != nil {
				add(at("publish"), "%q: %v", f, err)
			}
		}
		for _, c := range r.Commands {
			if err := auth.CheckCommand(c); err != nil {
				add(at("commands"), "%q: %v", c, err)
			}
		}
	}
	return fs
}

// validateListenerAuth checks a listener's auth keys.
func (c *Config) validateListenerAuth(i int, l *Listener) []fault {
	var fs []fault
	add := func(key, format string, args ...any) {
		fs = append(fs, fault{path: fmt.Sprintf("listeners.%d.%s", i, key), msg: fmt.Sprintf(format, args...)})
	}
	if l.Auth == "" {
		l.Auth = AuthNone
	}
	if l.DeviceID == "" {
		l.DeviceID = string(auth.IDFromCN)
	}
	switch l.Auth {
	case AuthNone:
	case AuthToken:
		if len(c.Auth.Tokens) == 0 {
			fs = append(fs, fault{path: fmt.Sprintf("listeners.%d.auth", i), warn: true,
				msg: "no [[auth.tokens]] are configured: no device can connect here"})
		}
	case AuthMTLS:
		if l.TLSCert == "" {
			add("auth", "mtls needs a wss:// listener: set tls_cert and tls_key")
		}
		if l.ClientCA == "" {
			add("client_ca", "mtls needs the CA certificates (PEM) device certificates must chain to")
		} else if _, err := os.Stat(l.ClientCA); err != nil {
			add("client_ca", "%s", fileProblem(l.ClientCA, err))
		} else if _, err := auth.LoadCAs(l.ClientCA); err != nil {
			add("client_ca", "%v", err)
		}
		if _, err := auth.ParseIDFrom(l.DeviceID); err != nil {
			add("device_id", "%q is not cn or san-uri", l.DeviceID)
		}
	default:
		add("auth", "%q is not none, token or mtls", l.Auth)
	}
	return fs
}

// How a listener authenticates devices.
const (
	AuthNone  = "none"
	AuthToken = "token"
	AuthMTLS  = "mtls"
)
