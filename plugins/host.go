package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	pluginpb "github.com/wsgate/wsgate/plugins/proto"
	"github.com/wsgate/wsgate/protocols"
)

// Spec is one plugin binary to run.
type Spec struct {
	Path   string
	SHA256 string // hex; the binary is refused unless it matches
	// Protocols it must implement (from the config); empty accepts what
	// the plugin describes.
	Protocols []string
}

// Options configure the host.
type Options struct {
	Registry *protocols.Registry
	// Reserved are names plugins may not take (the built-in protocols).
	Reserved []string
	Log      *slog.Logger
	// RestartMin and RestartMax bound the delay before a failed plugin is
	// started again; it doubles after each failure.
	RestartMin, RestartMax time.Duration
	// MaxFailures in a row that no device is blamed for disable a plugin
	// until the gateway restarts. A plugin that runs for StableAfter counts
	// as healthy again.
	MaxFailures int
	StableAfter time.Duration
	// HealthInterval is how often a running plugin is probed; a probe
	// unanswered within HealthTimeout counts as a hang.
	HealthInterval, HealthTimeout time.Duration
	// StallTimeout: a session whose plugin takes no event for this long
	// fails with 1011 and the plugin is restarted as hung.
	StallTimeout time.Duration
	// SessionQueue bounds the events waiting for a plugin per session.
	SessionQueue int
	// StartTimeout bounds the launch and handshake of a plugin.
	StartTimeout time.Duration
	// KillGrace is how long a plugin being stopped has to exit after it is
	// asked to before it is killed (SIGKILL).
	KillGrace time.Duration
	// A device that causes DeviceFaults faults of a plugin within
	// FaultWindow is refused by it for FaultWindow. A crash with the events
	// of more than MaxSuspects devices in the plugin's hands is blamed on
	// the plugin instead (faults.go has the rules).
	DeviceFaults int
	FaultWindow  time.Duration
	MaxSuspects  int
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&o.RestartMin, time.Second)
	set(&o.RestartMax, 30*time.Second)
	set(&o.StableAfter, time.Minute)
	set(&o.HealthInterval, 5*time.Second)
	set(&o.HealthTimeout, 5*time.Second)
	set(&o.StallTimeout, 10*time.Second)
	set(&o.StartTimeout, 10*time.Second)
	set(&o.KillGrace, 2*time.Second)
	set(&o.FaultWindow, 10*time.Minute)
	positive := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	positive(&o.MaxFailures, 5)
	positive(&o.SessionQueue, 1024)
	positive(&o.DeviceFaults, 3)
	positive(&o.MaxSuspects, 3)
}

// Status describes one plugin for `wsgate protocols` and the metrics.
type Status struct {
	Path      string
	Protocols []string
	Version   string
	State     string // "running", "restarting", "disabled", "stopped"
	Restarts  int
	PID       int
}

// Host runs the plugins of one gateway.
type Host struct {
	opts    Options
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup
	plugins []*supervised
}

// NewHost prepares a host; Start launches plugins.
func NewHost(opts Options) *Host {
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Host{opts: opts, ctx: ctx, cancel: cancel}
}

// Start launches each plugin, checks it and registers its protocols. A
// plugin that cannot start (missing binary, checksum mismatch, a name taken
// by another protocol) is logged at error level with the reason and left
// out; the others run, and the gateway with them. The returned error joins
// the refusals for callers that report them otherwise. Running plugins are
// supervised until Close.
func (h *Host) Start(specs []Spec) error {
	var errs []error
	for _, spec := range specs {
		name := filepath.Base(spec.Path)
		p := &supervised{host: h, spec: spec, name: name, log: h.opts.Log.With("plugin", name),
			faults: newFaultBook(h.opts.DeviceFaults, h.opts.FaultWindow)}
		if err := p.start(); err != nil {
			p.log.Error("plugin refused; the gateway runs without it", "path", spec.Path, "err", err)
			errs = append(errs, fmt.Errorf("plugin %s: %w", spec.Path, err))
			continue
		}
		h.plugins = append(h.plugins, p)
		h.workers.Go(func() { p.supervise(h.ctx) })
	}
	return errors.Join(errs...)
}

