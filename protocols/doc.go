// Package protocols owns the contract between the gateway and a WebSocket
// subprotocol implementation, and the registry that negotiates which
// implementation serves a connection.
//
// A Protocol is stateless and creates one Session per connection. The gateway
// hands the session an Outlet (to reach the device and the router) and feeds it
// events: inbound messages, downlink commands, and the end of the connection.
// The same Protocol runs compiled in or out of process behind plugins/sdk.
//
// This package must not depend on the gateway, the MQTT bridge, the config
// format or any concrete protocol: they all depend on it.
package protocols
