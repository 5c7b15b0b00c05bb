// Package discovery owns mDNS / DNS-SD for SHIP (ship.md section 8): it
// announces the gateway's own SHIP service as _ship._tcp in local. and
// browses the link for other SHIP nodes, so that devices find the gateway
// and the gateway finds the devices it must dial (wallboxes and heat pumps
// are SHIP servers that wait to be connected to).
//
// # What it does
//
// Service holds one node's DNS-SD data: instance, host, port and addresses
// (SRV, A, AAAA) and the SHIP TXT record (txtvers, id, path, ski, register,
// brand, model, type, serial, cat). Service.TXT builds the TXT record and
// ParseTXT reads one back, rejecting every record section 8 tells receivers
// to ignore; both are pure and fuzzed.
//
// Announcer announces a Service: three unsolicited announcements (0, 1 and
// 3 s) on start and after every Update (the register flag follows the
// auto-accept setting), answers to queries for the service type, the
// instance, the host and the service enumeration, and a goodbye (TTL 0)
// when its context ends. Records carry TTL 120 s, unique ones the
// cache-flush bit.
//
// Browse queries for _ship._tcp.local. periodically, listens to every
// response and announcement on the link, asks for missing records and
// reports services as they appear, change and go (Event). It ignores
// invalid TXT records and our own SKI, drops IPv6 link-local addresses,
// orders IPv4 before IPv6 and merges repeated answers per instance.
//
// Both sides share port 5353 (SO_REUSEADDR) with avahi, ship-go and each
// other. When no multicast socket can be opened (no interface, a sandbox),
// Run and Browse return an error wrapping ErrNoMulticast: the gateway logs
// it and works on with configured peers.
//
// # Why miekg/dns and not hashicorp/mdns
//
// hashicorp/mdns v1.0.7 was evaluated first. Its server never announces:
// it only answers queries, sends no goodbye on Shutdown (and does not wait
// for its goroutines), and sends every reply, multicast queries included,
// by unicast to the querier, so passive listeners never learn of a change
// of the register flag. Its client is one-shot (Query opens and closes
// sockets per call), misses unsolicited announcements and goodbyes, and
// keeps one address per family. Those are the parts SHIP needs, so both
// sides are written on github.com/miekg/dns (message encoding) and
// golang.org/x/net/ipv4 and ipv6 (group membership per interface, multicast
// loopback, the incoming interface). Name conflict probing (RFC 6762 8.1)
// and the 20-120 ms answer delay for shared records (6) are not
// implemented: instance names are the SHIP ID, which is unique.
//
// # Dependencies
//
// This package depends on protocols/ship/identity (SKI and SHIP ID
// validation), miekg/dns and x/net. It must not depend on the SHIP state
// machine, the trust store or the gateway: they take Service values from
// here and decide whom to dial and what register to announce.
package discovery
