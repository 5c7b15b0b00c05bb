// Package auth owns how the gateway tells who a device is and what it may
// do: device tokens and their hashes, certificate identities, the throttle
// on failed attempts, and the ACL on channels and commands.
//
// Each part answers a threat:
//
//   - Guessing tokens. NewToken makes 256 random bits, which cannot be
//     guessed; Throttle blocks an address after a few failures, doubling
//     the block with each further one, for tokens people chose themselves.
//     Verify compares keys in constant time and refuses a wrong token and
//     a device without a rule alike (ErrUnauthorized), though a device
//     without a rule is refused at once: device ids are not secret.
//   - A stolen config file. The configuration holds argon2id hashes, never
//     tokens (LooksHashed lets it refuse plain text), so a copied file does
//     not let anyone in and guessing from it costs 19 MiB and tens of
//     milliseconds per try. Errors and printable values never hold a
//     token, and ParseHash does not quote what it refuses, since that may
//     be a token pasted in the wrong place.
//   - A device impersonating another. A token rule names the devices it
//     may authenticate, so one device's token does not open another's id;
//     with mutual TLS the id comes from a certificate VerifyClient has
//     checked against the configured CAs only, never the system's; the ACL
//     bounds what an authenticated device may publish and receive, and
//     Reserved keeps every device off the gateway's own channels (commands
//     and statuses), whatever the ACL says.
//   - A flood of failures. Hashing is expensive on purpose, so at most two
//     verifications run at once and the rest wait as long as their context
//     allows (ErrBusy); successes are cached under an HMAC, so known
//     devices reconnect without hashing even while a flood takes the
//     slots; Throttle refuses addresses that keep failing before any hash
//     is computed, and its memory is bounded whatever the number of
//     addresses. Nothing here starts a goroutine: the throttle prunes as
//     calls come.
//
// Reloads replace the rules atomically (Tokens.Replace, or a new ACL);
// Tokens.Still tells which established sessions the new rules still
// grant.
//
// The package depends on the standard library, golang.org/x/crypto/argon2
// and protocols (for what a valid device id is). It must not depend on the
// gateway, the router, the MQTT bridge or the config format: they call it.
package auth
