package gateway

import (
	"net/http"
	"testing"
)

func TestAcceptableDeflateOffer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		offers []string
		want   bool
	}{
		{nil, false},
		{[]string{"permessage-deflate"}, true},
		{[]string{"permessage-deflate; client_max_window_bits"}, true},
		{[]string{"permessage-deflate; client_max_window_bits=10"}, true},
		{[]string{`permessage-deflate; client_max_window_bits="8"`}, true},
		{[]string{"permessage-deflate; client_no_context_takeover; server_no_context_takeover"}, true},
		{[]string{"permessage-deflate; server_max_window_bits=15"}, true},
		{[]string{"permessage-deflate; server_max_window_bits=10"}, false}, // would need a smaller window
		{[]string{"permessage-deflate; server_max_window_bits"}, false},    // needs a value
		{[]string{"permessage-deflate; client_max_window_bits=7"}, false},
		{[]string{"permessage-deflate; client_max_window_bits=16"}, false},
		{[]string{"permessage-deflate; client_max_window_bits=010"}, false},
		{[]string{"permessage-deflate; server_no_context_takeover=1"}, false},
		{[]string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, false},
		{[]string{"permessage-deflate; mystery"}, false},
		{[]string{"x-webkit-deflate-frame"}, false},
		// The first offer is declined, the second (on the same line) accepted.
		{[]string{"permessage-deflate; server_max_window_bits=9, permessage-deflate"}, true},
		// Offers on separate header lines.
		{[]string{"foo", "permessage-deflate; client_max_window_bits"}, true},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, o := range tt.offers {
			h.Add("Sec-WebSocket-Extensions", o)
		}
		if got := acceptableDeflateOffer(h); got != tt.want {
			t.Errorf("offers %q: acceptable = %v, want %v", tt.offers, got, tt.want)
		}
	}
}
