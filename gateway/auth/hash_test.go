package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// cheapHash hashes token with the smallest parameters worth having, so
// that tests which hash often stay fast under -race. Verify reads the
// parameters from the hash, so this exercises the same code.
func cheapHash(t testing.TB, token string) string {
	t.Helper()
	p := params{memory: 64, time: 1, threads: 1, salt: randomBytes(hashSaltLen)}
	p.key = argon2.IDKey([]byte(token), p.salt, p.time, p.memory, p.threads, hashKeyLen)
	return p.encode()
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 8 {
		tok := NewToken()
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 32 {
			t.Fatalf("NewToken() = %q: %d bytes, %v; want 32 bytes of unpadded base64url", tok, len(raw), err)
		}
		if seen[tok] {
			t.Fatalf("NewToken() returned %q twice", tok)
		}
		seen[tok] = true
	}
}

func TestHashRoundTrip(t *testing.T) {
	t.Parallel()
	token := NewToken()
	h, err := Hash(token)
	if err != nil {
		t.Fatal(err)
	}
	if !LooksHashed(h) {
		t.Errorf("LooksHashed(%q) = false", h)
	}
	p, err := parseHash(h)
	if err != nil {
		t.Fatalf("ParseHash(Hash()) = %v", err)
	}
	if p.memory != 19456 || p.time != 2 || p.threads != 1 || len(p.salt) != 16 || len(p.key) != 32 {
		t.Errorf("Hash() = %q: want m=19456,t=2,p=1, a 16-byte salt and a 32-byte key", h)
	}
	if want := "$argon2id$v=19$m=19456,t=2,p=1$"; !strings.HasPrefix(h, want) {
		t.Errorf("Hash() = %q, want it to begin with %q", h, want)
	}
	if !p.matches(argon2.IDKey, token) {
		t.Error("the token does not match its own hash")
	}
	if p.matches(argon2.IDKey, token+"x") {
		t.Error("a different token matches the hash")
	}
	if again, _ := Hash(token); again == h {
		t.Error("two hashes of one token are equal: the salt is not random")
	}
}

func TestHashRefuses(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"", strings.Repeat("x", maxTokenLen+1)} {
		if h, err := Hash(token); err == nil {
			t.Errorf("Hash(%d bytes) = %q, want an error", len(token), h)
		}
	}
}