// Status lists the plugins that started.
func (h *Host) Status() []Status {
	list := make([]Status, 0, len(h.plugins))
	for _, p := range h.plugins {
		list = append(list, p.status())
	}
	return list
}

// Close stops every plugin process and waits for the supervisors. Sessions
// still open on plugins end with 1011.
func (h *Host) Close() {
	h.cancel()
	h.workers.Wait()
	for _, p := range h.plugins {
		p.stop("stopped")
	}
}

// supervised is one plugin binary and its current process.
type supervised struct {
	host   *Host
	spec   Spec
	name   string
	log    *slog.Logger
	faults *faultBook // outlives processes: a device keeps its record across restarts

	mu       sync.Mutex
	proc     *process // nil while the plugin is not running
	names    []string
	version  string
	state    string
	restarts int
	started  time.Time
}

// process is one run of the plugin binary.
type process struct {
	client *plugin.Client
	cmd    *exec.Cmd
	rpc    pluginpb.ProtocolClient
	link   *link           // carries the sessions
	ctx    context.Context // the process's lifetime: its link and sessions end with it
	cancel context.CancelFunc
	grace  time.Duration       // KillGrace
	stalls chan *remoteSession // a session whose plugin took no event in time

	mu         sync.Mutex
	stopping   bool
	goroutines sync.WaitGroup // the link's and the sessions'

	// live are the sessions that may still have events in the plugin's
	// hands: all but those that ended cleanly or that the gateway cut.
	live map[*remoteSession]struct{}
}

// start launches the process and registers its protocols.
func (p *supervised) start() error {
	sum, err := hex.DecodeString(p.spec.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("sha256 %q is not 64 hex digits", p.spec.SHA256)
	}
	if st, err := os.Stat(p.spec.Path); err != nil {
		return fmt.Errorf("binary: %w", err)
	} else if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("binary %s is not an executable file", p.spec.Path)
	}
	linkConn, linkFile, err := socketPair()
	if err != nil {
		return err
	}
	// The plugin's end is its file descriptor 3 (pluginpb.LinkFD); once the
	// process has started, our copy is closed, so that the link sees the
	// end when the plugin exits.
	cmd := exec.Command(p.spec.Path)
	cmd.ExtraFiles = []*os.File{linkFile}
	cmd.Env = []string{fmt.Sprintf("%s=%d", pluginpb.LinkEnv, pluginpb.LinkFD)} // go-plugin adds the gateway's environment
	dieWithParent(cmd)
	proc := &process{
		cmd:    cmd,
		grace:  p.host.opts.KillGrace,
		stalls: make(chan *remoteSession, 1),
		live:   make(map[*remoteSession]struct{}),
		client: plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  pluginpb.Handshake,
			Plugins:          plugin.PluginSet{pluginpb.PluginName: &pluginpb.GRPCPlugin{}},
			Cmd:              cmd,
			SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			AutoMTLS:         true,
			Managed:          true, // plugin.CleanupClients in main is the last safety net
			StartTimeout:     p.host.opts.StartTimeout,
			Logger:           newHCLogger(p.log),
		}),
	}
	rpcClient, err := proc.client.Client()
	linkFile.Close()
	if err != nil {
		linkConn.Close()
		proc.kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return fmt.Errorf("refused: the binary's SHA-256 does not match the configured sha256 (was it replaced?)")
		}
		return fmt.Errorf("start: %w", err)
	}
	raw, err := rpcClient.Dispense(pluginpb.PluginName)
	if err != nil {
		linkConn.Close()
		proc.kill()
		return fmt.Errorf("dispense: %w", err)
	}
	proc.rpc = raw.(pluginpb.ProtocolClient)
	ctx, cancel := context.WithTimeout(p.host.ctx, p.host.opts.StartTimeout)
	desc, err := proc.rpc.Describe(ctx, &pluginpb.DescribeRequest{})
	cancel()
	if err != nil {
		linkConn.Close()
		proc.kill()
		return fmt.Errorf("describe: %w", err)
	}
	names := desc.GetProtocols()
	if err := p.checkNames(names); err != nil {
		linkConn.Close()
		proc.kill()
		return err
	}
	proc.ctx, proc.cancel = context.WithCancel(p.host.ctx)
	proc.link = runLink(proc, linkConn)
	p.mu.Lock()
	p.proc = proc
	p.names, p.version, p.state, p.started = names, desc.GetVersion(), "running", time.Now()
	p.mu.Unlock()
	for i, name := range names {
		if err := p.host.opts.Registry.Register(&remoteProtocol{name: name, plugin: p}, "plugin:"+p.spec.Path); err != nil {
			for _, done := range names[:i] {
				p.host.opts.Registry.Unregister(done)
			}
			p.stop("stopped")
			return fmt.Errorf("register: %w", err)
		}
	}
	p.log.Info("plugin started", "protocols", names, "version", desc.GetVersion(), "pid", pid(proc.client))
	return nil
}

