package admin

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsgate/wsgate/protocols/ship"
	"github.com/wsgate/wsgate/protocols/ship/identity"
	"github.com/wsgate/wsgate/protocols/ship/trust"
)

// Ship is what the SHIP endpoints need: the pairing decisions of the trust
// store (*trust.Store), the local node and the protocol's counters.
type Ship interface {
	List() []trust.Entry
	Approve(ski string) error
	Reject(ski string) error
	Remove(ski string) error
}

// ShipNode is the local SHIP node and the protocol's counters.
type ShipNode interface {
	Identity() *identity.Identity
	Stats() ship.Stats
}

// shipRoutes adds the pairing endpoints:
//
//	GET    /ship            the local SKI and SHIP ID
//	GET    /ship/peers      every known peer with its state
//	POST   /ship/peers/{ski}/approve
//	POST   /ship/peers/{ski}/reject
//	DELETE /ship/peers/{ski}
//
// Approving an SKI never seen yet pairs it in advance.
func shipRoutes(mux *http.ServeMux, store Ship, node ShipNode) {
	mux.HandleFunc("GET /ship", func(w http.ResponseWriter, _ *http.Request) {
		id := node.Identity()
		writeJSON(w, http.StatusOK, map[string]string{"ski": id.SKI, "shipId": id.SHIPID})
	})
	mux.HandleFunc("GET /ship/peers", func(w http.ResponseWriter, _ *http.Request) {
		list := store.List()
		if list == nil {
			list = []trust.Entry{}
		}
		writeJSON(w, http.StatusOK, list)
	})
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
	mux.HandleFunc("POST /ship/peers/{ski}/approve", decide(store.Approve))
	mux.HandleFunc("POST /ship/peers/{ski}/reject", decide(store.Reject))
	mux.HandleFunc("DELETE /ship/peers/{ski}", decide(store.Remove))
}

var (
	descShipPeers    = prometheus.NewDesc("wsgate_ship_peers", "Known SHIP peers, by trust state.", []string{"state"}, nil)
	descShipSessions = prometheus.NewDesc("wsgate_ship_connections_total", "SHIP connections started.", nil, nil)
	descShipComplete = prometheus.NewDesc("wsgate_ship_handshakes_complete_total", "SHIP connections that reached data exchange.", nil, nil)
	descShipRejected = prometheus.NewDesc("wsgate_ship_rejected_total", "SHIP connections ended because the peer was not trusted.", nil, nil)
	descShipIn       = prometheus.NewDesc("wsgate_ship_datagrams_in_total", "SPINE datagrams received from peers and published.", nil, nil)
	descShipOut      = prometheus.NewDesc("wsgate_ship_datagrams_out_total", "SPINE datagrams sent to peers.", nil, nil)
	descShipDropped  = prometheus.NewDesc("wsgate_ship_datagrams_dropped_total", "SPINE datagrams that could not be decoded or published.", nil, nil)
	descShipUp       = prometheus.NewDesc("wsgate_ship_connected", "SHIP peers in data exchange now.", nil, nil)
)

var shipDescs = []*prometheus.Desc{descShipPeers, descShipSessions, descShipComplete, descShipRejected, descShipIn, descShipOut, descShipDropped, descShipUp}

func collectShip(ch chan<- prometheus.Metric, store Ship, node ShipNode) {
	states := map[trust.State]int{trust.Trusted: 0, trust.Pending: 0, trust.Rejected: 0}
	for _, e := range store.List() {
		states[e.State]++
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(descShipPeers, prometheus.GaugeValue, float64(n), string(st))
	}
	s := node.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descShipSessions, s.Sessions}, {descShipComplete, s.Complete}, {descShipRejected, s.Rejected},
		{descShipIn, s.DatagramsIn}, {descShipOut, s.DatagramsOut}, {descShipDropped, s.Dropped}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
	ch <- prometheus.MustNewConstMetric(descShipUp, prometheus.GaugeValue, float64(s.Connected))
}
