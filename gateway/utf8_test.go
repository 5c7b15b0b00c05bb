package gateway

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// canContinue is the reference the stream is held to: whether p is valid
// UTF-8 or can still become valid with more bytes. Only the second byte of a
// sequence has a range that depends on the first, so when a completion
// exists, one whose later bytes are all 0x80 does too.
func canContinue(p []byte) bool {
	if utf8.Valid(p) {
		return true
	}
	for missing := 1; missing <= 3; missing++ {
		tail := bytes.Repeat([]byte{0x80}, missing)
		for b := 0x80; b <= 0xBF; b++ {
			tail[0] = byte(b)
			if utf8.Valid(append(p[:len(p):len(p)], tail...)) {
				return true
			}
		}
	}
	return false
}

// checkStream writes chunks to a fresh stream and fails the test unless
// every write answers exactly whether the bytes so far can still be valid,
// and the end is accepted exactly when the whole is valid.
func checkStream(t *testing.T, chunks [][]byte) {
	t.Helper()
	var s utf8Stream
	var sofar []byte
	for i, c := range chunks {
		sofar = append(sofar, c...)
		want := canContinue(sofar)
		if got := s.write(c); got != want {
			t.Fatalf("chunks %q: write #%d (%q) = %v, want %v", chunks, i, c, got, want)
		}
		if !want {
			return // the gateway stops at the first failure
		}
	}
	if got, want := s.done(), utf8.Valid(sofar); got != want {
		t.Fatalf("chunks %q: done() = %v, want %v", chunks, got, want)
	}
}

func TestUTF8Stream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		chunks []string
	}{
		{"empty", nil},
		{"empty chunks", []string{"", "", ""}},
		{"ascii", []string{"hello", " ", "world"}},
		{"whole multibyte", []string{"héllo €𝄞"}},
		{"2-byte split", []string{"\xC3", "\xA9"}},
		{"3-byte split after 1", []string{"\xE2", "\x82\xAC"}},
		{"3-byte split after 2", []string{"\xE2\x82", "\xAC"}},
		{"4-byte one byte at a time", []string{"\xF0", "\x9D", "\x84", "\x9E"}},
		{"4-byte split with empty chunks", []string{"a\xF0", "", "\x9D\x84", "", "\x9Eb"}},
		{"highest code point split", []string{"\xF4\x8F", "\xBF\xBF"}},
		{"sequence completed and next started", []string{"\xE2", "\x82\xAC\xF0\x9F", "\x98\x80"}},
		{"unfinished at the end", []string{"ab\xE2\x82"}},
		{"unfinished across chunks at the end", []string{"\xF0", "\x9F\x98"}},
		{"invalid byte", []string{"ab\xFF"}},
		{"invalid byte later", []string{"ok", "\xFE", "more"}},
		{"C0 overlong start", []string{"\xC0"}},
		{"C1 overlong start", []string{"a", "\xC1\x81"}},
		{"3-byte overlong, second byte in next chunk", []string{"\xE0", "\x80", "\x80"}},
		{"4-byte overlong, second byte in next chunk", []string{"\xF0", "\x8F"}},
		{"surrogate split", []string{"\xED", "\xA0\x80"}},
		{"surrogate in one chunk, unfinished", []string{"\xED\xA0"}},
		{"above U+10FFFF split", []string{"\xF4", "\x90\x80\x80"}},
		{"F5 start", []string{"\xF5"}},
		{"lone continuation", []string{"a", "\x80"}},
		{"continuation missing, next chunk ascii", []string{"\xE2", "a"}},
		{"continuation missing mid chunk", []string{"\xE2\x82a"}},
		{"too many continuations", []string{"\xC3\xA9", "\xA9"}},
		{"third byte not a continuation", []string{"\xF0\x9F", "\x98a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			chunks := make([][]byte, len(tt.chunks))
			for i, c := range tt.chunks {
				chunks[i] = []byte(c)
			}
			checkStream(t, chunks)
		})
	}
}

// TestUTF8StreamEverySplit cuts interesting strings at every pair of
// positions.
func TestUTF8StreamEverySplit(t *testing.T) {
	t.Parallel()
	inputs := []string{
		"a€b𝄞c\xF4\x8F\xBF\xBFé",
		"€\xED\xA0\x80x",
		"𝄞\xF0\x8F\x80\x80",
		"é\xE0\x9F\xBF",
		"ab\xF0\x9F\x98",
		"\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80",
	}
	for _, in := range inputs {
		b := []byte(in)
		for i := 0; i <= len(b); i++ {
			for j := i; j <= len(b); j++ {
				checkStream(t, [][]byte{b[:i], b[i:j], b[j:]})
			}
		}
	}
}

// FuzzUTF8Stream cuts arbitrary bytes into arbitrary chunks: each byte of
// cuts is the length of the next chunk (mod 8, so empty chunks happen), the
// rest of data is the last chunk.
func FuzzUTF8Stream(f *testing.F) {
	f.Add([]byte("héllo €𝄞"), []byte{1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte("\xED\xA0\x80"), []byte{1})
	f.Add([]byte("\xF4\x90\x80\x80"), []byte{1, 0, 2})
	f.Add([]byte("\xE0\x80\xAF"), []byte{1, 1})
	f.Add([]byte("ab\xF0\x9F\x98"), []byte{3})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var chunks [][]byte
		for _, c := range cuts {
			n := min(int(c%8), len(data))
			chunks = append(chunks, data[:n])
			data = data[n:]
		}
		chunks = append(chunks, data)
		checkStream(t, chunks)
	})
}
