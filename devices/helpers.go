package devices

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ValidChannel checks a driver's frame channel: "/"-separated MQTT topic
// levels, none empty, without wildcards, NUL or a leading '$', and not
// under the levels the gateway reserves (status, cmd). Its error is meant
// for Validate: KeyError("channel", "%v", err).
func ValidChannel(ch string) error {
	if ch == "" {
		return errors.New("required")
	}
	if len(ch) > 256 {
		return fmt.Errorf("%q is longer than 256 bytes", Clip([]byte(ch), 64))
	}
	for level := range strings.SplitSeq(ch, "/") {
		switch {
		case level == "":
			return fmt.Errorf("%q has an empty topic level", ch)
		case strings.ContainsAny(level, "+#\x00"):
			return fmt.Errorf("%q contains a wildcard or NUL", ch)
		case level[0] == '$':
			return fmt.Errorf("%q has a level starting with $", ch)
		}
	}
	if first, _, _ := strings.Cut(ch, "/"); first == "cmd" || first == "status" {
		return fmt.Errorf("%q starts with cmd or status, which belong to the gateway", ch)
	}
	return nil
}

// TextPayload is a line of text as a frame payload: a JSON string (with
// <, > and & left as they are).
func TextPayload(text string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(text) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Clip shortens b for a log line or an error message.
func Clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Warner logs a repeated warning (a device that keeps sending bad lines)
// at most once per interval, with the number of times it was not logged.
type Warner struct {
	Log   *slog.Logger
	Every time.Duration

	kinds sync.Map // message -> *warnState
}

type warnState struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Warn logs msg unless it was logged less than Every ago.
func (w *Warner) Warn(msg string, args ...any) {
	v, _ := w.kinds.LoadOrStore(msg, &warnState{})
	s := v.(*warnState)
	s.mu.Lock()
	now := time.Now()
	if !s.last.IsZero() && now.Sub(s.last) < w.Every {
		s.suppressed++
		s.mu.Unlock()
		return
	}
	suppressed := s.suppressed
	s.last, s.suppressed = now, 0
	s.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "not_logged_since", suppressed)
	}
	w.Log.Warn(msg, args...)
}
