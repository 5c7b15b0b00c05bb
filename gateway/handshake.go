package gateway

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/wsgate/wsgate/protocols"
)

// HandshakeError is a refused opening handshake: the HTTP status, a one-line
// reason for the body, and headers the response must carry.
type HandshakeError struct {
	Status int
	Reason string
	Header http.Header
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Reason)
}

func refuse(status int, format string, args ...any) *HandshakeError {
	return &HandshakeError{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// checkHandshake validates an opening handshake request as RFC 6455 section
// 4.2.1 asks and returns the subprotocols the client offered, in its order.
func checkHandshake(r *http.Request) ([]string, *HandshakeError) {
	if r.Method != http.MethodGet {
		e := refuse(http.StatusMethodNotAllowed, "a WebSocket handshake must use GET, not %s", r.Method)
		e.Header = http.Header{"Allow": {http.MethodGet}}
		return nil, e
	}
	if !r.ProtoAtLeast(1, 1) {
		return nil, refuse(http.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1, not %s", r.Proto)
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return nil, refuse(http.StatusBadRequest, `missing "Upgrade: websocket" header`)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return nil, refuse(http.StatusBadRequest, `missing "upgrade" token in the Connection header`)
	}
	versions := r.Header.Values("Sec-WebSocket-Version")
	if len(versions) == 0 {
		e := refuse(http.StatusBadRequest, "missing Sec-WebSocket-Version header")
		e.Header = versionHeader()
		return nil, e
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Version", "13") {
		e := refuse(http.StatusUpgradeRequired, "unsupported WebSocket version %q: this server speaks 13",
			strings.Join(versions, ", "))
		e.Header = versionHeader()
		return nil, e
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	switch {
	case len(keys) == 0:
		return nil, refuse(http.StatusBadRequest, "missing Sec-WebSocket-Key header")
	case len(keys) > 1:
		return nil, refuse(http.StatusBadRequest, "more than one Sec-WebSocket-Key header")
	case !validKey(keys[0]):
		return nil, refuse(http.StatusBadRequest, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes")
	}
	offered, err := protocols.ParseOffer(r.Header.Values("Sec-WebSocket-Protocol"))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "Sec-WebSocket-Protocol: %v", err)
	}
	return offered, nil
}

// versionHeader tells a refused client the version this server speaks. Set
// canonicalises the key, so that Header.Get finds it.
func versionHeader() http.Header {
	h := http.Header{}
	h.Set("Sec-WebSocket-Version", "13")
	return h
}

func validKey(key string) bool {
	key = strings.Trim(key, " \t")
	if len(key) != 24 {
		return false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(key)
	return err == nil && len(raw) == 16
}

// headerHasToken reports whether any comma-separated element of any line of
// header name equals token, ignoring ASCII case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, value := range h.Values(name) {
		for element := range strings.SplitSeq(value, ",") {
			if strings.EqualFold(strings.Trim(element, " \t"), token) {
				return true
			}
		}
	}
	return false
}
