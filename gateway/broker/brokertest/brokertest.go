// Package brokertest starts real MQTT brokers for tests: Mosquitto from
// PATH on a free loopback port with a generated config, or the embedded
// broker, plus a paho subscriber that records what arrives.
//
// Outside CI a test skips when mosquitto is missing; with CI=true it fails,
// so a CI machine without it never passes by skipping.
package brokertest

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wsgate/wsgate/gateway/broker"
)

// Require returns the path of a program the test needs, skipping the test
// when it is missing outside CI and failing it in CI.
func Require(t testing.TB, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		if p := filepath.Join(dir, program); isExecutable(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI but not installed (make test-deps installs it)", program)
	}
	t.Skipf("%s not installed; run `make test-deps`", program)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago: all held open at once, so that no two are the same (ports
// taken one after the other may repeat), and none handed out before in
// this process. The kernel soon offers a closed port again: a broker a
// test stopped for an outage would find its port taken by another test's
// broker, and its clients would reconnect to that one.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("no free port found that was not handed out before")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue
		}
		ports = append(ports, port)
	}
	for _, p := range ports {
		handedOut.ports[p] = true
	}
	return ports
}

// handedOut are the ports FreePorts returned in this process.
var handedOut = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// Mosquitto is a mosquitto process owned by a test.
type Mosquitto struct {
	t       testing.TB
	bin     string
	dir     string
	Port    int
	URL     string // tcp://127.0.0.1:PORT
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile string
}

