package statuspage

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/plugins"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// Sources are the components the page reports on. Protocols and Plugins
// may be nil.
type Sources struct {
	Gateway   interface{ Stats() gateway.Stats }
	Bridge    interface{ Stats() mqttbridge.Stats }
	Devices   interface{ Traffic() []router.DeviceTraffic }
	Protocols interface{ Entries() []protocols.Entry }
	Plugins   interface{ Status() []plugins.Status }
	// Pairers are the enabled protocols that pair their devices.
	Pairers []module.Pairer
}

// Snapshot is everything the page shows: GET /status, and the first event
// of every stream.
type Snapshot struct {
	Gateway   Gateway    `json:"gateway"`
	Bridge    Bridge     `json:"bridge"`
	Protocols []Protocol `json:"protocols"`
	Plugins   []Plugin   `json:"plugins"`
	Pairing   []Pairing  `json:"pairing"`
	Devices   []Device   `json:"devices"`
}

// Gateway is the gateway itself.
type Gateway struct {
	ID          string    `json:"id"`
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	Connections int       `json:"connections"` // open WebSocket connections
}

// Bridge is the MQTT bridge: whether the broker is reachable, and how
// many frames wait for it in the spool.
type Bridge struct {
	Connected     bool   `json:"connected"`
	SpoolFrames   int    `json:"spoolFrames"`
	SpoolBytes    int64  `json:"spoolBytes"`
	Published     uint64 `json:"published"`
	Spooled       uint64 `json:"spooled"`
	Replayed      uint64 `json:"replayed"`
	SpoolRejected uint64 `json:"spoolRejected"`
	SpoolDropped  uint64 `json:"spoolDropped"`
	QoS0Dropped   uint64 `json:"qos0Dropped"`
	QueueFull     uint64 `json:"queueFull"`
}

// Protocol is one protocol of the registry, as `wsgate protocols` lists
// it: Preference is its place in the server order (0 when disabled), State
// "enabled", "unavailable" (enabled, but nothing implements it now) or
// "disabled".
type Protocol struct {
	Preference int    `json:"preference,omitempty"`
	Name       string `json:"name"`
	Origin     string `json:"origin"`
	State      string `json:"state"`
}

// Plugin is one plugin process.
type Plugin struct {
	Path      string   `json:"path"`
	Protocols []string `json:"protocols"`
	Version   string   `json:"version,omitempty"`
	State     string   `json:"state"` // running, restarting, disabled, stopped
	Restarts  int      `json:"restarts"`
}

// Pairing is the peers of one protocol that pairs its devices; the page's
// buttons call POST /<protocol>/peers/<id>/approve or reject.
type Pairing struct {
	Protocol string `json:"protocol"`
	Peers    []Peer `json:"peers"`
}

// Peer is a device a protocol pairs.
type Peer struct {
	ID       string    `json:"id"`
	Name     string    `json:"name,omitempty"`
	State    string    `json:"state"` // pending, trusted, rejected
	Auto     bool      `json:"auto,omitempty"`
	LastSeen time.Time `json:"lastSeen,omitzero"`
}

// Device is an attached device and its traffic.
type Device struct {
	ID       string    `json:"id"`
	Protocol string    `json:"protocol"`
	Address  string    `json:"address,omitempty"` // "" for a local device
	Since    time.Time `json:"since"`
	In       uint64    `json:"in"`
	Out      uint64    `json:"out"`
	Last     time.Time `json:"last,omitzero"` // the device's last message
}

// take reads the sources.
func (src Sources) take(gw Gateway) Snapshot {
	s := Snapshot{Protocols: []Protocol{}, Plugins: []Plugin{}, Pairing: []Pairing{}, Devices: []Device{}}
	gw.Connections = src.Gateway.Stats().Connections
	s.Gateway = gw
	b := src.Bridge.Stats()
	s.Bridge = Bridge{
		Connected: b.Connected, SpoolFrames: b.SpoolRecords, SpoolBytes: b.SpoolBytes,
		Published: b.Published, Spooled: b.Spooled, Replayed: b.Replayed, SpoolRejected: b.SpoolRejected,
		SpoolDropped: b.SpoolDropped, QoS0Dropped: b.QoS0Dropped, QueueFull: b.Busy,
	}
	if src.Protocols != nil {
		for i, e := range src.Protocols.Entries() {
			p := Protocol{Name: e.Name, Origin: e.Origin, State: "disabled"}
			if e.Enabled {
				p.Preference, p.State = i+1, "enabled"
				if !e.Ready {
					p.State = "unavailable"
				}
			}
			s.Protocols = append(s.Protocols, p)
		}
	}
	if src.Plugins != nil {
		for _, p := range src.Plugins.Status() {
			s.Plugins = append(s.Plugins, Plugin{Path: p.Path, Protocols: p.Protocols, Version: p.Version, State: p.State, Restarts: p.Restarts})
		}
	}
	for _, pr := range src.Pairers {
		pairing := Pairing{Protocol: pr.Name(), Peers: []Peer{}}
		for _, p := range pr.PairingPeers() {
			pairing.Peers = append(pairing.Peers, Peer{ID: p.ID, Name: p.Name, State: string(p.State), Auto: p.Auto, LastSeen: instant(p.LastSeen)})
		}
		s.Pairing = append(s.Pairing, pairing)
	}
	for _, d := range src.Devices.Traffic() {
		s.Devices = append(s.Devices, Device{
			ID: d.ID, Protocol: d.Protocol, Address: d.Address, Since: instant(d.Since),
			In: d.In, Out: d.Out, Last: instant(d.Last),
		})
	}
	return s
}

