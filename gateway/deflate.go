package gateway

import (
	"net/http"
	"strconv"
	"strings"
)

// acceptableDeflateOffer reports whether the client offered
// permessage-deflate (RFC 7692) with parameters this server can honour.
//
// The server compresses every message on its own (no context takeover in
// either direction) with a 32 KiB window, and answers
// "permessage-deflate; server_no_context_takeover; client_no_context_takeover".
// So it accepts an offer with any of server_no_context_takeover,
// client_no_context_takeover and client_max_window_bits (with or without a
// value from 8 to 15), and server_max_window_bits only at 15; an offer with
// a smaller server window, an unknown or repeated parameter, or an invalid
// value is declined, as section 5 requires, and the next offer is tried.
func acceptableDeflateOffer(h http.Header) bool {
	for _, value := range h.Values("Sec-WebSocket-Extensions") {
		for offer := range strings.SplitSeq(value, ",") {
			if deflateOfferOK(offer) {
				return true
			}
		}
	}
	return false
}

func deflateOfferOK(offer string) bool {
	parts := strings.Split(offer, ";")
	if strings.TrimSpace(parts[0]) != "permessage-deflate" {
		return false
	}
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		name, value, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		name = strings.TrimSpace(name)
		value = strings.Trim(strings.TrimSpace(value), `"`)
		if seen[name] {
			return false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return false
			}
		case "client_max_window_bits":
			if hasValue && !windowBits(value, 8) {
				return false
			}
		case "server_max_window_bits":
			if !hasValue || !windowBits(value, 15) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// windowBits reports whether v is a window size from lowest to 15.
func windowBits(v string, lowest int) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= lowest && n <= 15 && v == strconv.Itoa(n)
}
