package brokertest

import (
	"bytes"
	"cmp"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// NATSCluster is a cluster of nats-server processes on loopback with
// JetStream and the MQTT interface, owned by a test: the clustered broker
// of a fleet.
type NATSCluster struct {
	t     testing.TB
	bin   string
	Nodes []*NATSNode
}

// NATSNode is one server of a NATSCluster.
type NATSNode struct {
	Name    string
	URL     string // its MQTT listener, tcp://127.0.0.1:PORT
	mqtt    int
	monitor int
	conf    string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *Output
}

// StartNATSCluster starts n nats-server processes that form one cluster
// with JetStream (each with its own store) and an MQTT listener each, and
// waits until MQTT clients can use every node. The cluster is stopped when
// the test ends, and its logs are shown if the test failed.
//
// JetStream in a cluster needs a server name per node and a cluster name;
// MQTT needs JetStream, whose streams (sessions, retained messages, QoS 1
// messages) it replicates on up to three nodes, so a three-node cluster
// keeps them through the loss of one.
//
// It runs the newest of NATSServers: Debian 12's 2.9.10 is too unsteady
// under load for tests that are not about it (docs/DEPLOY.md); those that
// are take each of NATSServers with StartNATSClusterOf.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	servers := NATSServers(t)
	newest := slices.MaxFunc(servers, func(a, b NATSServer) int {
		return cmp.Or(cmp.Compare(a.Major, b.Major), cmp.Compare(a.Minor, b.Minor))
	})
	return StartNATSClusterOf(t, newest.Path, n)
}

// StartNATSClusterOf is StartNATSCluster with the nats-server binary bin.
func StartNATSClusterOf(t testing.TB, bin string, n int) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t, bin: bin}
	dir := t.TempDir()
	routes := make([]string, n)
	clusterPorts := make([]int, n)
	ports := FreePorts(t, 4*n) // cluster, MQTT, monitor and client port of each node
	for i := range n {
		clusterPorts[i] = ports[4*i]
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPorts[i])
	}
	for i := range n {
		node := &NATSNode{Name: fmt.Sprintf("n%d", i+1), mqtt: ports[4*i+1], monitor: ports[4*i+2]}
		node.URL = "tcp://127.0.0.1:" + strconv.Itoa(node.mqtt)
		node.conf = filepath.Join(dir, node.Name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: wsgate-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
mqtt {
  listen: 127.0.0.1:%d
  # Sessions, retained and QoS 1 messages on every node: without it the
  # streams get as many replicas as nodes had joined when the first
  # client came, possibly one, and a killed node takes acknowledged
  # messages along.
  stream_replicas: %d
}
`, node.Name, ports[4*i+3], node.monitor, filepath.Join(dir, node.Name), clusterPorts[i], strings.Join(routes, ", "), node.mqtt, min(n, 3))
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.signal(syscall.SIGTERM)
			if t.Failed() {
				t.Logf("log of nats-server %s:\n%s", node.Name, node.log)
			}
		}
	})
	for _, node := range c.Nodes {
		c.start(node)
	}
	for _, node := range c.Nodes {
		c.waitReady(node)
	}
	return c
}

// NATSServer is a nats-server binary and its version.
type NATSServer struct {
	Path    string
	Version string // "2.9.10"
	Major   int
	Minor   int
}

// NATSServers returns the nats-server binaries to test with: the system's
// (Debian's package), and the one WSGATE_NATS_SERVER names (make test
// builds a current release from the Go module proxy), when set.
func NATSServers(t testing.TB) []NATSServer {
	t.Helper()
	paths := []string{Require(t, "nats-server")}
	if p := os.Getenv("WSGATE_NATS_SERVER"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("WSGATE_NATS_SERVER=%s is not an executable", p)
		}
		paths = append(paths, p)
	}
	var servers []NATSServer
	for _, p := range paths {
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", p, err)
		}
		// "nats-server: v2.9.10"
		s := NATSServer{Path: p, Version: strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(string(out), "nats-server:")), "v")}
		if _, err := fmt.Sscanf(s.Version, "%d.%d", &s.Major, &s.Minor); err != nil {
			t.Fatalf("%s --version: %q", p, out)
		}
		if !slices.ContainsFunc(servers, func(o NATSServer) bool { return o.Version == s.Version }) {
			servers = append(servers, s)
		}
	}
	return servers
}

// AtLeast reports whether the server is version major.minor or later.
func (s NATSServer) AtLeast(major, minor int) bool {
	return s.Major > major || s.Major == major && s.Minor >= minor
}

// URLs returns the MQTT URLs of the nodes, starting with node first: a
// client's url and fallback_urls.
func (c *NATSCluster) URLs(first int) []string {
	var urls []string
	for i := range c.Nodes {
		urls = append(urls, c.Nodes[(first+i)%len(c.Nodes)].URL)
	}
	return urls
}

func (c *NATSCluster) start(node *NATSNode) {
	c.t.Helper()
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.cmd != nil {
		return
	}
	if node.log == nil {
		node.log = &Output{}
	}
	cmd := exec.Command(c.bin, "-c", node.conf)
	// Killed with the test binary, should it die without cleaning up (a
	// test timeout panics).
	cmd.SysProcAttr = DieWithParent()
	cmd.Stdout, cmd.Stderr = node.log, node.log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start nats-server %s: %v", node.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	node.cmd, node.exited = cmd, exited
}

// waitReady waits until the node's JetStream is healthy and an MQTT client
// can publish through it (the first MQTT client of an account creates its
// streams).
func (c *NATSCluster) waitReady(node *NATSNode) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := node.probe()
		if err == nil {
			return
		}
		node.mu.Lock()
		exited := node.exited
		node.mu.Unlock()
		select {
		case <-exited:
			c.t.Fatalf("nats-server %s exited at start:\n%s", node.Name, node.log)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats-server %s is not ready: %v\n%s", node.Name, err, node.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (node *NATSNode) probe() error {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", node.monitor))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	cl := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(node.URL).SetClientID(ClientID("nats-probe")).
		SetConnectTimeout(5 * time.Second))
	tok := cl.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("mqtt connect: %v", tok.Error())
	}
	defer cl.Disconnect(100)
	if tok := cl.Publish("brokertest/probe", 1, false, []byte("1")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("mqtt publish: %v", tok.Error())
	}
	return nil
}

// Kill ends node i with SIGKILL.
func (c *NATSCluster) Kill(i int) { c.Nodes[i].signal(syscall.SIGKILL) }

// Start starts node i again on its ports and store, and waits until it is
// ready.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	c.start(c.Nodes[i])
	c.waitReady(c.Nodes[i])
}

func (node *NATSNode) signal(sig syscall.Signal) {
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.cmd == nil {
		return
	}
	_ = node.cmd.Process.Signal(sig)
	select {
	case <-node.exited:
	case <-time.After(10 * time.Second):
		_ = node.cmd.Process.Kill()
		<-node.exited
	}
	node.cmd = nil
}

// Output collects what a process writes while a test reads it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Output) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Output) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
