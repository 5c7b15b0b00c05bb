// Package broker runs the embedded MQTT broker (mochi-mqtt) that makes a
// single wsgate an all-in-one hub. The bridge reaches it over TCP through
// the same paho client path as an external broker.
//
// It depends on nothing else in wsgate.
package broker

import (
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
)

// Options configure the embedded broker.
type Options struct {
	Address string            // e.g. ":1883"
	Users   map[string]string // username -> password; empty allows anonymous clients
}

// Broker is a running embedded broker.
type Broker struct {
	server   *mochi.Server
	listener *tcpListener
}

// Start binds the address and serves in the background.
func Start(opts Options, log *slog.Logger) (*Broker, error) {
	server := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       log.With("component", "broker"),
	})
	var hook mochi.Hook = new(auth.AllowHook)
	var hookConfig any
	if len(opts.Users) > 0 {
		hook = new(auth.Hook)
		ledger := &auth.Ledger{}
		for user, password := range opts.Users {
			ledger.Auth = append(ledger.Auth, auth.AuthRule{Username: auth.RString(user), Password: auth.RString(password), Allow: true})
		}
		ledger.ACL = auth.ACLRules{{Filters: auth.Filters{"#": auth.ReadWrite}}}
		hookConfig = &auth.Options{Ledger: ledger}
	}
	if err := server.AddHook(hook, hookConfig); err != nil {
		return nil, fmt.Errorf("embedded broker auth: %w", err)
	}
	tcp := newTCPListener("tcp", opts.Address)
	tcp.server = server
	if err := server.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("embedded broker: listen on %s: %w", opts.Address, err)
	}
	if err := server.Serve(); err != nil {
		_ = server.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	return &Broker{server: server, listener: tcp}, nil
}

// Address returns the bound address.
func (b *Broker) Address() string { return b.listener.Address() }

// Close stops the broker and disconnects its clients.
func (b *Broker) Close() error { return b.server.Close() }
