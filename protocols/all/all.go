// Package all registers every built-in protocol. Import it for its side
// effect, as the wsgate binary does. Each protocol is behind a build tag
// that leaves it out: `go build -tags noship` builds a gateway without
// SHIP and its dependencies (mDNS among them); noecho and nodone work the
// same way.
package all
