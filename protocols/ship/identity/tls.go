package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
)

// CipherSuites are the TLS 1.2 suites SHIP uses, in order: 0xC023 is
// mandatory, 0xC02B optional. Go lists 0xC023 in tls.InsecureCipherSuites
// and uses it only when it is named in Config.CipherSuites. Go chooses
// among the listed suites by its own preference, so 0xC02B wins when both
// sides offer it.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, // 0xC023
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, // 0xC02B
}

// Errors of VerifyPeer.
var (
	ErrNoPeerCertificate = errors.New("identity: peer presented no certificate")
	ErrUnexpectedPeer    = errors.New("identity: peer SKI is not the expected one")
)

// MismatchPolicy says what to do when a peer certificate's
// SubjectKeyIdentifier extension differs from the SKI of its key.
type MismatchPolicy int

const (
	// MismatchUseComputed identifies the peer by the SKI of its key and
	// logs the mismatch. The default: only the key is proved by the
	// handshake.
	MismatchUseComputed MismatchPolicy = iota
	// MismatchReject fails the handshake.
	MismatchReject
	// MismatchUseExtension identifies the peer by the extension, as
	// ship-go does (quirk Q7). Anyone can claim any SKI this way; use it
	// only for a device whose extension is known to be computed otherwise.
	MismatchUseExtension
)

// String returns the policy's config name.
func (p MismatchPolicy) String() string {
	switch p {
	case MismatchUseComputed:
		return "computed"
	case MismatchReject:
		return "reject"
	case MismatchUseExtension:
		return "extension"
	}
	return fmt.Sprintf("MismatchPolicy(%d)", int(p))
}

// ParseMismatchPolicy maps a config value ("computed", "reject",
// "extension"; "" is "computed") to a policy.
func ParseMismatchPolicy(s string) (MismatchPolicy, error) {
	switch s {
	case "", "computed":
		return MismatchUseComputed, nil
	case "reject":
		return MismatchReject, nil
	case "extension":
		return MismatchUseExtension, nil
	}
	return 0, fmt.Errorf("identity: unknown SKI mismatch policy %q (want computed, reject or extension)", s)
}

// TLSOptions tunes the TLS configs.
type TLSOptions struct {
	// AllowTLS13 lets TLS 1.3 be negotiated; otherwise TLS 1.2 only.
	AllowTLS13 bool
	// Mismatch is what a mismatching SKI extension leads to.
	Mismatch MismatchPolicy
	// ExpectedPeerSKI, when set, is the only peer SKI accepted (the client
	// knows it from mDNS or the config). Any form NormalizeSKI accepts.
	ExpectedPeerSKI string
	// Logger receives SKI mismatch warnings; nil means slog.Default().
	Logger *slog.Logger
}

// Peer is what the handshake established about the remote node.
type Peer struct {
	// SKI identifies the peer: Computed, or Extension under
	// MismatchUseExtension.
	SKI string
	// Computed is the SKI of the peer's public key.
	Computed string
	// Extension is the peer certificate's SubjectKeyIdentifier ("" if none).
	Extension string
	// Mismatch is true when Extension is present and differs from Computed.
	Mismatch bool
	// Certificate is the peer's leaf certificate.
	Certificate *x509.Certificate
}

// ServerTLSConfig returns the config of a SHIP server: the local
// certificate, TLS 1.2 (1.3 when allowed) with CipherSuites, curve P-256,
// and a client certificate required but not chain-verified; the client's
// leaf must have an ECDSA P-256 key (VerifyPeer).
func ServerTLSConfig(id *Identity, opts TLSOptions) *tls.Config {
	cfg := baseConfig(id, opts)
	cfg.ClientAuth = tls.RequireAnyClientCert
	return cfg
}

// ListenerTLSConfig returns the config of a listener that serves SHIP
// beside other protocols: ServerTLSConfig, but a client certificate is
// only requested, and not checked during the TLS handshake, so that
// clients without one (or with one that is not SHIP's kind) still connect
// and can be given another protocol. Whoever serves SHIP on it must call
// VerifyPeer on the connection state.
func ListenerTLSConfig(id *Identity, opts TLSOptions) *tls.Config {
	cfg := baseConfig(id, opts)
	cfg.ClientAuth = tls.RequestClientCert
	cfg.VerifyConnection = nil
	return cfg
}

// ClientTLSConfig returns the config of a SHIP client: the local certificate
// as client certificate, the same versions, suites and curve as the server,
// and no chain or host name verification (SHIP certificates are self-signed)
// but the VerifyPeer checks, including opts.ExpectedPeerSKI. After the
// handshake, VerifyPeer(conn.ConnectionState(), opts) gives the server's SKI.
func ClientTLSConfig(id *Identity, opts TLSOptions) *tls.Config {
	cfg := baseConfig(id, opts)
	cfg.InsecureSkipVerify = true //nolint:gosec // SHIP 12.1: self-signed; VerifyConnection checks the key.
	return cfg
}

func baseConfig(id *Identity, opts TLSOptions) *tls.Config {
	cfg := &tls.Config{
		Certificates:     []tls.Certificate{id.Certificate},
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS12,
		CipherSuites:     append([]uint16(nil), CipherSuites...),
		CurvePreferences: []tls.CurveID{tls.CurveP256},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := VerifyPeer(cs, opts)
			return err
		},
	}
	if opts.AllowTLS13 {
		cfg.MaxVersion = tls.VersionTLS13
	}
	return cfg
}

// VerifyPeer checks the peer of a TLS connection the SHIP way and returns
// who it is: the leaf certificate must carry an ECDSA P-256 key; its SKI is
// computed and compared with the extension (opts.Mismatch decides); if
// opts.ExpectedPeerSKI is set the resulting SKI must equal it. No chain is
// verified. The configs call it from VerifyConnection; the caller calls it
// again after the handshake to learn the peer.
func VerifyPeer(cs tls.ConnectionState, opts TLSOptions) (Peer, error) {
	if len(cs.PeerCertificates) == 0 {
		return Peer{}, ErrNoPeerCertificate
	}
	leaf := cs.PeerCertificates[0]
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return Peer{}, fmt.Errorf("%w: peer certificate %q", ErrNotP256, leaf.Subject.CommonName)
	}
	computed, ext, err := PeerSKI(leaf)
	if err != nil {
		return Peer{}, err
	}
	p := Peer{SKI: computed, Computed: computed, Extension: ext, Certificate: leaf}
	if ext != "" && ext != computed {
		p.Mismatch = true
		logger := opts.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Warn("ship: peer SKI extension does not match its public key",
			"computed", computed, "extension", ext, "policy", opts.Mismatch.String())
		switch opts.Mismatch {
		case MismatchReject:
			return Peer{}, fmt.Errorf("%w: extension %s, key %s", ErrSKIMismatch, ext, computed)
		case MismatchUseExtension:
			if len(ext) == SKILen {
				p.SKI = ext
			}
		}
	}
	if opts.ExpectedPeerSKI != "" {
		want, err := NormalizeSKI(opts.ExpectedPeerSKI)
		if err != nil {
			return Peer{}, err
		}
		if p.SKI != want {
			return Peer{}, fmt.Errorf("%w: got %s, want %s", ErrUnexpectedPeer, p.SKI, want)
		}
	}
	return p, nil
}
