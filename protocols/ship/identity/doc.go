// Package identity owns the local SHIP identity and the TLS layer of SHIP
// (ship.md sections 2 and 2.1): the ECDSA P-256 key and self-signed
// certificate kept on disk, the SKI (Subject Key Identifier) that names a
// SHIP node, the SHIP ID, and the tls.Config for both roles.
//
// # The SKI
//
// The SKI is SHA-1 over the contents of the subjectPublicKey BIT STRING of
// the certificate's SubjectPublicKeyInfo (RFC 5280 section 4.2.1.2 method
// (1), as ship-go and SHIP 12.2 use it); for P-256 that is the 65-byte
// uncompressed point 04||X||Y. As text it is 40 lower-case hex characters
// without separators; NormalizeSKI accepts the grouped forms users type
// (spaces, '-' and ':' are dropped, upper case is folded).
//
// A peer's SKI is computed from its public key (PeerSKI) and compared with
// the SubjectKeyIdentifier extension it claims. The extension alone proves
// nothing: anyone can put a trusted peer's SKI into a certificate of their
// own key (ship-go quirk Q7). What a mismatch does is a TLSOptions choice
// (MismatchPolicy); the default identifies the peer by the computed value.
//
// # The SHIP ID
//
// The SHIP ID (mDNS TXT "id", accessMethods.id) is the configured string
// when one is given, otherwise DefaultSHIPID: "wsgate-" followed by the
// first 16 hex characters of the local SKI. It is at most 63 bytes.
//
// # TLS
//
// ServerTLSConfig and ClientTLSConfig allow TLS 1.2 with exactly two cipher
// suites, 0xC023 (TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, mandatory in
// SHIP) and 0xC02B (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256). Go counts
// 0xC023 among tls.InsecureCipherSuites and only offers or accepts it when
// it is listed in Config.CipherSuites, which these configs do. TLS 1.3 is
// allowed only when TLSOptions.AllowTLS13 is set (its suites are not
// configurable in Go). The only curve is P-256. Both sides present their
// certificate and neither verifies a chain: the server requires any client
// certificate, and both sides' VerifyConnection only check that the peer's
// leaf has an ECDSA P-256 key and work out its SKI (VerifyPeer).
//
// # Dependencies
//
// This package depends on the standard library and internal/atomicfile
// only. It must not depend on the SHIP state machine, the trust store,
// WebSocket, mDNS or the gateway: those take an *Identity, a *tls.Config or
// a Peer from here.
package identity
