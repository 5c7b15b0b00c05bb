// Package gateway owns the device-facing side of wsgate: HTTP listeners, the
// RFC 6455 opening handshake and subprotocol negotiation, and the lifecycle
// of each WebSocket connection (keepalive, limits, the closing handshake,
// how it waits while idle), on which it runs one protocols.Session.
//
// Frames leave a connection through the router (gateway/router); the gateway
// does not know where they go. It depends on protocols and the router, never
// on a concrete protocol, the MQTT bridge or the config format; on Linux it
// parks idle connections with epoll through golang.org/x/sys/unix.
package gateway
