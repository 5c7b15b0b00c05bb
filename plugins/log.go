package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger gives go-plugin an hclog.Logger whose lines end up in log:
// go-plugin writes JSON, slogWriter turns each line into a slog record.
// Lines the plugin writes to stderr arrive here with their own level.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "go-plugin",
		Output:     &slogWriter{log: log},
		JSONFormat: true,
		Level:      hclog.Debug,
	})
}

type slogWriter struct {
	mu  sync.Mutex
	log *slog.Logger
	buf []byte
}

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *slogWriter) emit(line []byte) {
	var fields map[string]any
	if json.Unmarshal(line, &fields) != nil {
		w.log.Info(string(line))
		return
	}
	msg, _ := fields["@message"].(string)
	level := slog.LevelInfo
	switch l, _ := fields["@level"].(string); strings.ToLower(l) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	var attrs []slog.Attr
	for k, v := range fields {
		if strings.HasPrefix(k, "@") || k == "timestamp" {
			continue
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	w.log.LogAttrs(context.Background(), level, msg, attrs...)
}
