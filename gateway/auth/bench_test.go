package auth

import (
	"context"
	"testing"
)

// The cost of one hash at Hash's parameters is what the verification slots
// and the cache of successes are sized for.

func BenchmarkHash(b *testing.B) {
	token := NewToken()
	for b.Loop() {
		if _, err := Hash(token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	token := NewToken()
	h, err := Hash(token)
	if err != nil {
		b.Fatal(err)
	}
	rules := []TokenRule{{Devices: "kitchen", Hash: h}}
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			tokens, err := NewTokens(rules) // an empty cache
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tokens.Verify(context.Background(), "kitchen", token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		tokens, err := NewTokens(rules)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := tokens.Verify(context.Background(), "kitchen", token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
