// Package admin serves the gateway's operator endpoints on their own
// listener: Prometheus metrics, health and readiness, the list of attached
// devices, the status page (gateway/statuspage), and the routes and
// metrics the protocols bring.
//
// The endpoints change state (SHIP pairing), so every request is checked
// before a route sees it: its Host must be a name of the endpoints (DNS
// rebinding), a state-changing request must not come from another site in
// the operator's browser (CSRF), and when a token is set, the request must
// carry it (anyone else who can reach the address). The status page's
// files are served without the token (they hold no data; the page sends
// the token with its own requests), its data and actions are not.
//
// Metrics are read from the components' counters at scrape time, so the
// hot paths carry no instrumentation of their own. It depends on the
// components it reports on, never the other way round.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsgate/wsgate/gateway"
	"github.com/wsgate/wsgate/gateway/mqttbridge"
	"github.com/wsgate/wsgate/gateway/router"
	"github.com/wsgate/wsgate/gateway/statuspage"
	"github.com/wsgate/wsgate/plugins"
	"github.com/wsgate/wsgate/protocols"
	"github.com/wsgate/wsgate/protocols/module"
)

// Sources are the components the endpoints report on.
type Sources struct {
	Gateway interface{ Stats() gateway.Stats }
	Bridge  interface{ Stats() mqttbridge.Stats }
	Router  interface {
		Devices() []router.Device
		Traffic() []router.DeviceTraffic
	}
	Plugins   interface{ Status() []plugins.Status }
	Protocols interface{ Entries() []protocols.Entry }
	// Routes are what the protocols serve here (module.AdminRouter).
	Routes []module.AdminRoute
	// Collectors are the protocols' metrics (prometheus.Collector).
	Collectors []prometheus.Collector
	// Pairers are the protocols whose peers the status page lists
	// (module.Pairer); their Routes decide them.
	Pairers []module.Pairer
}

// Options configure the admin endpoints' protections.
type Options struct {
	Address string
	// Hosts are host names the endpoints answer to besides the admin
	// address's own host, "localhost" and loopback IP literals (DNS
	// rebinding protection); e.g. "hub.local".
	Hosts []string
	// Token, when set, is a bearer token every request must carry
	// (Authorization: Bearer ...), except GET /healthz and GET /readyz,
	// which load balancers and systemd probe.
	Token string
	// Reload, when set, is served as POST /reload: it re-reads the
	// configuration and returns the problems found (nil when applied).
	Reload func() []string
	// GatewayID, Version and Started are shown on the status page.
	GatewayID, Version string
	Started            time.Time
}

// Handler returns the admin endpoints behind their protections. It logs
// the requests it refuses to slog.Default. The status page's event streams
// end when their clients go; Start's Server also ends them at Shutdown.
func Handler(opts Options, src Sources) http.Handler {
	h, _ := newHandler(opts, src, slog.Default())
	return h
}

func handler(opts Options, src Sources, log *slog.Logger) http.Handler {
	h, _ := newHandler(opts, src, log)
	return h
}

// newHandler returns the endpoints and their status page, whose event
// streams Close ends.
func newHandler(opts Options, src Sources, log *slog.Logger) (http.Handler, *statuspage.Page) {
	refused := newRefusals(log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&collector{src: src, refused: refused},
	)
	reg.MustRegister(src.Collectors...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch st := src.Bridge.Stats(); {
		case !st.Connected:
			http.Error(w, "not connected to the MQTT broker (frames are spooled)", http.StatusServiceUnavailable)
			return
		case !st.Synced:
			http.Error(w, "connected to the MQTT broker; its subscriptions are not in place yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	for _, r := range src.Routes {
		mux.Handle(r.Pattern, r.Handler)
	}
	mux.HandleFunc("GET /devices", func(w http.ResponseWriter, _ *http.Request) {
		type device struct {
			ID       string    `json:"id"`
			Protocol string    `json:"protocol"`
			Session  string    `json:"session"`
			Since    time.Time `json:"since"`
		}
		list := []device{}
		for _, d := range src.Router.Devices() {
			list = append(list, device{ID: d.ID, Protocol: d.Protocol, Session: d.Session, Since: d.Since})
		}
		writeJSON(w, http.StatusOK, list)
	})
	if opts.Reload != nil {
		mux.HandleFunc("POST /reload", func(w http.ResponseWriter, _ *http.Request) {
			if problems := opts.Reload(); len(problems) > 0 {
				writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "configuration not applied", "problems": problems})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"result": "ok"})
		})
	}
	page := statuspage.New(statuspage.Options{GatewayID: opts.GatewayID, Version: opts.Version, Started: opts.Started},
		statuspage.Sources{Gateway: src.Gateway, Bridge: src.Bridge, Devices: src.Router, Protocols: src.Protocols,
			Plugins: src.Plugins, Pairers: src.Pairers}, log)
	page.Register(mux)
	return newGuard(opts, mux, refused), page
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is the admin HTTP listener.
type Server struct {
	http *http.Server
	page *statuspage.Page
	ln   net.Listener
	done chan struct{}
}

