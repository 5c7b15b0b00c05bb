// Package statuspage serves the gateway's status page on the admin
// address: an HTML page embedded in the binary (plain HTML, CSS and
// JavaScript, nothing loaded from elsewhere, no build step), a JSON
// snapshot of what it shows (GET /status) and a live feed of changes as
// server-sent events (GET /events).
//
// The page shows the attached devices with their traffic, the protocols
// and plugins, the MQTT bridge and the peers of protocols that pair their
// devices (SHIP), with buttons that approve or reject a peer through the
// protocol's own admin routes. It changes nothing itself: the admin
// endpoints' protections (gateway/admin) stand in front of all of it, and
// only the page's files, which hold no data, are served without the admin
// token.
//
// One feed serves every open page: while at least one event stream is
// open it looks at the components every Interval, and sends each stream
// what changed since its last look. A stream's queue is bounded; a stream
// that falls behind loses what is queued and gets a fresh snapshot
// instead.
//
// It reads the components through small interfaces and is imported by the
// admin endpoints only.
package statuspage
