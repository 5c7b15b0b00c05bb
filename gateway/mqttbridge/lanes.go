package mqttbridge

import (
	"context"
	"fmt"
	"hash/maphash"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// A lane is an extra broker connection that carries QoS 0 uplink frames
// only (mqtt.qos0_connections). One connection carries everything by
// default; but a broker may serve a busy connection one packet per wake-up
// (Mosquitto 2.0 does on plain TCP: a poll, two signal-mask calls and four
// reads per packet), so that the gateway's single connection costs it more
// per message than the devices' own connections would: 21 against 17 µs
// per message in make bench, a fifth of the QoS 0 rate on a machine the
// two share. Frames of one device always take the same lane, so they keep
// their order. A lane has no will and no subscriptions; commands,
// statuses and QoS 1 frames stay on the main connection.
type lane struct {
	client     mqtt.Client
	conn       atomic.Pointer[coalescingConn] // as Bridge.conn
	lost       chan struct{}
	connecting mqtt.Token // the attempt under way when the bridge stopped
}

// newLane makes the k-th lane (1 and up); it connects once started.
func (b *Bridge) newLane(k int) *lane {
	l := &lane{lost: make(chan struct{}, 1)}
	c := b.cfg
	opts := mqtt.NewClientOptions()
	if u, err := url.Parse(c.URL); err == nil && coalesces(u.Scheme) {
		opts.SetCustomOpenConnectionFn(func(uri *url.URL, opts mqtt.ClientOptions) (net.Conn, error) {
			cc, err := dialBroker(uri, opts)
			if err != nil {
				return nil, err
			}
			l.conn.Store(cc)
			return cc, nil
		})
	}
	for _, u := range append([]string{c.URL}, c.FallbackURLs...) {
		opts.AddBroker(u)
	}
	opts.SetClientID(fmt.Sprintf("%s-q0-%d", c.ClientID, k)).
		SetCredentialsProvider(b.credentials).
		SetTLSConfig(c.TLS).
		SetCleanSession(true).
		SetKeepAlive(c.KeepAlive).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(c.ConnectTimeout).
		SetWriteTimeout(10 * time.Second).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectionLostHandler(func(mqtt.Client, error) { signal(l.lost) })
	l.client = mqtt.NewClient(opts)
	return l
}

// laneOf is the lane that carries the device's QoS 0 frames, nil for the
// main connection.
func (b *Bridge) laneOf(device string) *lane {
	if len(b.lanes) == 0 {
		return nil
	}
	i := maphash.String(b.laneSeed, device) % uint64(len(b.lanes)+1)
	if i == 0 {
		return nil
	}
	return b.lanes[i-1]
}

// runLane keeps a lane connected until ctx ends, as connectLoop does the
// main connection. While a lane is down its devices' frames take the main
// connection.
func (b *Bridge) runLane(ctx context.Context, l *lane) {
	l.connecting = b.stayConnected(ctx, l.client, l.lost, connectHooks{
		failed: func(err error, retry time.Duration) {
			// While the main connection is down too, its own warning says it all.
			log := b.log.Debug
			if b.client.IsConnectionOpen() {
				log = b.log.Warn
			}
			log("a QoS 0 connection cannot connect; its devices' QoS 0 frames take the main one", "client_id", clientID(l.client), "err", err, "retry_in", retry.Round(time.Millisecond))
		},
	})
}

// closeLane disconnects a lane once its loop has ended.
func (l *lane) close(ctx context.Context) {
	if l.connecting != nil {
		select { // as for the main connection (Bridge.Close)
		case <-l.connecting.Done():
		case <-ctx.Done():
		}
	}
	l.client.Disconnect(250)
}

func clientID(c mqtt.Client) string {
	r := c.OptionsReader()
	return r.ClientID()
}

// openLanes counts the lanes connected.
func (b *Bridge) openLanes() int {
	n := 0
	for _, l := range b.lanes {
		if l.client.IsConnectionOpen() {
			n++
		}
	}
	return n
}
