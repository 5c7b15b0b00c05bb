package gateway

import (
	"compress/flate"
	"net/http"
	"strconv"
	"strings"
)

// deflateParams is what this server agrees to in a permessage-deflate
// (RFC 7692) offer it accepts.
//
// gorilla compresses every message on its own (no context takeover in
// either direction) with a 32 KiB window and expects the same of the
// client. So any offer is acceptable with server_no_context_takeover,
// client_no_context_takeover and client_max_window_bits (with or without a
// value from 8 to 15: the inflater takes any window up to 32 KiB); the
// response always holds server_no_context_takeover and
// client_no_context_takeover, which a server may add unasked (sections
// 7.1.1.1 and 7.1.1.2). server_max_window_bits=N is accepted too, and
// echoed in the response as section 7.1.2.1 asks: below 15, messages are
// compressed with Huffman coding only, which has no back-references and so
// fits any window. An offer with an unknown or repeated parameter or an
// invalid value is declined, as section 5 requires, and the next offer is
// tried.
type deflateParams struct {
	serverMaxWindowBits int // the client's limit on our window; 0 when it set none
}

// gorillaDeflateResponse is the extension gorilla answers with.
const gorillaDeflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// response is the Sec-WebSocket-Extensions value that accepts the offer.
func (p deflateParams) response() string {
	if p.serverMaxWindowBits == 0 {
		return gorillaDeflateResponse
	}
	return gorillaDeflateResponse + "; server_max_window_bits=" + strconv.Itoa(p.serverMaxWindowBits)
}

// level is the compression level that honours the client's window limit.
func (p deflateParams) level() int {
	if p.serverMaxWindowBits > 0 && p.serverMaxWindowBits < 15 {
		return flate.HuffmanOnly
	}
	return 1 // gorilla's default: fast, and most of the gain on small messages
}

// negotiateDeflate returns the first permessage-deflate offer in h this
// server can honour.
func negotiateDeflate(h http.Header) (deflateParams, bool) {
	for _, value := range h.Values("Sec-WebSocket-Extensions") {
		for offer := range strings.SplitSeq(value, ",") {
			if p, ok := parseDeflateOffer(offer); ok {
				return p, true
			}
		}
	}
	return deflateParams{}, false
}

func parseDeflateOffer(offer string) (deflateParams, bool) {
	var p deflateParams
	parts := strings.Split(offer, ";")
	if strings.TrimSpace(parts[0]) != "permessage-deflate" {
		return p, false
	}
	seen := map[string]bool{}
	for _, part := range parts[1:] {
		name, value, hasValue := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		value = strings.Trim(strings.TrimSpace(value), `"`)
		if seen[name] {
			return p, false
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if hasValue {
				return p, false
			}
		case "client_max_window_bits":
			if hasValue && windowBits(value) == 0 {
				return p, false
			}
		case "server_max_window_bits":
			if p.serverMaxWindowBits = windowBits(value); p.serverMaxWindowBits == 0 {
				return p, false
			}
		default:
			return p, false
		}
	}
	return p, true
}

// windowBits parses a window size from 8 to 15; 0 when v is not one.
func windowBits(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 8 || n > 15 || v != strconv.Itoa(n) {
		return 0
	}
	return n
}