// Start binds opts.Address and serves in the background.
func Start(opts Options, src Sources, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	h, page := newHandler(opts, src, log)
	s := &Server{
		page: page,
		http: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			// No route takes a body, so a whole request never needs long.
			ReadTimeout: 15 * time.Second,
			// Longer than Prometheus's usual scrape interval (1m), so that
			// scrapes reuse their connection.
			IdleTimeout: 2 * time.Minute,
			// A browser's headers and a bearer token fit many times over;
			// the default would let each connection hold 1 MiB.
			MaxHeaderBytes: 16 << 10,
			ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener stopped", "err", err)
		}
	}()
	paths := []string{"/", "/status", "/events", "/metrics", "/healthz", "/readyz", "/devices"}
	if opts.Reload != nil {
		paths = append(paths, "/reload")
	}
	for _, r := range src.Routes {
		_, path, _ := strings.Cut(r.Pattern, " ")
		if path, _, _ = strings.Cut(path, "/{"); !slices.Contains(paths, path) {
			paths = append(paths, path)
		}
	}
	log.Info("admin endpoints listening", "address", ln.Addr().String(), "paths", strings.Join(paths, " "),
		"hosts", opts.Hosts, "token_required", opts.Token != "")
	if ln.Addr().(*net.TCPAddr).IP.IsUnspecified() && opts.Token == "" {
		log.Warn("admin endpoints listen on every interface without a token: anyone on the network can use them, SHIP pairing included")
	}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the listener. The status page's event streams end
// first: the server would wait for them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.page.Close()
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}

// collector turns the components' counters into metrics at scrape time.
type collector struct {
	src     Sources
	refused *refusals
}

