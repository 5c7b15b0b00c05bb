package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"

	"golang.org/x/crypto/argon2"

	"github.com/wsgate/wsgate/protocols"
)

// TokenRule binds a token hash to the devices it may authenticate.
type TokenRule struct {
	Devices string // a device id, or a path.Match pattern such as "esp32-*"
	Hash    string // PHC argon2id, as Hash makes it
}

// Grant is a successful authentication: who, and by which rule, so that a
// reload can tell whether it still holds (Tokens.Still).
type Grant struct {
	Device string
	Rule   string // the rule's Hash
}

var (
	// ErrUnauthorized: the token is wrong, or no rule names the device.
	// The error does not tell which.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBusy: every verification slot was taken and the context ended
	// while Verify waited for one. It wraps the context's cause too.
	ErrBusy = errors.New("busy: too many token verifications at once")
)

const (
	// maxVerifying bounds the hashes running at once: each takes a core
	// and 19 MiB for tens of milliseconds, and a flood of wrong tokens must
	// not take every core or the memory of a small machine.
	maxVerifying = 2
	// cacheSize bounds the remembered successes.
	cacheSize = 4096
)

// Tokens verifies device tokens against rules. It is safe for concurrent
// use.
//
// Successes are cached so that a device reconnecting every few seconds
// costs one hash, not one per connection. An entry is keyed by an HMAC of
// the rule's hash, the device and the token under a key made for this
// Tokens, so the cache holds no token and nothing that could be checked
// against a guess outside this process. Failures are never cached: anyone
// can make as many different ones as they like, and they would push out
// the successes the cache is for.
type Tokens struct {
	slots  chan struct{} // a semaphore of maxVerifying
	macKey []byte
	// idKey is argon2.IDKey; tests count and hold verifications through it.
	idKey idKeyFunc
	// waiting, when set, is called when Verify is about to wait for a slot.
	waiting func()

	mu     sync.Mutex
	rules  []rule              // replaced whole, never changed in place
	hashes map[string]bool     // the Hash of every rule
	cache  map[cacheKey]string // a success -> the rule hash it matched
}

type rule struct {
	devices string
	hash    string
	params  params
}

type cacheKey [sha256.Size]byte

// NewTokens checks every rule's devices pattern and hash and returns the
// verifier. Errors name the rule by its index.
func NewTokens(rules []TokenRule) (*Tokens, error) {
	compiled, hashes, err := compileTokenRules(rules)
	if err != nil {
		return nil, err
	}
	return &Tokens{
		slots:  make(chan struct{}, maxVerifying),
		macKey: randomBytes(sha256.Size),
		idKey:  argon2.IDKey,
		rules:  compiled,
		hashes: hashes,
		cache:  make(map[cacheKey]string),
	}, nil
}

func compileTokenRules(rules []TokenRule) ([]rule, map[string]bool, error) {
	compiled := make([]rule, len(rules))
	hashes := make(map[string]bool, len(rules))
	for i, r := range rules {
		if err := CheckDevices(r.Devices); err != nil {
			return nil, nil, fmt.Errorf("token rule %d: devices: %w", i, err)
		}
		p, err := parseHash(r.Hash)
		if err != nil {
			return nil, nil, fmt.Errorf("token rule %d (devices %q): %w", i, r.Devices, err)
		}
		compiled[i] = rule{devices: r.Devices, hash: r.Hash, params: p}
		hashes[r.Hash] = true
	}
	return compiled, hashes, nil
}

// Replace installs new rules, as on a reload: it checks them all and
// changes nothing if one is wrong. Cached successes of rules that are gone
// are forgotten; grants already made are not revoked here, which is what
// Still is for.
func (t *Tokens) Replace(rules []TokenRule) error {
	compiled, hashes, err := compileTokenRules(rules)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rules, t.hashes = compiled, hashes
	// An entry only says that a token matches a hash, and Verify looks it
	// up only for rules naming the device, so entries of hashes still in
	// use stay valid even if their rule's devices changed.
	maps.DeleteFunc(t.cache, func(_ cacheKey, hash string) bool { return !hashes[hash] })
	return nil
}

// Verify authenticates device with token: it succeeds when token matches
// the hash of a rule naming device, trying those rules in order. A device
// id that is not valid (protocols.ValidDeviceID) is refused.
//
// A success that is not cached waits for one of two verification slots;
// when ctx ends first, Verify returns an error matching ErrBusy.
func (t *Tokens) Verify(ctx context.Context, device, token string) (Grant, error) {
	if !protocols.ValidDeviceID(device) || checkTokenLen(token) != nil {
		return Grant{}, ErrUnauthorized
	}
	t.mu.Lock()
	rules := t.rules
	t.mu.Unlock()

	type candidate struct {
		rule *rule
		key  cacheKey
	}
	var candidates []candidate
	for i := range rules {
		if matchDevices(rules[i].devices, device) {
			candidates = append(candidates, candidate{&rules[i], t.cacheKey(rules[i].hash, device, token)})
		}
	}
	// A device no rule names is refused without hashing: device ids are no
	// secret, and a flood of made-up ones must cost nothing.
	if len(candidates) == 0 {
		return Grant{}, ErrUnauthorized
	}
	t.mu.Lock()
	for _, c := range candidates {
		if _, ok := t.cache[c.key]; ok {
			t.mu.Unlock()
			return Grant{Device: device, Rule: c.rule.hash}, nil
		}
	}
	t.mu.Unlock()

	if err := t.acquire(ctx); err != nil {
		return Grant{}, err
	}
	defer func() { <-t.slots }()
	for _, c := range candidates {
		if c.rule.params.matches(t.idKey, token) {
			t.remember(c.key, c.rule.hash)
			return Grant{Device: device, Rule: c.rule.hash}, nil
		}
	}
	return Grant{}, ErrUnauthorized
}

// acquire takes a verification slot, waiting no longer than ctx.
func (t *Tokens) acquire(ctx context.Context) error {
	// A free slot is taken even if ctx has ended: in one select with both
	// ready the outcome would be chance.
	select {
	case t.slots <- struct{}{}:
		return nil
	default:
	}
	if t.waiting != nil {
		t.waiting()
	}
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
	}
}

// cacheKey is the HMAC of rule hash, device and token, each preceded by its
// length so that no two different triples run together into one input.
func (t *Tokens) cacheKey(ruleHash, device, token string) cacheKey {
	mac := hmac.New(sha256.New, t.macKey)
	var n [binary.MaxVarintLen64]byte
	for _, s := range [...]string{ruleHash, device, token} {
		mac.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		io.WriteString(mac, s)
	}
	var k cacheKey
	mac.Sum(k[:0])
	return k
}

// remember caches a success unless Replace removed its rule meanwhile.
func (t *Tokens) remember(k cacheKey, ruleHash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.hashes[ruleHash] {
		return
	}
	if _, ok := t.cache[k]; !ok && len(t.cache) >= cacheSize {
		for old := range t.cache {
			delete(t.cache, old) // any entry will do: a miss costs one hash
			break
		}
	}
	t.cache[k] = ruleHash
}

// Still reports whether g would be granted under the current rules: a rule
// with its hash is still present and still names its device. Call it for
// every session after Replace.
func (t *Tokens) Still(g Grant) bool {
	t.mu.Lock()
	rules := t.rules
	t.mu.Unlock()
	for i := range rules {
		if rules[i].hash == g.Rule && matchDevices(rules[i].devices, g.Device) {
			return true
		}
	}
	return false
}

// Len returns the number of rules.
func (t *Tokens) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.rules)
}
