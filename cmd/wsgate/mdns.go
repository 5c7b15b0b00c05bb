package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols/module"
)

// serviceType is how devices find wsgate's listeners over DNS-SD.
const serviceType = "_wsgate._tcp"

// mdnsRun is the gateway's mDNS responder while it runs.
type mdnsRun struct {
	responder *mdns.Responder
	cancel    context.CancelFunc
	done      chan struct{}
}

// startMDNS starts the one mDNS responder of the process, with a
// _wsgate._tcp service for each [[listeners]] entry; the protocols'
// runners, which start next, announce theirs on it. A host without
// multicast is logged and the gateway runs on.
func (g *gatewayRun) startMDNS(context.Context) error {
	m := g.cfg.MDNS
	log := g.log.With("component", "mdns")
	r := mdns.NewResponder(mdns.Options{Interfaces: m.Interfaces, Logger: log})
	for _, l := range g.announcedListeners() {
		a, err := r.Announce(l)
		if err != nil {
			log.Warn("listener not announced over mDNS", "instance", l.Instance, "err", err)
			continue
		}
		log.Info("announcing over mDNS", "instance", l.Instance, "type", serviceType, "port", l.Port, "txt", strings.Join(a.Service().TXT, " "))
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &mdnsRun{responder: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		if err := r.Run(ctx); err != nil {
			log.Warn("mDNS not possible here; give devices the gateway's address by hand", "err", err)
		}
	}()
	g.mdns = run
	return nil
}

// stopMDNS sends the goodbyes of every service still announced.
func (g *gatewayRun) stopMDNS(ctx context.Context) error {
	g.mdns.cancel()
	select {
	case <-g.mdns.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mDNS responder: %w", ctx.Err())
	}
}

// responder is the running mDNS responder, nil when mDNS is off.
func (g *gatewayRun) responder() *mdns.Responder {
	if g.mdns == nil {
		return nil
	}
	return g.mdns.responder
}

// announcedListeners describes each [[listeners]] entry as a _wsgate._tcp
// service: its port (as bound), its address when it listens on one
// address only, and a TXT record with its path, the protocols it serves
// in preference order, TLS and how devices authenticate. A listener on a
// loopback address is announced only when [mdns] names the interfaces.
func (g *gatewayRun) announcedListeners() []mdns.Service {
	opts := g.gatewayOptions()
	bound := boundAddrs(opts.Listeners, g.server.Addrs())
	var svcs []mdns.Service
	var names []string
	for i, l := range g.cfg.Listeners {
		addr, ok := bound[l.Address]
		if !ok {
			continue
		}
		tls := l.TLSCert != ""
		served := servedProtocols(opts.Listeners[i].Protocols, g.cfg.Protocols.Order, tls)
		if len(served) == 0 {
			continue
		}
		svc := mdns.Service{Type: serviceType, Port: addr.Port}
		if !addr.IP.IsUnspecified() {
			if addr.IP.IsLoopback() && len(g.cfg.MDNS.Interfaces) == 0 {
				g.log.Info("listener on a loopback address is not announced over mDNS", "address", l.Address, "path", l.Path)
				continue
			}
			ip, _ := netip.AddrFromSlice(addr.IP)
			svc.Addrs = append(svc.Addrs, ip.Unmap())
		}
		auth := l.Auth
		if auth == "" {
			auth = config.AuthNone
		}
		svc.TXT = []string{
			"txtvers=1",
			"id=" + g.cfg.Gateway.ID,
			"path=" + l.Path,
			"protocols=" + strings.Join(served, ","),
			"tls=" + map[bool]string{false: "no", true: "yes"}[tls],
			"auth=" + auth,
		}
		scheme := map[bool]string{false: "ws", true: "wss"}[tls]
		host, _, _ := net.SplitHostPort(l.Address)
		names = append(names, fmt.Sprintf(" (%s://%s%s)", scheme, net.JoinHostPort(host, strconv.Itoa(addr.Port)), l.Path))
		svcs = append(svcs, svc)
	}
	for i := range svcs {
		suffix := names[i] // several listeners: each name says which one it is
		if len(svcs) == 1 {
			suffix = ""
		}
		svcs[i].Instance = mdns.InstanceName(g.cfg.InstanceName(), suffix)
	}
	return svcs
}

// servedProtocols is what a listener serves, in preference order: its own
// list, or every enabled protocol; without TLS, not the protocols that
// serve TLS clients only.
func servedProtocols(listener, order []string, tls bool) []string {
	served := listener
	if len(served) == 0 {
		served = order
	}
	return slices.DeleteFunc(slices.Clone(served), func(name string) bool {
		m, ok := module.Lookup(name)
		return ok && m.TLSOnly && !tls
	})
}

// boundAddrs maps each listener address to the address the server bound
// (a port 0 is known only then); Server.Addrs lists them in order of first
// appearance among the listeners.
func boundAddrs(listeners []gateway.Listener, addrs []net.Addr) map[string]*net.TCPAddr {
	out := map[string]*net.TCPAddr{}
	i := 0
	for _, l := range listeners {
		if _, seen := out[l.Address]; seen || i >= len(addrs) {
			continue
		}
		if tcp, ok := addrs[i].(*net.TCPAddr); ok {
			out[l.Address] = tcp
		}
		i++
	}
	return out
}
