package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func newTokens(t *testing.T, rules []TokenRule) *Tokens {
	t.Helper()
	tokens, err := NewTokens(rules)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// countHashes makes tokens count the argon2 computations it runs.
func countHashes(tokens *Tokens) *atomic.Int64 {
	var n atomic.Int64
	idKey := tokens.idKey
	tokens.idKey = func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		n.Add(1)
		return idKey(password, salt, time, memory, threads, keyLen)
	}
	return &n
}

func TestVerify(t *testing.T) {
	t.Parallel()
	hashes := map[string]string{}
	for _, tok := range []string{"kitchen-token", "fleet-a", "fleet-b", "anyone"} {
		hashes[tok] = cheapHash(t, tok)
	}
	rules := []TokenRule{
		{Devices: "kitchen", Hash: hashes["kitchen-token"]},
		{Devices: "esp32-*", Hash: hashes["fleet-a"]},
		{Devices: "esp32-?", Hash: hashes["fleet-b"]},
		{Devices: "shelly-[0-9]*", Hash: hashes["anyone"]},
	}
	tests := []struct {
		name, device, token string
		rule                string // the token whose rule grants; "" for ErrUnauthorized
		hashes              int64  // argon2 computations expected
	}{
		{"exact id", "kitchen", "kitchen-token", "kitchen-token", 1},
		{"exact id, wrong token", "kitchen", "fleet-a", "", 1},
		{"exact id is not a prefix", "kitchen2", "kitchen-token", "", 0},
		{"pattern, first rule", "esp32-7", "fleet-a", "fleet-a", 1},
		{"pattern, second rule", "esp32-7", "fleet-b", "fleet-b", 2},
		{"pattern the second rule does not match", "esp32-77", "fleet-b", "", 1},
		{"both patterns, wrong token", "esp32-7", "kitchen-token", "", 2},
		{"class pattern", "shelly-42", "anyone", "anyone", 1},
		{"no rule: refused without hashing", "garage", "kitchen-token", "", 0},
		{"empty token", "kitchen", "", "", 0},
		{"token too long", "kitchen", strings.Repeat("k", maxTokenLen+1), "", 0},
		{"invalid device id", "kitchen/1", "kitchen-token", "", 0},
		{"empty device id", "", "kitchen-token", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := newTokens(t, rules)
			n := countHashes(tokens)
			g, err := tokens.Verify(context.Background(), tt.device, tt.token)
			if tt.rule == "" {
				if err != ErrUnauthorized {
					t.Errorf("Verify = %+v, %v; want ErrUnauthorized", g, err)
				}
			} else if want := (Grant{Device: tt.device, Rule: hashes[tt.rule]}); err != nil || g != want {
				t.Errorf("Verify = %+v, %v; want the rule of %q", g, err, tt.rule)
			}
			if got := n.Load(); got != tt.hashes {
				t.Errorf("%d argon2 computations, want %d", got, tt.hashes)
			}
		})
	}
}

func TestVerifyWildcardSparesGatewayIDs(t *testing.T) {
	t.Parallel()
	tokens := newTokens(t, []TokenRule{{Devices: "*", Hash: cheapHash(t, "tok")}})
	if _, err := tokens.Verify(context.Background(), "$gateway", "tok"); err != ErrUnauthorized {
		t.Errorf("Verify($gateway) = %v, want ErrUnauthorized", err)
	}
	if _, err := tokens.Verify(context.Background(), "any", "tok"); err != nil {
		t.Errorf("Verify(any) = %v", err)
	}
}

func TestVerifyCachesSuccesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fleet := cheapHash(t, "fleet")
	tokens := newTokens(t, []TokenRule{{Devices: "esp32-*", Hash: fleet}})
	n := countHashes(tokens)

	steps := []struct {
		device, token string
		ok            bool
		hashes        int64 // total so far
	}{
		{"esp32-1", "fleet", true, 1},
		{"esp32-1", "fleet", true, 1},  // cached
		{"esp32-2", "fleet", true, 2},  // another device: its own entry
		{"esp32-1", "wrong", false, 3}, // failures are not cached...
		{"esp32-1", "wrong", false, 4}, // ...so each one costs a hash
		{"esp32-1", "fleet", true, 4},  // and do not disturb the cached success
		{"esp32-2", "fleet", true, 4},
	}
	for i, s := range steps {
		g, err := tokens.Verify(ctx, s.device, s.token)
		if s.ok != (err == nil) || (s.ok && g != Grant{Device: s.device, Rule: fleet}) {
			t.Errorf("step %d: Verify(%s, %s) = %+v, %v", i, s.device, s.token, g, err)
		}
		if got := n.Load(); got != s.hashes {
			t.Errorf("step %d: %d argon2 computations so far, want %d", i, got, s.hashes)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	t.Parallel()
	tokens := newTokens(t, []TokenRule{{Devices: "*", Hash: cheapHash(t, "tok")}})
	// Fill the cache directly: verifying cacheSize devices would take long.
	for i := range cacheSize + 10 {
		tokens.remember(cacheKey{byte(i), byte(i >> 8)}, tokens.rules[0].hash)
	}
	if len(tokens.cache) != cacheSize {
		t.Errorf("%d entries cached, want at most %d", len(tokens.cache), cacheSize)
	}
	if _, err := tokens.Verify(context.Background(), "dev", "tok"); err != nil {
		t.Fatal(err)
	}
	if len(tokens.cache) != cacheSize {
		t.Errorf("%d entries cached after another success, want %d", len(tokens.cache), cacheSize)
	}
}

func TestReplaceForgetsRemovedRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kitchen := TokenRule{Devices: "kitchen", Hash: cheapHash(t, "k")}
	garage := TokenRule{Devices: "garage", Hash: cheapHash(t, "g")}
	tokens := newTokens(t, []TokenRule{kitchen, garage})
	n := countHashes(tokens)

	verify := func(device, token string, wantErr error, wantHashes int64) {
		t.Helper()
		if _, err := tokens.Verify(ctx, device, token); err != wantErr {
			t.Errorf("Verify(%s) = %v, want %v", device, err, wantErr)
		}
		if got := n.Load(); got != wantHashes {
			t.Errorf("Verify(%s): %d argon2 computations so far, want %d", device, got, wantHashes)
		}
	}
	replace := func(rules ...TokenRule) {
		t.Helper()
		if err := tokens.Replace(rules); err != nil {
			t.Fatal(err)
		}
	}

	verify("kitchen", "k", nil, 1)
	verify("garage", "g", nil, 2)
	replace(garage, kitchen) // both stay: their successes stay cached
	verify("kitchen", "k", nil, 2)
	verify("garage", "g", nil, 2)
	replace(garage) // kitchen's rule goes
	verify("kitchen", "k", ErrUnauthorized, 2)
	verify("garage", "g", nil, 2)
	replace(garage, kitchen) // and comes back: its old success must not
	verify("kitchen", "k", nil, 3)
	if got := len(tokens.cache); got != 2 {
		t.Errorf("%d entries cached, want 2", got)
	}
}

// TestReplaceDuringVerify removes a rule while a token is being hashed
// against it: the success is granted (Still tells it is gone) but not
// remembered.
func TestReplaceDuringVerify(t *testing.T) {
	t.Parallel()
	kitchen := TokenRule{Devices: "kitchen", Hash: cheapHash(t, "k")}
	tokens := newTokens(t, []TokenRule{kitchen})
	h := hold(tokens, 2)

	granted := make(chan Grant, 1)
	go func() {
		g, err := tokens.Verify(context.Background(), "kitchen", "k")
		if err != nil {
			t.Errorf("Verify: %v", err)
		}
		granted <- g
	}()
	<-h.entered
	if err := tokens.Replace(nil); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	if g := <-granted; tokens.Still(g) {
		t.Errorf("Still(%+v) = true after its rule was removed", g)
	}
	if err := tokens.Replace([]TokenRule{kitchen}); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(context.Background(), "kitchen", "k"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.entered:
	default:
		t.Error("a success against a removed rule was cached")
	}
}

func TestReplaceRefusesBadRulesWhole(t *testing.T) {
	t.Parallel()
	tokens := newTokens(t, []TokenRule{{Devices: "kitchen", Hash: cheapHash(t, "k")}})
	err := tokens.Replace([]TokenRule{
		{Devices: "garage", Hash: cheapHash(t, "g")},
		{Devices: "cellar", Hash: "g"},
	})
	if err == nil || !strings.Contains(err.Error(), "token rule 1") {
		t.Fatalf("Replace = %v, want an error naming token rule 1", err)
	}
	if tokens.Len() != 1 {
		t.Errorf("Len() = %d after a refused Replace, want 1", tokens.Len())
	}
	if _, err := tokens.Verify(context.Background(), "kitchen", "k"); err != nil {
		t.Errorf("the old rule no longer verifies: %v", err)
	}
}

func TestStill(t *testing.T) {
	t.Parallel()
	k, rotated := cheapHash(t, "k"), cheapHash(t, "k")
	tests := []struct {
		name  string
		rules []TokenRule
		want  bool
	}{
		{"unchanged", []TokenRule{{Devices: "kitchen-1", Hash: k}}, true},
		{"other rules added", []TokenRule{{Devices: "garage", Hash: cheapHash(t, "g")}, {Devices: "kitchen-1", Hash: k}}, true},
		{"now by a pattern", []TokenRule{{Devices: "kitchen-*", Hash: k}}, true},
		{"hash rotated", []TokenRule{{Devices: "kitchen-1", Hash: rotated}}, false},
		{"pattern no longer matches", []TokenRule{{Devices: "kitchen-2*", Hash: k}}, false},
		{"hash moved to another device", []TokenRule{{Devices: "garage", Hash: k}}, false},
		{"no rules", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tokens := newTokens(t, []TokenRule{{Devices: "kitchen-1", Hash: k}})
			g, err := tokens.Verify(context.Background(), "kitchen-1", "k")
			if err != nil {
				t.Fatal(err)
			}
			if !tokens.Still(g) {
				t.Fatal("Still is false before any Replace")
			}
			if err := tokens.Replace(tt.rules); err != nil {
				t.Fatal(err)
			}
			if got := tokens.Still(g); got != tt.want {
				t.Errorf("Still = %v, want %v", got, tt.want)
			}
			if tokens.Still(Grant{}) {
				t.Error("Still(Grant{}) = true")
			}
		})
	}
}