func (p *supervised) checkNames(names []string) error {
	if len(names) == 0 {
		return errors.New("the plugin describes no protocol")
	}
	for _, want := range p.spec.Protocols {
		if !slices.Contains(names, want) {
			return fmt.Errorf("refused: the config says it implements %q, but it describes %v", want, names)
		}
	}
	for _, name := range names {
		if !protocols.IsToken(name) {
			return fmt.Errorf("protocol name %q is not a token", name)
		}
		if slices.Contains(p.host.opts.Reserved, name) {
			return fmt.Errorf("refused: protocol %q is built in and cannot be replaced by a plugin", name)
		}
	}
	return nil
}

// supervise restarts the plugin whenever it exits, stops answering or
// stalls a session, until ctx ends or it has failed too often by itself.
func (p *supervised) supervise(ctx context.Context) {
	failures := 0
	delay := p.host.opts.RestartMin
	for {
		p.mu.Lock()
		proc := p.proc
		p.mu.Unlock()
		f := p.watch(ctx, proc)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		stable := time.Since(p.started) >= p.host.opts.StableAfter
		p.mu.Unlock()
		if stable {
			failures, delay = 0, p.host.opts.RestartMin
		}
		p.stop("restarting")
		if !p.account(f) {
			failures++
		}
		for {
			if failures > p.host.opts.MaxFailures {
				p.setState("disabled")
				p.log.Error("plugin disabled after repeated failures; restart the gateway to try again", "failures", failures-1)
				return
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			delay = min(delay*2, p.host.opts.RestartMax)
			p.mu.Lock()
			p.restarts++
			p.mu.Unlock()
			if err := p.start(); err != nil {
				p.log.Error("plugin restart failed", "err", err)
				failures++
				continue
			}
			break
		}
	}
}

// failure is why a process must be replaced, and whose events were in its
// hands when it failed.
type failure struct {
	reason   string
	suspects []culprit
}

// watch returns why the running process must be replaced.
func (p *supervised) watch(ctx context.Context, proc *process) failure {
	exitPoll := time.NewTicker(250 * time.Millisecond)
	defer exitPoll.Stop()
	health := time.NewTicker(p.host.opts.HealthInterval)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			return failure{reason: "gateway stopping"}
		case s := <-proc.stalls:
			// A process that is stopped or wedged stalls every session: only
			// one that still answers has a session to blame.
			if err := p.probe(ctx, proc); err != nil {
				return failure{reason: "hung: a session stalled and the health probe failed: " + err.Error()}
			}
			f := failure{reason: "a session stalled: the plugin took no event within the stall timeout"}
			if c, ok := s.suspect(); ok {
				f.suspects = []culprit{c}
			}
			return f
		case <-exitPoll.C:
			if proc.client.Exited() {
				return failure{reason: "the plugin process exited", suspects: proc.suspects()}
			}
		case <-proc.link.ended:
			if ctx.Err() != nil {
				return failure{reason: "gateway stopping"}
			}
			// The sessions' link: without it the process serves nobody.
			// Most often the process died, which go-plugin sees a moment
			// later.
			reason := "the plugin's link ended: " + proc.link.Err().Error()
			if waitExit(proc.client, time.Second) {
				reason = "the plugin process exited"
			}
			return failure{reason: reason, suspects: proc.suspects()}
		case <-health.C:
			if err := p.probe(ctx, proc); err != nil && ctx.Err() == nil {
				return failure{reason: "hung: health probe failed: " + err.Error()}
			}
		}
	}
}

