package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/gateway/spool"
)

// TestLifecycle: components start in order and stop in reverse; one that
// fails to start stops those started before it, and only those; a stop
// that fails does not keep the others from stopping.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		failStart  string   // the component whose start fails
		failStop   string   // the component whose stop fails
		wantEvents []string // starts and stops, in order
	}{
		{name: "all start, stop in reverse",
			wantEvents: []string{"start a", "start b", "start c", "stop c", "stop a"}},
		{name: "the third fails", failStart: "c",
			wantEvents: []string{"start a", "start b", "start c", "stop a"}},
		{name: "the first fails", failStart: "a",
			wantEvents: []string{"start a"}},
		{name: "a stop fails, the others still stop", failStop: "c",
			wantEvents: []string{"start a", "start b", "start c", "stop c", "stop a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var events []string
			part := func(name string, stoppable bool) component {
				c := component{name: name, start: func(context.Context) error {
					events = append(events, "start "+name)
					if name == tt.failStart {
						return errBoom
					}
					return nil
				}}
				if stoppable { // b has nothing to undo
					c.stop = func(context.Context) error {
						events = append(events, "stop "+name)
						if name == tt.failStop {
							return errBoom
						}
						return nil
					}
				}
				return c
			}
			l := &lifecycle{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			stopCtx := func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), time.Second)
			}
			err := l.start(t.Context(), stopCtx, []component{part("a", true), part("b", false), part("c", true)})
			if tt.failStart != "" {
				if !errors.Is(err, errBoom) || err.Error() != tt.failStart+": boom" {
					t.Fatalf("start = %v, want %q", err, tt.failStart+": boom")
				}
			} else {
				if err != nil {
					t.Fatalf("start: %v", err)
				}
				err = l.stop(t.Context())
				if (tt.failStop != "") != errors.Is(err, errBoom) {
					t.Errorf("stop = %v", err)
				}
			}
			if !slices.Equal(events, tt.wantEvents) {
				t.Errorf("events %q, want %q", events, tt.wantEvents)
			}
		})
	}
}

// TestGatewayStartFailureUnwinds: when the WebSocket server cannot listen,
// wsgate exits with an error that names it, after stopping what had
// started: the embedded broker's port and the spool are free again.
func TestGatewayStartFailureUnwinds(t *testing.T) {
	t.Parallel()
	ts := testConfig(t, "")
	taken, err := net.Listen("tcp", strings.TrimSuffix(strings.TrimPrefix(ts.wsURL, "ws://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var out syncBuffer
	if status := run(t.Context(), []string{"run", "-config", ts.path}, &out, &out); status != 1 {
		t.Fatalf("status %d, want 1:\n%s", status, out.String())
	}
	if !strings.Contains(out.String(), "WebSocket server: listen on") {
		t.Errorf("the error does not name the component:\n%s", out.String())
	}
	ln, err := net.Listen("tcp", strings.TrimPrefix(ts.mqttURL, "tcp://"))
	if err != nil {
		t.Errorf("the embedded broker still holds its port: %v", err)
	} else {
		ln.Close()
	}
	sp, err := spool.Open(filepath.Join(ts.dir, "spool.db"), spool.Limits{MaxRecords: 10, MaxBytes: 1 << 20}, spool.Reject)
	if err != nil {
		t.Errorf("the spool is still open: %v", err)
	} else {
		sp.Close()
	}
}