func TestNewTokensRefuses(t *testing.T) {
	t.Parallel()
	good := cheapHash(t, "x")
	tests := []struct {
		name  string
		rule  TokenRule
		wants []string
	}{
		{"empty devices", TokenRule{Hash: good}, []string{"token rule 1: devices: empty"}},
		{"bad pattern", TokenRule{Devices: "esp32-[", Hash: good}, []string{"token rule 1: devices:", "not a valid pattern"}},
		{"invalid id", TokenRule{Devices: "a/b", Hash: good}, []string{"token rule 1: devices:", "not a valid device id"}},
		{"plain-text token", TokenRule{Devices: "kitchen", Hash: "kitchen-token"}, []string{`token rule 1 (devices "kitchen"):`, "not an argon2id hash"}},
		{"empty hash", TokenRule{Devices: "kitchen"}, []string{"token rule 1", "not an argon2id hash"}},
		{"abusive memory", TokenRule{Devices: "kitchen", Hash: strings.Replace(good, "m=64", "m=4194304", 1)}, []string{"token rule 1", "more than the limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewTokens([]TokenRule{{Devices: "ok", Hash: good}, tt.rule})
			if err == nil {
				t.Fatal("NewTokens = nil error")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewTokens = %q, want it to say %q", err, want)
				}
			}
		})
	}
	if tokens := newTokens(t, nil); tokens.Len() != 0 {
		t.Errorf("NewTokens(nil).Len() = %d", tokens.Len())
	}
}

// holdHashes makes tokens' argon2 computations wait for release; each
// announces itself on entered first. It records the most that ran at once.
type holdHashes struct {
	entered chan struct{}
	release chan struct{}
	running atomic.Int32
	most    atomic.Int32
}

func hold(tokens *Tokens, buffer int) *holdHashes {
	h := &holdHashes{entered: make(chan struct{}, buffer), release: make(chan struct{})}
	idKey := tokens.idKey
	tokens.idKey = func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
		n := h.running.Add(1)
		defer h.running.Add(-1)
		for m := h.most.Load(); n > m && !h.most.CompareAndSwap(m, n); m = h.most.Load() {
		}
		h.entered <- struct{}{}
		<-h.release
		return idKey(password, salt, time, memory, threads, keyLen)
	}
	return h
}

func TestVerifyBoundsConcurrentHashes(t *testing.T) {
	t.Parallel()
	const n = 12
	tokens := newTokens(t, []TokenRule{{Devices: "esp32-*", Hash: cheapHash(t, "fleet")}})
	h := hold(tokens, n)
	waiting := make(chan struct{}, n)
	tokens.waiting = func() { waiting <- struct{}{} }

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = tokens.Verify(context.Background(), "esp32-"+string(rune('a'+i)), "fleet")
		})
	}
	// Every Verify either hashes or waits for a slot; count which.
	var hashing, waited int
	for range n {
		select {
		case <-h.entered:
			hashing++
		case <-waiting:
			waited++
		}
	}
	if hashing != maxVerifying || waited != n-maxVerifying {
		t.Errorf("%d hashing and %d waiting, want %d and %d", hashing, waited, maxVerifying, n-maxVerifying)
	}
	close(h.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Verify %d: %v", i, err)
		}
	}
	if most := h.most.Load(); most > maxVerifying {
		t.Errorf("%d hashes ran at once, want at most %d", most, maxVerifying)
	}
}

func TestVerifyBusy(t *testing.T) {
	t.Parallel()
	tokens := newTokens(t, []TokenRule{{Devices: "*", Hash: cheapHash(t, "tok")}})
	h := hold(tokens, maxVerifying+1)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(h.release)
	for i := range maxVerifying {
		wg.Go(func() {
			if _, err := tokens.Verify(context.Background(), "holder"+string(rune('0'+i)), "tok"); err != nil {
				t.Errorf("a Verify holding a slot: %v", err)
			}
		})
	}
	for range maxVerifying {
		<-h.entered
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens.waiting = cancel // the context ends while Verify waits
	late := make(chan error, 1)
	wg.Go(func() {
		_, err := tokens.Verify(ctx, "late", "tok")
		late <- err
	})
	select {
	case err := <-late:
		if !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
			t.Errorf("Verify = %v, want ErrBusy and context.Canceled", err)
		}
	case <-h.entered:
		t.Error("a verification started while both slots were taken")
	}
}