func (p *supervised) probe(ctx context.Context, proc *process) error {
	ctx, cancel := context.WithTimeout(ctx, p.host.opts.HealthTimeout)
	defer cancel()
	_, err := proc.rpc.Describe(ctx, &pluginpb.DescribeRequest{})
	return err
}

// stop unregisters the protocols and ends the process; its link breaks
// and the sessions' connections close with 1011.
func (p *supervised) stop(state string) {
	p.mu.Lock()
	proc, names := p.proc, p.names
	p.proc = nil
	p.state = state
	p.mu.Unlock()
	for _, name := range names {
		p.host.opts.Registry.Unregister(name)
	}
	if proc != nil {
		proc.stop()
	}
}

func (p *supervised) setState(state string) {
	p.mu.Lock()
	p.state = state
	p.mu.Unlock()
}

// running returns the current process, or nil.
func (p *supervised) running() *process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc
}

func (p *supervised) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Path: p.spec.Path, Protocols: slices.Clone(p.names), Version: p.version, State: p.state, Restarts: p.restarts}
	if p.proc != nil {
		st.PID = pid(p.proc.client)
	}
	return st
}

// stop cuts the link, ends the process and waits for the link's and the
// sessions' goroutines.
func (pr *process) stop() {
	pr.mu.Lock()
	pr.stopping = true
	pr.mu.Unlock()
	pr.cancel()
	pr.kill()
	pr.goroutines.Wait()
}

// kill ends the process: go-plugin asks it to exit, and after grace it is
// killed (SIGKILL). A stopped (SIGSTOP) or wedged plugin never answers the
// request, and go-plugin would wait for it forever.
func (pr *process) kill() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr.client.Kill()
	}()
	timer := time.NewTimer(pr.grace)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	}
	if pr.cmd.Process != nil {
		_ = pr.cmd.Process.Kill()
	}
	<-done // go-plugin's wait ends with the process, which SIGKILL ends
}

// goSession runs a session's goroutines, unless the process is stopping.
func (pr *process) goSession(fns ...func()) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.stopping {
		return false
	}
	for _, fn := range fns {
		pr.goroutines.Go(fn)
	}
	return true
}

func (pr *process) track(s *remoteSession) {
	pr.mu.Lock()
	pr.live[s] = struct{}{}
	pr.mu.Unlock()
}

func (pr *process) untrack(s *remoteSession) {
	pr.mu.Lock()
	delete(pr.live, s)
	pr.mu.Unlock()
}

// stalled reports a session whose plugin took no event in time.
func (pr *process) stalled(s *remoteSession) {
	select {
	case pr.stalls <- s:
	default: // one is enough to replace the process
	}
}

// suspects are the devices whose own events were in the plugin's hands.
func (pr *process) suspects() []culprit {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	seen := make(map[string]bool)
	var list []culprit
	for s := range pr.live {
		if c, ok := s.suspect(); ok && !seen[c.key()] {
			seen[c.key()] = true
			list = append(list, c)
		}
	}
	return list
}

// waitExit reports whether the process exits within d.
func waitExit(c *plugin.Client, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func pid(c *plugin.Client) int {
	if rc := c.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}
