package statuspage

import (
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// ui is the page: index.html and the files it loads from /ui/.
//
//go:embed ui
var ui embed.FS

// Options configure the page.
type Options struct {
	GatewayID string
	Version   string
	Started   time.Time
	// Interval is how often the feed looks at the components while a page
	// is open (1s when 0).
	Interval time.Duration
	// Heartbeat is how often a stream with nothing to say sends a comment,
	// so that proxies and the page see it is alive (15s when 0).
	Heartbeat time.Duration
	// MaxStreams bounds the event streams open at once (32 when 0).
	MaxStreams int
	// Buffer is how many events wait for one stream before it is resynced
	// (16 when 0).
	Buffer int
	// WriteTimeout bounds sending one event to a stream (10s when 0).
	WriteTimeout time.Duration
}

// Page serves the status page. Close ends its event streams.
type Page struct {
	opts Options
	src  Sources
	feed *feed
	log  *slog.Logger
}

// New returns the page of src. It starts nothing: the feed runs while
// event streams are open.
func New(opts Options, src Sources, log *slog.Logger) *Page {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 32
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 16
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	p := &Page{opts: opts, src: src, log: log}
	p.feed = newFeed(p.Snapshot, opts.Interval, opts.Buffer, opts.MaxStreams)
	return p
}

// Snapshot reads the components now.
func (p *Page) Snapshot() Snapshot {
	return p.src.take(Gateway{ID: p.opts.GatewayID, Version: p.opts.Version, Started: instant(p.opts.Started)})
}

// Close ends the event streams, so that the admin server's shutdown does
// not wait for them, and refuses new ones.
func (p *Page) Close() { p.feed.close() }

// Register adds the page's routes to mux:
//
//	GET /            the page
//	GET /ui/{file}   its script and style sheet
//	GET /status      the snapshot as JSON
//	GET /events      the snapshot, then changes, as server-sent events
func (p *Page) Register(mux *http.ServeMux) {
	files, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embedded directory is there, or this does not compile
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w)
		http.ServeFileFS(w, r, files, "index.html")
	})
	mux.HandleFunc("GET "+assetPrefix+"{file}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name == "index.html" || !fs.ValidPath(name) {
			http.NotFound(w, r)
			return
		}
		pageHeaders(w)
		http.ServeFileFS(w, r, files, name)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		pageHeaders(w)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(mustMarshal(p.Snapshot()))
	})
	mux.HandleFunc("GET /events", p.serveEvents)
}

// assetPrefix is where the page's files are, besides / itself.
const assetPrefix = "/ui/"

// IsAsset reports whether r asks for one of the page's files. They hold
// no data, and a browser loads them without the admin token (it can only
// send the token from the page's script), so the admin endpoints serve
// them without it.
func IsAsset(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, assetPrefix))
}

// pageHeaders are the headers of everything the page serves: nothing but
// its own files runs in it or loads into it, no other site may frame it
// (its buttons approve devices), and the browser checks again for new
// files.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// serveEvents streams the snapshot, then each change, as server-sent
// events, with a comment line when there is nothing to say for a while.
func (p *Page) serveEvents(w http.ResponseWriter, r *http.Request) {
	s, snapshot, err := p.feed.subscribe()
	if err != nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer p.feed.unsubscribe(s)
	rc := http.NewResponseController(w)
	// The admin server's read timeout, meant for requests, would end the
	// stream.
	_ = rc.SetReadDeadline(time.Time{})
	pageHeaders(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx in front would hold events back
	w.WriteHeader(http.StatusOK)

	send := func(ev []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(p.opts.WriteTimeout))
		if _, err := w.Write(ev); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(snapshot) {
		return
	}
	p.log.Debug("status stream opened", "remote", r.RemoteAddr)
	defer p.log.Debug("status stream closed", "remote", r.RemoteAddr)
	heartbeat := time.NewTicker(p.opts.Heartbeat)
	defer heartbeat.Stop()
	for {
		var ev []byte
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case ev = <-s.events:
		case <-s.resync:
			if ev = p.feed.resync(s); ev == nil {
				return
			}
		case <-heartbeat.C:
			ev = keepAlive
		}
		if !send(ev) {
			return
		}
	}
}

// keepAlive is a comment line: ignored by the page, it shows the
// connection is alive.
var keepAlive = []byte(": keep-alive\n\n")
