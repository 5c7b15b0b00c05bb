// Package mqttbridge carries frames from the router to an MQTT broker and
// commands from the broker back to devices, with the paho client.
//
// Uplink QoS 1 frames are acknowledged to their device only after the
// broker's PUBACK, or once they are durably in the spool (gateway/spool)
// while the broker is unreachable; spooled frames are replayed in order
// before new ones when it returns. The bridge also keeps each device's
// retained status topic, the gateway's own status with its Last Will, and
// one command subscription per attached device.
//
// It depends on protocols, the router's types and the spool; the router
// reaches it only through the router.Sink and router.Watcher interfaces.
package mqttbridge
