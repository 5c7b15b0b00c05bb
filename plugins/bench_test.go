package plugins

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/plugins/examples/ocpp16"
	"github.com/wsgate/wsgate/protocols"
)

// BenchmarkProtocolPath runs the same protocol (OCPP Heartbeat calls, each
// published, acknowledged and answered) compiled in and through a plugin
// process, to price the process boundary. Allocations are those of the
// gateway process only; cpu-us/msg counts both processes, the measure that
// holds on a shared machine where rates swing.
func BenchmarkProtocolPath(b *testing.B) {
	b.Run("in-process", func(b *testing.B) { benchProtocol(b, ocpp16.Protocol{}, 0) })
	// One plugin process serves every run the testing package makes to
	// find b.N, as a gateway's plugin serves its sessions for as long as
	// it runs: a process started for the measured run alone would be
	// measured while its heap grows to its collector's target.
	registry, err := protocols.NewRegistry([]string{"ocpp1.6"})
	if err != nil {
		b.Fatal(err)
	}
	host := NewHost(Options{Registry: registry, Log: quietLog()})
	defer host.Close()
	if err := host.Start([]Spec{spec(b, ocppPlugin)}); err != nil {
		b.Fatal(err)
	}
	p, ok := registry.Lookup("ocpp1.6")
	if !ok {
		b.Fatal("plugin protocol not registered")
	}
	b.Run("plugin", func(b *testing.B) { benchProtocol(b, p, host.Status()[0].PID) })
}

// benchProtocol sends b.N calls through p; plugin is the pid of the
// plugin process serving p, 0 for none.
func benchProtocol(b *testing.B, p protocols.Protocol, plugin int) {
	// Both on the share of the cores wsgate gives them by default: this
	// process, where the protocol runs in process and the gateway's side
	// of the plugin's stream, as the gateway takes ([runtime] max_procs),
	// the plugin as the SDK takes. (The testing package sets GOMAXPROCS
	// again between runs.) The gateway's garbage collector target is left
	// out: this process's heap is a few MiB, where a gateway's holds its
	// devices, and at gc_percent 50 the collector ran so often here that it
	// cost the in-process protocol more than the plugin's whole crossing.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(config.Default().Runtime.Procs(runtime.GOMAXPROCS(0))))
	out := &benchOutlet{want: int64(b.N), done: make(chan struct{})}
	s, err := p.NewSession(b.Context(), protocols.SessionInfo{ID: "bench", Path: "/ocpp/CP-bench"}, out)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(nil)
	cpu := func() (time.Duration, error) {
		own, err := processCPU(0)
		if err != nil || plugin == 0 {
			return own, err
		}
		theirs, err := processCPU(plugin)
		return own + theirs, err
	}
	msg := protocols.Message{Type: protocols.Text, Data: []byte(`[2,"1","Heartbeat",{}]`)}
	b.ReportAllocs()
	cpu0, cpuErr := cpu()
	b.ResetTimer()
	for range b.N {
		if err := s.OnMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-out.done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d answers after a minute", out.sent.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if cpu1, err := cpu(); cpuErr == nil && err == nil {
		b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu-us/msg")
	}
}

// benchOutlet acknowledges every frame at once and counts the answers.
type benchOutlet struct {
	want int64
	sent atomic.Int64
	done chan struct{}
}

func (o *benchOutlet) Attach(protocols.Device) error { return nil }

func (o *benchOutlet) Send(protocols.Message) error {
	if o.sent.Add(1) == o.want {
		close(o.done)
	}
	return nil
}

func (o *benchOutlet) Publish(f protocols.Frame) error {
	if f.Ack != nil {
		f.Ack(nil)
	}
	return nil
}

func (o *benchOutlet) Close(int, string) {}
