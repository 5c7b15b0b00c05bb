package ship

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/protocols/module"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// AdminRoutes implements module.AdminRouter: the pairing API.
//
//	GET    /ship            the local SKI and SHIP ID
//	GET    /ship/peers      every known peer with its state
//	POST   /ship/peers/{ski}/approve
//	POST   /ship/peers/{ski}/reject
//	DELETE /ship/peers/{ski}
//
// Approving an SKI never seen yet pairs it in advance.
func (s *Service) AdminRoutes() []module.AdminRoute {
	store := s.Trust()
	decide := func(act func(string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			ski, err := identity.NormalizeSKI(r.PathValue("ski"))
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "not an SKI: 40 hex digits"})
				return
			}
			switch err := act(ski); {
			case errors.Is(err, trust.ErrNotFound):
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown SKI"})
			case err != nil:
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			default:
				writeJSON(w, http.StatusOK, map[string]string{"ski": ski, "result": "ok"})
			}
		}
	}
	return []module.AdminRoute{
		{Pattern: "GET /ship", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			id := s.Identity()
			writeJSON(w, http.StatusOK, map[string]string{"ski": id.SKI, "shipId": id.SHIPID})
		})},
		{Pattern: "GET /ship/peers", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, s.peerList())
		})},
		{Pattern: "POST /ship/peers/{ski}/approve", Handler: decide(store.Approve)},
		{Pattern: "POST /ship/peers/{ski}/reject", Handler: decide(store.Reject)},
		{Pattern: "DELETE /ship/peers/{ski}", Handler: decide(store.Remove)},
	}
}

// peerList is the trust store's entries, [] rather than null when empty.
func (p *Protocol) peerList() []trust.Entry {
	if list := p.Trust().List(); list != nil {
		return list
	}
	return []trust.Entry{}
}

// PairingPeers implements module.Pairer: the trust store's entries for
// the status page, whose buttons call the routes above.
func (p *Protocol) PairingPeers() []module.Peer {
	entries := p.Trust().List()
	peers := make([]module.Peer, len(entries))
	for i, e := range entries {
		peers[i] = module.Peer{ID: e.SKI, Name: e.SHIPID, State: module.PeerState(e.State), Auto: e.AutoAccepted, LastSeen: e.LastSeen}
	}
	return peers
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var (
	descPeers    = prometheus.NewDesc("wsgate_ship_peers", "Known SHIP peers, by trust state.", []string{"state"}, nil)
	descSessions = prometheus.NewDesc("wsgate_ship_connections_total", "SHIP connections started.", nil, nil)
	descComplete = prometheus.NewDesc("wsgate_ship_handshakes_complete_total", "SHIP connections that reached data exchange.", nil, nil)
	descRejected = prometheus.NewDesc("wsgate_ship_rejected_total", "SHIP connections ended because the peer was not trusted.", nil, nil)
	descIn       = prometheus.NewDesc("wsgate_ship_datagrams_in_total", "SPINE datagrams received from peers and published.", nil, nil)
	descOut      = prometheus.NewDesc("wsgate_ship_datagrams_out_total", "SPINE datagrams sent to peers.", nil, nil)
	descDropped  = prometheus.NewDesc("wsgate_ship_datagrams_dropped_total", "SPINE datagrams that could not be decoded or published.", nil, nil)
	descUp       = prometheus.NewDesc("wsgate_ship_connected", "SHIP peers in data exchange now.", nil, nil)
)

// Describe implements prometheus.Collector.
func (p *Protocol) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descSessions, descComplete, descRejected, descIn, descOut, descDropped, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the trust store and the
// protocol's counters, read at scrape time.
func (p *Protocol) Collect(ch chan<- prometheus.Metric) {
	states := map[trust.State]int{trust.Trusted: 0, trust.Pending: 0, trust.Rejected: 0}
	for _, e := range p.Trust().List() {
		states[e.State]++
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(n), string(st))
	}
	s := p.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descSessions, s.Sessions}, {descComplete, s.Complete}, {descRejected, s.Rejected},
		{descIn, s.DatagramsIn}, {descOut, s.DatagramsOut}, {descDropped, s.Dropped}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, float64(s.Connected))
}
