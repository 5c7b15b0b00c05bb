// Package homeassistant announces devices to Home Assistant by MQTT
// discovery: each device that describes its entities (a done device's
// hello caps, a local device's configuration, a SHIP device's
// connectivity) gets a retained configuration under Home Assistant's
// discovery prefix, whose state, command and availability topics are the
// gateway's own (docs/HOMEASSISTANT.md).
//
// It follows presence as a router.Watcher, reaches the broker through the
// MQTT bridge (the small Broker interface: publish, subscriptions that are
// renewed on every connection, a hook after each connection) and builds
// topics with the bridge's Topics. It depends on protocols and the
// router's types only; nothing else in the gateway depends on it.
//
// What the broker holds under the gateway's discovery nodes is read back
// on every connection: that is how a removed local device, an entity a
// device no longer has and the configurations of the other discovery mode
// are found and cleared, with no state kept on disk.
package homeassistant