// StartMosquitto starts Mosquitto with persistence in a temp dir; it is
// stopped when the test ends.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: Require(t, "mosquitto"), dir: t.TempDir(), Port: FreePort(t)}
	m.URL = "tcp://127.0.0.1:" + strconv.Itoa(m.Port)
	m.logFile = filepath.Join(m.dir, "mosquitto.log")
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 1
log_dest file %s
log_type error
log_type warning
log_type notice
max_queued_messages 0
`, m.Port, m.dir, m.logFile)
	if os.Geteuid() == 0 {
		// As root Mosquitto switches to the user "mosquitto", which cannot
		// write the test's private temp dir: no log, and above all no
		// persistence (a restart would forget sessions and retained
		// messages). Stay root.
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(m.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start (re)starts the process on the same port and persistence directory
// and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	cmd := exec.Command(m.bin, "-c", filepath.Join(m.dir, "mosquitto.conf"))
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(m.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(m.logFile)
			m.t.Fatalf("mosquitto exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto did not listen on %d: %v", m.Port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the process with SIGTERM (Mosquitto saves its persistence
// file) and waits for it.
func (m *Mosquitto) Stop() { m.signal(syscall.SIGTERM) }

// Kill ends the process with SIGKILL: no goodbye, no save.
func (m *Mosquitto) Kill() { m.signal(syscall.SIGKILL) }

// Pause freezes the process (SIGSTOP): its connections stay open but it
// answers nothing, like a hung broker. Resume, Stop or Kill end the pause.
func (m *Mosquitto) Pause() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGSTOP)
	// Wait until it is stopped (state T), where /proc tells.
	stat := fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		// pid (comm) state ...: the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return
		}
	}
}

// Resume continues a paused process (SIGCONT).
func (m *Mosquitto) Resume() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		_ = m.cmd.Process.Signal(syscall.SIGCONT)
	}
}

func (m *Mosquitto) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	_ = m.cmd.Process.Signal(syscall.SIGCONT) // a paused process handles sig now
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// StartEmbedded starts the embedded broker on a free loopback port and
// returns its URL; it is closed when the test ends.
func StartEmbedded(t testing.TB) string {
	t.Helper()
	b, err := broker.Start(broker.Options{Address: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return "tcp://" + b.Address()
}

// Message is one received publish.
type Message struct {
	Topic    string
	Payload  []byte
	Retained bool
	QoS      byte
}

// Subscriber is a paho client that records every message on its filters.
type Subscriber struct {
	client   mqtt.Client
	Messages chan Message
}

// clientIDs makes every client id of this process unique.
var clientIDs atomic.Uint64

// ClientID returns a client id no other client of this test binary uses.
func ClientID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), clientIDs.Add(1))
}

// Subscribe connects a new client to url and subscribes to filter at QoS 1;
// it returns once the broker has confirmed the subscription (SUBACK), so
// that everything published afterwards is seen. Messages are buffered (up
// to 1<<17; a full buffer stalls the client); the client disconnects when
// the test ends. It reconnects by itself after a broker restart.
func Subscribe(t testing.TB, url, filter string) *Subscriber {
	t.Helper()
	return subscribe(t, url, filter, ClientID("brokertest"), true, 1)
}

// SubscribeQoS0 is Subscribe at QoS 0: on NATS a plain subscription, where
// a QoS 1 one is a JetStream consumer.
func SubscribeQoS0(t testing.TB, url, filter string) *Subscriber {
	t.Helper()
	return subscribe(t, url, filter, ClientID("brokertest"), true, 0)
}

// SubscribeSession is Subscribe with a persistent session (clean session
// false) under clientID: while the subscriber is disconnected the broker
// queues the QoS 1 messages of its subscription for it, and Mosquitto with
// persistence keeps them, and the session, across its own restart (after
// a Stop; a Kill loses what was not saved yet).
func SubscribeSession(t testing.TB, url, filter, clientID string) *Subscriber {
	t.Helper()
	return subscribe(t, url, filter, clientID, false, 1)
}

func subscribe(t testing.TB, url, filter, clientID string, clean bool, qos byte) *Subscriber {
	t.Helper()
	s := &Subscriber{Messages: make(chan Message, 1<<17)}
	record := func(_ mqtt.Client, m mqtt.Message) {
		s.Messages <- Message{Topic: m.Topic(), Payload: m.Payload(), Retained: m.Retained(), QoS: m.Qos()}
	}
	subscribed := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker(url).
		SetClientID(clientID).
		// Messages a resumed session delivers before the subscription is
		// renewed match no handler yet: record them all the same.
		SetDefaultPublishHandler(record).
		SetCleanSession(clean).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.Subscribe(filter, qos, record)
			go func() {
				tok.Wait()
				select {
				case subscribed <- tok.Error():
				default: // a resubscription after a reconnect
				}
			}()
		})
	s.client = mqtt.NewClient(opts)
	t.Cleanup(func() { s.client.Disconnect(100) })
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect to %s: %v", url, tok.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscribe %s at %s: %v", filter, url, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("subscribe %s at %s: no SUBACK", filter, url)
	}
	return s
}

// Close disconnects the subscriber before the test ends.
func (s *Subscriber) Close() { s.client.Disconnect(100) }

// Next waits for the next message on topic, skipping others.
func (s *Subscriber) Next(t testing.TB, topic string, timeout time.Duration) Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.Messages:
			if m.Topic == topic {
				return m
			}
		case <-deadline:
			t.Fatalf("no message on %s within %s", topic, timeout)
			return Message{}
		}
	}
}

// Publish publishes one message at QoS 1 with a fresh client and waits
// for the PUBACK.
func Publish(t testing.TB, url, topic string, payload []byte, retain bool) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(ClientID("brokertest-pub")))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, retain, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// Publisher is one client for many publishes.
type Publisher struct {
	client mqtt.Client
}

// NewPublisher connects a client to url; it disconnects when the test
// ends. It reconnects by itself after a broker restart.
func NewPublisher(t testing.TB, url string) *Publisher {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(ClientID("brokertest-pub")).
		SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &Publisher{client: c}
}

// Publish publishes at QoS 1 and waits for the PUBACK.
func (p *Publisher) Publish(t testing.TB, topic string, payload []byte, retain bool) {
	t.Helper()
	if tok := p.client.Publish(topic, 1, retain, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}
