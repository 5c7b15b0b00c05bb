package gateway

import (
	"compress/flate"
	"net/http"
	"testing"
)

func TestNegotiateDeflate(t *testing.T) {
	t.Parallel()
	const base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	tests := []struct {
		offers   []string
		want     bool
		response string // when accepted
		level    int
	}{
		{nil, false, "", 0},
		{[]string{"permessage-deflate"}, true, base, 1},
		{[]string{"permessage-deflate; client_max_window_bits"}, true, base, 1},
		{[]string{"permessage-deflate; client_max_window_bits=10"}, true, base, 1},
		{[]string{`permessage-deflate; client_max_window_bits="8"`}, true, base, 1},
		{[]string{"permessage-deflate; client_no_context_takeover; server_no_context_takeover"}, true, base, 1},
		// The client's limit on our window is echoed; below 15 only Huffman
		// coding is used, which needs no window.
		{[]string{"permessage-deflate; server_max_window_bits=15"}, true, base + "; server_max_window_bits=15", 1},
		{[]string{"permessage-deflate; server_max_window_bits=10"}, true, base + "; server_max_window_bits=10", flate.HuffmanOnly},
		{[]string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8"}, true, base + "; server_max_window_bits=8", flate.HuffmanOnly},
		{[]string{"permessage-deflate; server_max_window_bits"}, false, "", 0}, // needs a value
		{[]string{"permessage-deflate; server_max_window_bits=7"}, false, "", 0},
		{[]string{"permessage-deflate; client_max_window_bits=7"}, false, "", 0},
		{[]string{"permessage-deflate; client_max_window_bits=16"}, false, "", 0},
		{[]string{"permessage-deflate; client_max_window_bits=010"}, false, "", 0},
		{[]string{"permessage-deflate; server_no_context_takeover=1"}, false, "", 0},
		{[]string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, false, "", 0},
		{[]string{"permessage-deflate; mystery"}, false, "", 0},
		{[]string{"x-webkit-deflate-frame"}, false, "", 0},
		// The first offer is declined, the second (on the same line) accepted.
		{[]string{"permessage-deflate; server_max_window_bits=7, permessage-deflate"}, true, base, 1},
		// The first acceptable offer wins, in the client's order.
		{[]string{"permessage-deflate; server_max_window_bits=9, permessage-deflate"}, true, base + "; server_max_window_bits=9", flate.HuffmanOnly},
		// Offers on separate header lines.
		{[]string{"foo", "permessage-deflate; client_max_window_bits"}, true, base, 1},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, o := range tt.offers {
			h.Add("Sec-WebSocket-Extensions", o)
		}
		p, ok := negotiateDeflate(h)
		if ok != tt.want {
			t.Errorf("offers %q: accepted = %v, want %v", tt.offers, ok, tt.want)
			continue
		}
		if !ok {
			continue
		}
		if got := p.response(); got != tt.response {
			t.Errorf("offers %q: response %q, want %q", tt.offers, got, tt.response)
		}
		if got := p.level(); got != tt.level {
			t.Errorf("offers %q: level %d, want %d", tt.offers, got, tt.level)
		}
	}
}
