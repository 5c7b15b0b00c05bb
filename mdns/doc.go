// Package mdns owns multicast DNS and DNS-SD (RFC 6762, RFC 6763) for the
// whole gateway: one Responder announces every service of the process
// (wsgate's own _wsgate._tcp listeners, SHIP's _ship._tcp) over one set of
// sockets, and Browse finds the services of one type on the link.
//
// # What it does
//
// Service is one DNS-SD instance: instance name, service type, host, port,
// addresses (PTR, SRV, A, AAAA) and TXT strings. What the TXT strings mean
// is the business of whoever announces or browses them; TXTMap reads them
// by the rules of RFC 6763 section 6.
//
// Responder announces its services: three unsolicited announcements (0, 1
// and 3 s) when a service is added or changed, answers to queries for the
// service types, the instances, the host and the service enumeration, and
// a goodbye (TTL 0) when a service is withdrawn or the Responder stops.
// Records carry TTL 120 s, unique ones the cache-flush bit. A multicast
// answer is not repeated on an interface within a second, however often it
// is asked for.
//
// Browse queries for one service type periodically, listens to every
// response and announcement on the link, asks for missing records and
// reports instances as they appear, change and go (Event). It drops IPv6
// link-local addresses, orders IPv4 before IPv6 and merges repeated answers
// per instance.
//
// Both sides share port 5353 (SO_REUSEADDR) with avahi and each other. By
// default they use every interface that is up, multicast-capable and not
// loopback; Options.Interfaces names others, loopback included (Linux
// delivers multicast on lo although the interface lacks the MULTICAST
// flag), which keeps tests on the machine. When no multicast socket can be
// opened (no interface, a sandbox), Responder.Run and Browse return an
// error wrapping ErrNoMulticast: callers log it and work on without mDNS.
//
// # Why miekg/dns and not hashicorp/mdns
//
// hashicorp/mdns v1.0.7 was evaluated first. Its server never announces:
// it only answers queries, sends no goodbye on Shutdown (and does not wait
// for its goroutines), and sends every reply, multicast queries included,
// by unicast to the querier, so passive listeners never learn of a change
// (SHIP's register flag). Its client is one-shot (Query opens and closes
// sockets per call), misses unsolicited announcements and goodbyes, and
// keeps one address per family. So both sides are written on
// github.com/miekg/dns (message encoding) and golang.org/x/net/ipv4 and
// ipv6 (group membership per interface, multicast loopback, the incoming
// interface). Name conflict probing (RFC 6762 8.1) and the 20-120 ms answer
// delay for shared records (6) are not implemented: the gateway's instance
// names are its id or the SHIP ID, unique on a home network.
//
// # Dependencies
//
// This package depends on miekg/dns and x/net only. It must not depend on
// any protocol or the gateway: they hand it Services and read Events.
package mdns
