// Package discovery owns SHIP's use of mDNS / DNS-SD (ship.md section 8):
// the _ship._tcp service and its TXT record, so that devices find the
// gateway and the gateway finds the devices it must dial (wallboxes and
// heat pumps are SHIP servers that wait to be connected to).
//
// # What it does
//
// Service holds one node's DNS-SD data: instance, host, port and addresses
// and the SHIP TXT record (txtvers, id, path, ski, register, brand, model,
// type, serial, cat). Service.TXT builds the TXT record and ParseTXT reads
// one back, rejecting every record section 8 tells receivers to ignore;
// both are pure and fuzzed. Service.MDNS turns a Service into what the
// gateway's mdns.Responder announces (the instance name defaults to the
// SHIP ID).
//
// Browse runs mdns.Browse for _ship._tcp and reports SHIP services as they
// appear, change and go (Event): it ignores invalid TXT records and our
// own SKI, and reports a service Removed when its TXT record turns
// invalid.
//
// The sockets, the records, announcing and answering, and the browser's
// cache are the mdns package's: one responder serves the whole gateway,
// SHIP's service beside wsgate's own _wsgate._tcp ones.
//
// # Dependencies
//
// This package depends on mdns and protocols/ship/identity (SKI and SHIP
// ID validation). It must not depend on the SHIP state machine, the trust
// store or the gateway: they take Service values from here and decide
// whom to dial and what register to announce.
package discovery
