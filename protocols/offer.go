package protocols

import (
	"fmt"
	"slices"
	"strings"
)

// ParseOffer parses the Sec-WebSocket-Protocol request header values (there
// may be several header lines, each a comma-separated list) into the
// offered names in the client's order. Optional whitespace and empty list
// elements are skipped, as RFC 9110 section 5.6.1 asks of recipients; a
// repeated name keeps its first position. A name that is not a token is an
// error: no implementation can have it, and the request is malformed.
func ParseOffer(values []string) ([]string, error) {
	var offered []string
	for _, value := range values {
		for element := range strings.SplitSeq(value, ",") {
			name := strings.Trim(element, " \t")
			if name == "" {
				continue
			}
			if !IsToken(name) {
				return nil, fmt.Errorf("subprotocol %q is not a token", name)
			}
			if !slices.Contains(offered, name) {
				offered = append(offered, name)
			}
		}
	}
	return offered, nil
}

// IsToken reports whether s is an RFC 9110 token: one or more tchar.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