// TestIndependentHashes verifies hashes that this package did not make:
// vectors of the reference C implementation (phc-winner-argon2,
// src/test.c) and one formatted by hand from x/crypto's argon2 with other
// parameters than Hash's.
func TestIndependentHashes(t *testing.T) {
	t.Parallel()
	salt := []byte("a salt of 16 b..")
	key := argon2.IDKey([]byte("password"), salt, 3, 4096, 2, 24)
	byHand := fmt.Sprintf("$argon2id$v=19$m=4096,t=3,p=2$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))

	for _, h := range []string{
		"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
		"$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
		byHand,
	} {
		tokens, err := NewTokens([]TokenRule{{Devices: "kitchen", Hash: h}})
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		if _, err := tokens.Verify(context.Background(), "kitchen", "password"); err != nil {
			t.Errorf("%s: the right token: %v", h, err)
		}
		if _, err := tokens.Verify(context.Background(), "kitchen", "passwore"); err != ErrUnauthorized {
			t.Errorf("%s: a wrong token: %v, want ErrUnauthorized", h, err)
		}
	}
}

func TestParseHash(t *testing.T) {
	t.Parallel()
	const (
		salt = "c29tZXNhbHQ" // 8 bytes
		key  = "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	)
	phc := func(version, costs string) string {
		return "$argon2id$" + version + "$" + costs + "$" + salt + "$" + key
	}
	tests := []struct {
		name, hash string
		want       string // a part of the error; "" for none
	}{
		{"reference", phc("v=19", "m=256,t=2,p=1"), ""},
		{"limits", phc("v=19", "m=262144,t=10,p=4"), ""},
		{"smallest", phc("v=19", "m=32,t=1,p=4"), ""},
		{"empty", "", "not an argon2id hash"},
		{"plain text", "correct-horse-battery", "not an argon2id hash"},
		{"argon2i", "$argon2i$v=19$m=256,t=2,p=1$" + salt + "$" + key, "not an argon2id hash"},
		{"no version", "$argon2id$m=256,t=2,p=1$" + salt + "$" + key, "no version"},
		{"version 16", phc("v=16", "m=256,t=2,p=1"), "v=16 is not supported"},
		{"version not a number", phc("v=x", "m=256,t=2,p=1"), "must read v=19"},
		{"version without v=", phc("19", "m=256,t=2,p=1"), "must read v=19"},
		{"missing key", "$argon2id$v=19$m=256,t=2,p=1$" + salt, "must read"},
		{"extra field", phc("v=19", "m=256,t=2,p=1") + "$x", "must read"},
		{"other order", phc("v=19", "t=2,m=256,p=1"), "must read"},
		{"keyid", phc("v=19", "m=256,t=2,p=1,keyid=abc"), "must read"},
		{"missing p", phc("v=19", "m=256,t=2"), "must read"},
		{"m not a number", phc("v=19", "m=lots,t=2,p=1"), "parameter m is not a whole number"},
		{"m negative", phc("v=19", "m=-1,t=2,p=1"), "parameter m is not a whole number"},
		{"m with a sign", phc("v=19", "m=+256,t=2,p=1"), "parameter m is not a whole number"},
		{"m beyond 32 bits", phc("v=19", "m=4294967296,t=2,p=1"), "parameter m is not a whole number"},
		{"m over the limit", phc("v=19", "m=262145,t=2,p=1"), "more than the limit of 262144 KiB"},
		{"m of 4 GiB", phc("v=19", "m=4294967295,t=2,p=1"), "more than the limit"},
		{"m below 8 per lane", phc("v=19", "m=31,t=1,p=4"), "minimum of 8 KiB per lane"},
		{"t zero", phc("v=19", "m=256,t=0,p=1"), "t=0 must be at least 1"},
		{"t over the limit", phc("v=19", "m=256,t=11,p=1"), "t=11 is more than the limit of 10"},
		{"t huge", phc("v=19", "m=256,t=4000000000,p=1"), "more than the limit"},
		{"p zero", phc("v=19", "m=256,t=2,p=0"), "p=0 must be at least 1"},
		{"p over the limit", phc("v=19", "m=256,t=2,p=5"), "p=5 is more than the limit of 4"},
		{"salt padded", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ=$" + key, "salt is not base64"},
		{"salt url alphabet", "$argon2id$v=19$m=256,t=2,p=1$c29tZX-_bHQ$" + key, "salt is not base64"},
		{"salt short", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNh$" + key, "salt of 6 bytes is shorter than 8"},
		{"salt long", "$argon2id$v=19$m=256,t=2,p=1$" + strings.Repeat("A", 88) + "$" + key, "salt of 66 bytes is longer than 64"},
		{"key short", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$nf65EOgLrQMR", "key of 9 bytes is shorter than 16"},
		{"key empty", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$", "key of 0 bytes is shorter than 16"},
		{"key long", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + strings.Repeat("A", 88), "key of 66 bytes is longer than 64"},
		{"key stray bits", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key[:len(key)-1] + "5", "key is not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParseHash(tt.hash)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("ParseHash(%q) = %v, want nil", tt.hash, err)
			case tt.want != "" && err == nil:
				t.Fatalf("ParseHash(%q) = nil, want an error with %q", tt.hash, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("ParseHash(%q) = %q, want it to say %q", tt.hash, err, tt.want)
			}
		})
	}
}

func TestLooksHashed(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"$argon2id$v=19$m=19456,t=2,p=1$x$y": true,
		"$argon2id$":                         true,
		"$argon2i$v=19$m=19456,t=2,p=1$x$y":  false,
		"argon2id":                           false,
		"":                                   false,
		" $argon2id$":                        false,
	} {
		if got := LooksHashed(s); got != want {
			t.Errorf("LooksHashed(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestErrorsHoldNoToken puts a token wherever a user might paste one and
// checks that no error repeats it.
func TestErrorsHoldNoToken(t *testing.T) {
	t.Parallel()
	secret := NewToken()
	const salt, key = "c29tZXNhbHQ", "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	hashes := []string{
		secret,
		"$argon2id$" + secret,
		"$argon2id$v=" + secret + "$m=256,t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=" + secret + ",t=2,p=1$" + salt + "$" + key,
		"$argon2id$v=19$" + secret + "$" + salt + "$" + key,
		"$argon2id$v=19$m=256,t=2,p=1$" + secret + "!$" + key,
		"$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + secret + "!",
		"$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key + "$" + secret,
	}
	var errs []error
	for _, h := range hashes {
		errs = append(errs, ParseHash(h))
		_, err := NewTokens([]TokenRule{{Devices: "kitchen", Hash: h}})
		errs = append(errs, err)
	}
	_, err := Hash(secret + strings.Repeat("x", maxTokenLen))
	errs = append(errs, err)

	tokens, err := NewTokens([]TokenRule{{Devices: "kitchen", Hash: cheapHash(t, "other")}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tokens.Verify(context.Background(), "kitchen", secret)
	errs = append(errs, err)
	_, err = tokens.Verify(context.Background(), "garage", secret)
	errs = append(errs, err)

	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("case %d: the error holds the token: %v", i, err)
		}
	}
}
