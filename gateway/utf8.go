package gateway

import "unicode/utf8"

// utf8Stream validates UTF-8 arriving in pieces, so that a text message can
// be failed at the first fragment that makes it invalid rather than at its
// end. Up to three bytes of an unfinished sequence carry over between
// pieces.
type utf8Stream struct {
	pending [utf8.UTFMax]byte
	n       int
}

// write reports whether p, following what came before, can still be valid.
func (s *utf8Stream) write(p []byte) bool {
	if s.n > 0 {
		// Complete the carried sequence with just enough of p.
		need := seqLen(s.pending[0]) - s.n
		take := min(need, len(p))
		copy(s.pending[s.n:], p[:take])
		s.n += take
		p = p[take:]
		if s.n < seqLen(s.pending[0]) {
			return validPrefix(s.pending[:s.n])
		}
		if !utf8.Valid(s.pending[:s.n]) {
			return false
		}
		s.n = 0
	}
	// Find where a trailing incomplete sequence starts, at most 3 bytes back.
	cut := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-3; i-- {
		if p[i]&0xC0 != 0x80 { // a start byte (or ASCII)
			if i+seqLen(p[i]) > len(p) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	s.n = copy(s.pending[:], p[cut:])
	return validPrefix(s.pending[:s.n])
}

// done reports whether the stream ended on a character boundary.
func (s *utf8Stream) done() bool { return s.n == 0 }

// seqLen is the length of the sequence a start byte announces; 1 for bytes
// that cannot start one, so that utf8.Valid rejects them.
func seqLen(b byte) int {
	switch {
	case b >= 0xF0 && b <= 0xF4:
		return 4
	case b >= 0xE0:
		if b <= 0xEF {
			return 3
		}
		return 1
	case b >= 0xC2:
		return 2
	}
	return 1
}

// validPrefix reports whether p, an incomplete sequence, can still become a
// valid character, applying the second-byte ranges of RFC 3629 so that
// surrogates and overlong forms fail as early as the bytes show them.
func validPrefix(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if seqLen(p[0]) == 1 {
		return false
	}
	if len(p) == 1 {
		return true
	}
	lo, hi := byte(0x80), byte(0xBF)
	switch p[0] {
	case 0xE0:
		lo = 0xA0
	case 0xED:
		hi = 0x9F
	case 0xF0:
		lo = 0x90
	case 0xF4:
		hi = 0x8F
	}
	if p[1] < lo || p[1] > hi {
		return false
	}
	for _, b := range p[2:] {
		if b&0xC0 != 0x80 {
			return false
		}
	}
	return true
}
