package module

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/wsgate/wsgate/mdns"
	"github.com/wsgate/wsgate/protocols"
)

// Listening is implemented by configurations whose protocol needs
// listeners of its own by default (SHIP devices and mDNS expect SHIP on
// port 4711). They run beside the [[listeners]] entries while the
// protocol is enabled.
type Listening interface {
	Listeners() []Listener
}

// Listener is a listener a protocol brings.
type Listener struct {
	// AddressKey is the key of Address in the protocol's table, named in
	// problems such as an address that a [[listeners]] entry uses too.
	AddressKey string
	Address    string
	Path       string
	// Protocols it serves; empty serves every enabled protocol (each one's
	// Admitter still decides per client).
	Protocols []string
	// Fallback serves clients that offer no subprotocol.
	Fallback string
	// TLS serves wss:// with the protocol's own identity: its Protocol
	// must be a TLSProvider.
	TLS bool
	// PingInterval, PongTimeout and MaxMessage override the gateway's
	// websocket settings when positive.
	PingInterval, PongTimeout time.Duration
	MaxMessage                int64
}

// TLSProvider is implemented by protocols that bring a server identity of
// their own (SHIP's self-signed certificate). Their Listening listeners
// serve wss:// with it; [[listeners]] entries with a certificate of their
// own that may serve the protocol ask clients for a certificate too, so
// that its Admitter can see one.
type TLSProvider interface {
	// ListenerTLS returns the configuration of the protocol's listeners.
	// It should request rather than require client certificates, so that
	// clients of the other protocols on the same listener still connect.
	ListenerTLS() *tls.Config
}

// Runner is implemented by protocols with background work: dialling
// devices that wait to be called, announcing the gateway over mDNS.
type Runner interface {
	// Start begins the work and returns; host reaches the gateway.
	Start(ctx context.Context, host Host) error
	// Stop ends the work and waits for it until ctx ends.
	Stop(ctx context.Context) error
}

// Host is what a Runner can ask of the gateway.
type Host interface {
	// Dial connects to a WebSocket server and runs a session of p on the
	// connection exactly as on an accepted one, until the connection ends
	// or ctx ends. It returns an error when no connection was opened.
	Dial(ctx context.Context, opts DialOptions, p protocols.Protocol) error
	// MDNS returns the gateway's mDNS responder, which runs from before
	// Start until after Stop: a Runner announces its services on it (and
	// withdraws them when it stops), and browses with its Options. It is
	// nil when mDNS is off ([mdns] enabled = false).
	MDNS() *mdns.Responder
}

// DialOptions say how a Runner's connection is opened.
type DialOptions struct {
	URL       string // ws:// or wss://
	TLSConfig *tls.Config
	// PingInterval, PongTimeout and MaxMessage override the gateway's
	// websocket settings when positive.
	PingInterval, PongTimeout time.Duration
	MaxMessage                int64
}

// AdminRouter is implemented by protocols that serve HTTP routes on the
// admin address (SHIP's pairing API). The admin server applies its own
// protections to them.
type AdminRouter interface {
	AdminRoutes() []AdminRoute
}

// AdminRoute is one route, with a net/http ServeMux pattern such as
// "POST /ship/peers/{ski}/approve".
type AdminRoute struct {
	Pattern string
	Handler http.Handler
}

// Pairer is implemented by protocols whose devices the user pairs before
// they may connect (SHIP). The status page on the admin address lists
// their peers with buttons to approve and reject them, which call the
// protocol's admin routes POST /<name>/peers/{id}/approve and
// POST /<name>/peers/{id}/reject (an AdminRouter must serve them).
type Pairer interface {
	Name() string // the protocol's
	// PairingPeers lists the peers the protocol knows. It is called every
	// second or so while a status page is open, and must not block.
	PairingPeers() []Peer
}

// Peer is a device a Pairer knows.
type Peer struct {
	ID    string // how the admin routes name it (SHIP: the SKI)
	Name  string // what the device calls itself (SHIP: its SHIP ID); may be empty
	State PeerState
	// Auto is set for a peer trusted without the user (SHIP's auto_accept).
	Auto bool
	// LastSeen is when the peer last tried to connect; zero for one the
	// user paired in advance.
	LastSeen time.Time
}

// PeerState is what the user decided about a peer, or that nobody has yet.
type PeerState string

// The states of a Peer.
const (
	PeerPending  PeerState = "pending"
	PeerTrusted  PeerState = "trusted"
	PeerRejected PeerState = "rejected"
)

// GatewayCommander is implemented by protocols that take commands
// published to the gateway itself, {prefix}/$gateway/{id}/cmd/{name}
// (SHIP pairing over MQTT).
type GatewayCommander interface {
	// GatewayCommands lists the command names the protocol takes.
	GatewayCommands() []string
	// GatewayCommand runs one; data is published as the JSON result. It
	// is called on the MQTT client's goroutine and must return promptly.
	GatewayCommand(name string, args json.RawMessage) (data any, err error)
}

// Subcommand is implemented by configurations whose protocol has
// subcommands of the binary: `wsgate <name> <command> [args]`.
type Subcommand interface {
	// SubcommandUsage is the help text, starting with a usage line.
	SubcommandUsage() string
	// RunSubcommand runs args (without `wsgate <name>`; the binary has
	// taken its own flags, -config and -admin, out of them) and returns
	// the exit status.
	RunSubcommand(ctx context.Context, env CommandEnv, args []string) int
}

// CommandEnv is what a subcommand gets from the binary. The receiver of
// RunSubcommand is the protocol's configuration, decoded from the file
// given with -config (or the defaults).
type CommandEnv struct {
	Stdout, Stderr io.Writer
	Settings       Settings
	// Admin calls the running gateway's admin API.
	Admin AdminAPI
}

// AdminAPI reaches the running gateway's admin API.
type AdminAPI interface {
	// Call sends a request without a body to path and decodes a JSON
	// answer into out (unless out is nil). An answer that is not 2xx is
	// an error carrying the API's message.
	Call(ctx context.Context, method, path string, out any) error
}
