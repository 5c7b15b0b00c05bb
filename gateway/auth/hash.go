package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// hashPrefix starts every token hash; LooksHashed tells hashes from the
// plain-text tokens a config file must not hold.
const hashPrefix = "$argon2id$"

// The parameters Hash uses: OWASP's minimum for argon2id, 19 MiB and
// 25 ms per hash on a server core (BenchmarkHash), more on a small board.
// NewToken's tokens are random enough without it; the cost protects tokens
// people chose themselves.
const (
	hashMemory  = 19456 // KiB
	hashTime    = 2
	hashThreads = 1
	hashSaltLen = 16
	hashKeyLen  = 32
)

// Bounds on the parameters of hashes read from a configuration, so that a
// typo or a hostile file cannot make one verification take minutes or
// gigabytes (two run at once).
const (
	maxMemory  = 262144 // KiB: 256 MiB
	maxTime    = 10
	maxThreads = 4
	minSaltLen = 8  // argon2's own minimum
	minKeyLen  = 16 // shorter keys make a random guess likely enough to matter
	maxSaltKey = 64
)

// maxTokenLen bounds the tokens Hash and Verify take: NewToken's are 43
// bytes, and a device must not make the gateway hash a megabyte.
const maxTokenLen = 1024

// argonVersion is the only version accepted, 0x13; version 0x10 predates a
// fix to the algorithm.
const argonVersion = argon2.Version

// b64 is the PHC string format's base64: standard alphabet, no padding.
// Strict refuses encodings with stray bits, so one hash has one spelling.
var b64 = base64.RawStdEncoding.Strict()

// params is a parsed token hash.
type params struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// idKeyFunc has the signature of argon2.IDKey, which Tokens calls through
// a field so that tests can count and hold verifications.
type idKeyFunc func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte

// matches reports whether token hashes to p's key. The comparison takes
// the same time wherever the first differing byte is.
func (p *params) matches(idKey idKeyFunc, token string) bool {
	got := idKey([]byte(token), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(got, p.key) == 1
}

// encode writes p in PHC format.
func (p *params) encode() string {
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", hashPrefix, argonVersion,
		p.memory, p.time, p.threads, b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

// NewToken returns a random device token: 32 bytes from crypto/rand,
// base64url without padding (43 characters), safe in URLs and headers.
func NewToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

// Hash returns the PHC-format argon2id hash of token with a random 16-byte
// salt and parameters m=19456 KiB, t=2, p=1, e.g.
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>". It refuses an empty token
// and one longer than Verify would take.
func Hash(token string) (string, error) {
	if err := checkTokenLen(token); err != nil {
		return "", err
	}
	p := params{memory: hashMemory, time: hashTime, threads: hashThreads, salt: randomBytes(hashSaltLen)}
	p.key = argon2.IDKey([]byte(token), p.salt, p.time, p.memory, p.threads, hashKeyLen)
	return p.encode(), nil
}

func checkTokenLen(token string) error {
	switch {
	case token == "":
		return errors.New("the token is empty")
	case len(token) > maxTokenLen:
		return fmt.Errorf("the token is longer than %d bytes", maxTokenLen)
	}
	return nil
}

// ParseHash checks that encoded is an argon2id hash in PHC format whose
// parameters this package accepts: version 19, m <= 262144 KiB, t <= 10,
// p <= 4, a salt of 8 to 64 bytes and a key of 16 to 64. Its errors say
// what is wrong without quoting encoded, which may be a token pasted into
// the wrong place.
func ParseHash(encoded string) error {
	_, err := parseHash(encoded)
	return err
}

// LooksHashed reports whether s is meant as an argon2id hash, so that a
// configuration can refuse what is more likely a plain-text token.
func LooksHashed(s string) bool { return strings.HasPrefix(s, hashPrefix) }

func parseHash(encoded string) (params, error) {
	rest, ok := strings.CutPrefix(encoded, hashPrefix)
	if !ok {
		return params{}, fmt.Errorf("not an argon2id hash: it must begin with %q", hashPrefix)
	}
	fields := strings.Split(rest, "$")
	if len(fields) == 3 && strings.HasPrefix(fields[0], "m=") {
		return params{}, fmt.Errorf("the hash has no version: want v=%d after %q", argonVersion, hashPrefix)
	}
	if len(fields) != 4 {
		return params{}, errors.New(`the hash must read "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>"`)
	}
	version, costs, salt, key := fields[0], fields[1], fields[2], fields[3]

	v, ok := strings.CutPrefix(version, "v=")
	n, err := strconv.ParseUint(v, 10, 32)
	switch {
	case !ok || err != nil:
		return params{}, fmt.Errorf("the hash's version must read v=%d", argonVersion)
	case n != argonVersion:
		return params{}, fmt.Errorf("the hash's version v=%d is not supported: want v=%d", n, argonVersion)
	}
	var p params
	if err := p.parseCosts(costs); err != nil {
		return params{}, err
	}
	if p.salt, err = decodeField("salt", salt, minSaltLen); err != nil {
		return params{}, err
	}
	if p.key, err = decodeField("key", key, minKeyLen); err != nil {
		return params{}, err
	}
	return p, nil
}

// parseCosts reads "m=<KiB>,t=<passes>,p=<lanes>", in the order every
// argon2 implementation writes them.
func (p *params) parseCosts(s string) error {
	const form = `the hash's parameters must read "m=<KiB>,t=<passes>,p=<lanes>"`
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return errors.New(form)
	}
	var values [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		digits, ok := strings.CutPrefix(parts[i], name+"=")
		if !ok {
			return errors.New(form)
		}
		v, err := strconv.ParseUint(digits, 10, 32)
		if err != nil {
			return fmt.Errorf("the hash's parameter %s is not a whole number below 2^32", name)
		}
		values[i] = v
	}
	m, t, threads := values[0], values[1], values[2]
	switch {
	case threads < 1:
		return errors.New("the hash's parallelism p=0 must be at least 1")
	case threads > maxThreads:
		return fmt.Errorf("the hash's parallelism p=%d is more than the limit of %d", threads, maxThreads)
	case m < 8*threads:
		return fmt.Errorf("the hash's memory m=%d KiB is below argon2's minimum of 8 KiB per lane (p=%d)", m, threads)
	case m > maxMemory:
		return fmt.Errorf("the hash's memory m=%d KiB is more than the limit of %d KiB (%d MiB)", m, maxMemory, maxMemory/1024)
	case t < 1:
		return errors.New("the hash's time cost t=0 must be at least 1")
	case t > maxTime:
		return fmt.Errorf("the hash's time cost t=%d is more than the limit of %d", t, maxTime)
	}
	p.memory, p.time, p.threads = uint32(m), uint32(t), uint8(threads)
	return nil
}

func decodeField(name, s string, minLen int) ([]byte, error) {
	b, err := b64.DecodeString(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("the hash's %s is not base64 (standard alphabet, no '=' padding)", name)
	case len(b) < minLen:
		return nil, fmt.Errorf("the hash's %s of %d bytes is shorter than %d", name, len(b), minLen)
	case len(b) > maxSaltKey:
		return nil, fmt.Errorf("the hash's %s of %d bytes is longer than %d", name, len(b), maxSaltKey)
	}
	return b, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails: the runtime crashes rather than return weak bytes
	return b
}