// instant is t in UTC to the millisecond: what JSON shows, and a value
// that == compares by instant.
func instant(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Millisecond).UTC()
}

// state is a snapshot as the feed compares it with the next one: the
// sections but devices encoded, the devices by id.
type state struct {
	sections [numSections][]byte
	devices  []Device       // sorted by id
	byID     map[string]int // index in devices
	snapshot []byte         // the snapshot event, made when first asked for
}

const (
	sectionGateway = iota
	sectionBridge
	sectionProtocols
	sectionPlugins
	sectionPairing
	numSections
)

func newState(s Snapshot) *state {
	st := &state{devices: s.Devices, byID: make(map[string]int, len(s.Devices))}
	for i, v := range []any{s.Gateway, s.Bridge, s.Protocols, s.Plugins, s.Pairing} {
		st.sections[i] = mustMarshal(v)
	}
	for i, d := range s.Devices {
		st.byID[d.ID] = i
	}
	return st
}

// update is what changed between two states: the sections that did, in
// full, and the devices that came, changed or went.
type update struct {
	Gateway   json.RawMessage `json:"gateway,omitempty"`
	Bridge    json.RawMessage `json:"bridge,omitempty"`
	Protocols json.RawMessage `json:"protocols,omitempty"`
	Plugins   json.RawMessage `json:"plugins,omitempty"`
	Pairing   json.RawMessage `json:"pairing,omitempty"`
	Devices   *deviceChanges  `json:"devices,omitempty"`
}

type deviceChanges struct {
	Set  []Device `json:"set,omitempty"`  // new or changed, sorted by id
	Gone []string `json:"gone,omitempty"` // detached, sorted
}

// snapshotEvent is the state as a "snapshot" event.
func (st *state) snapshotEvent() []byte {
	if st.snapshot == nil {
		s := struct {
			Gateway   json.RawMessage `json:"gateway"`
			Bridge    json.RawMessage `json:"bridge"`
			Protocols json.RawMessage `json:"protocols"`
			Plugins   json.RawMessage `json:"plugins"`
			Pairing   json.RawMessage `json:"pairing"`
			Devices   []Device        `json:"devices"`
		}{st.sections[sectionGateway], st.sections[sectionBridge], st.sections[sectionProtocols],
			st.sections[sectionPlugins], st.sections[sectionPairing], st.devices}
		st.snapshot = event("snapshot", mustMarshal(s))
	}
	return st.snapshot
}

// changesSince is the "update" event from prev to st, nil when nothing
// changed.
func (st *state) changesSince(prev *state) []byte {
	var u update
	changed := false
	for i, field := range []*json.RawMessage{&u.Gateway, &u.Bridge, &u.Protocols, &u.Plugins, &u.Pairing} {
		if !bytes.Equal(st.sections[i], prev.sections[i]) {
			*field, changed = st.sections[i], true
		}
	}
	var dc deviceChanges
	for _, d := range st.devices {
		if i, ok := prev.byID[d.ID]; !ok || prev.devices[i] != d {
			dc.Set = append(dc.Set, d)
		}
	}
	for _, d := range prev.devices {
		if _, ok := st.byID[d.ID]; !ok {
			dc.Gone = append(dc.Gone, d.ID)
		}
	}
	if dc.Set != nil || dc.Gone != nil {
		u.Devices, changed = &dc, true
	}
	if !changed {
		return nil
	}
	return event("update", mustMarshal(u))
}

// event formats a server-sent event. JSON holds no raw newline, so data
// is one line.
func event(name string, data []byte) []byte {
	b := make([]byte, 0, len("event: \ndata: \n\n")+len(name)+len(data))
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// mustMarshal encodes what the page's own types hold, which cannot fail.
func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("statuspage: " + err.Error())
	}
	return b
}