var (
	descConnections = prometheus.NewDesc("wsgate_websocket_connections", "Open WebSocket connections.", nil, nil)
	descUpgrades    = prometheus.NewDesc("wsgate_websocket_upgrades_total", "WebSocket handshakes accepted.", nil, nil)
	descRefused     = prometheus.NewDesc("wsgate_websocket_handshakes_refused_total", "WebSocket handshakes refused, by HTTP status.", []string{"status"}, nil)
	descDevices     = prometheus.NewDesc("wsgate_devices_attached", "Devices attached to this gateway.", nil, nil)
	descConnected   = prometheus.NewDesc("wsgate_mqtt_connected", "1 while connected to the MQTT broker.", nil, nil)
	descPending     = prometheus.NewDesc("wsgate_mqtt_presence_pending", "Devices whose status or command subscription the broker does not have yet.", nil, nil)
	descQoS0Lanes   = prometheus.NewDesc("wsgate_mqtt_qos0_lanes_connected", "Extra broker connections for QoS 0 frames (mqtt.qos0_connections - 1) that are connected.", nil, nil)
	descPublished   = prometheus.NewDesc("wsgate_mqtt_published_total", "QoS 1 frames confirmed by the broker on first publish.", nil, nil)
	descQoS0Dropped = prometheus.NewDesc("wsgate_mqtt_qos0_dropped_total", "QoS 0 frames dropped: the broker was unreachable, or its connection failed before they were written.", nil, nil)
	descBusy        = prometheus.NewDesc("wsgate_mqtt_queue_full_total", "Frames refused because the bridge queue was full.", nil, nil)
	descSpooled     = prometheus.NewDesc("wsgate_spool_written_total", "Frames written to the on-disk spool.", nil, nil)
	descReplayed    = prometheus.NewDesc("wsgate_spool_replayed_total", "Spooled frames confirmed by the broker.", nil, nil)
	descRejected    = prometheus.NewDesc("wsgate_spool_rejected_total", "Frames refused because the spool was full (policy reject).", nil, nil)
	descDropped     = prometheus.NewDesc("wsgate_spool_dropped_total", "Spooled frames discarded to make room (policy drop-oldest).", nil, nil)
	descSpoolFrames = prometheus.NewDesc("wsgate_spool_frames", "Frames in the spool.", nil, nil)
	descSpoolBytes  = prometheus.NewDesc("wsgate_spool_bytes", "Bytes of frames in the spool.", nil, nil)
	descCommands    = prometheus.NewDesc("wsgate_commands_total", "Commands handed to devices.", nil, nil)
	descCmdFailed   = prometheus.NewDesc("wsgate_commands_failed_total", "Commands that could not be handed to their device.", nil, nil)
	descForwarded   = prometheus.NewDesc("wsgate_commands_forwarded_total", "Commands forwarded to the gateway that holds their device (mqtt.share_group).", nil, nil)
	descDuplicates  = prometheus.NewDesc("wsgate_commands_duplicate_total", "Commands not delivered because one with the same id was delivered before.", nil, nil)
	descTakeovers   = prometheus.NewDesc("wsgate_sessions_taken_over_total", "Sessions closed because their device connected again through another gateway.", nil, nil)
	descPluginUp    = prometheus.NewDesc("wsgate_plugin_up", "1 while the plugin process runs.", []string{"plugin"}, nil)
	descPluginDis   = prometheus.NewDesc("wsgate_plugin_disabled", "1 when the plugin failed too often and was disabled.", []string{"plugin"}, nil)
	descRestarts    = prometheus.NewDesc("wsgate_plugin_restarts_total", "Restarts of the plugin after a crash, exit or stall.", []string{"plugin"}, nil)
	descRateLimited = prometheus.NewDesc("wsgate_websocket_rate_limited_total", "Messages over their connection's rate (websocket.message_rate).", nil, nil)
	descAuthFailed  = prometheus.NewDesc("wsgate_auth_failures_total", "Failed device authentications.", nil, nil)
	descThrottled   = prometheus.NewDesc("wsgate_auth_throttled_total", "Upgrades and hellos refused because their address failed to authenticate too often.", nil, nil)
	descThrottling  = prometheus.NewDesc("wsgate_auth_throttled_addresses", "Addresses with recent authentication failures.", nil, nil)
	descForbidden   = prometheus.NewDesc("wsgate_acl_refused_total", "Publishes and commands refused by the access rules.", []string{"what"}, nil)

	descAdminRefused = prometheus.NewDesc("wsgate_admin_refused_total", "Admin requests refused, by reason: host (not a name of the endpoints), cross-site, token (missing or wrong).", []string{"reason"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descUpgrades, descRefused, descDevices, descConnected, descPending, descQoS0Lanes,
		descPublished, descQoS0Dropped, descBusy, descSpooled, descReplayed, descRejected, descDropped,
		descSpoolFrames, descSpoolBytes, descCommands, descCmdFailed, descForwarded, descDuplicates, descTakeovers, descPluginUp, descPluginDis, descRestarts, descAdminRefused,
		descRateLimited, descAuthFailed, descThrottled, descThrottling, descForbidden} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	g := c.src.Gateway.Stats()
	gauge(descConnections, float64(g.Connections))
	counter(descUpgrades, g.Upgrades)
	counter(descRateLimited, g.RateLimited)
	counter(descAuthFailed, g.AuthFailures)
	counter(descThrottled, g.AuthThrottled)
	gauge(descThrottling, float64(g.ThrottledAddresses))
	counter(descForbidden, g.ForbiddenPublishes, "publish")
	counter(descForbidden, g.ForbiddenCommands, "command")
	for status, n := range g.Refused {
		counter(descRefused, n, strconv.Itoa(status))
	}
	gauge(descDevices, float64(len(c.src.Router.Devices())))
	b := c.src.Bridge.Stats()
	connected := 0.0
	if b.Connected {
		connected = 1
	}
	gauge(descConnected, connected)
	gauge(descPending, float64(b.PresencePending))
	gauge(descQoS0Lanes, float64(b.QoS0Lanes))
	counter(descPublished, b.Published)
	counter(descQoS0Dropped, b.QoS0Dropped)
	counter(descBusy, b.Busy)
	counter(descSpooled, b.Spooled)
	counter(descReplayed, b.Replayed)
	counter(descRejected, b.SpoolRejected)
	counter(descDropped, b.SpoolDropped)
	gauge(descSpoolFrames, float64(b.SpoolRecords))
	gauge(descSpoolBytes, float64(b.SpoolBytes))
	counter(descCommands, b.Commands)
	counter(descCmdFailed, b.CommandsFailed)
	counter(descForwarded, b.Forwarded)
	counter(descDuplicates, b.Duplicates)
	counter(descTakeovers, b.Takeovers)
	for why := range reasons {
		counter(descAdminRefused, c.refused.count[why].Load(), why.String())
	}
	if c.src.Plugins == nil {
		return
	}
	for _, p := range c.src.Plugins.Status() {
		up, disabled := 0.0, 0.0
		switch p.State {
		case "running":
			up = 1
		case "disabled":
			disabled = 1
		}
		gauge(descPluginUp, up, p.Path)
		gauge(descPluginDis, disabled, p.Path)
		counter(descRestarts, uint64(p.Restarts), p.Path)
	}
}
