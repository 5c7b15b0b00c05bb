package protocols

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
)

// Handshake is a client's upgrade request as negotiation sees it.
type Handshake struct {
	// Offered are the subprotocols the client offered, in its order of
	// preference (ParseOffer).
	Offered    []string
	Path       string
	RemoteAddr string
	Header     http.Header
	// TLS is the state of the client's TLS connection; nil on ws://. On a
	// listener that asks for client certificates, PeerCertificates holds
	// the one the client presented, not verified against any CA.
	TLS *tls.ConnectionState
}

// Admitter is implemented by protocols that serve only some clients (SHIP
// needs a TLS client certificate of its own kind). Negotiation asks it
// about every client that could get the protocol; a protocol that declines
// is passed over as if it had not been offered, so that one endpoint can
// serve "ship, done" to SHIP devices and to the others alike.
type Admitter interface {
	// Admit returns nil when the protocol can serve the client, else why
	// not; the reason is shown to a client that gets no protocol at all.
	// It must be quick and must not block: it runs on every upgrade.
	Admit(Handshake) error
}

// Decline is a protocol that would have been chosen but turned the client
// away.
type Decline struct {
	Protocol string
	Reason   error
}

// NegotiationError is returned when no protocol serves a client. It
// matches ErrNoSubprotocol.
type NegotiationError struct {
	Offered  []string
	Fallback string // the listener's fallback, for clients that offer none
	// Declined are the protocols that turned this client away (Admitter).
	Declined []Decline
}

func (e *NegotiationError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNoSubprotocol.Error() + ": ")
	switch {
	case len(e.Offered) > 0:
		b.WriteString("offered " + strings.Join(e.Offered, ", "))
	case e.Fallback != "" && len(e.Declined) == 0:
		fmt.Fprintf(&b, "fallback %q is not available", e.Fallback)
	case e.Fallback != "":
		fmt.Fprintf(&b, "the client offered none and fallback %q declined it", e.Fallback)
	default:
		b.WriteString("the client offered none")
	}
	if reasons := e.Reasons(); reasons != "" {
		b.WriteString("; " + reasons)
	}
	return b.String()
}

// Reasons says why each declining protocol turned the client away, or ""
// when none did.
func (e *NegotiationError) Reasons() string {
	parts := make([]string, len(e.Declined))
	for i, d := range e.Declined {
		parts[i] = fmt.Sprintf("%s: %v", d.Protocol, d.Reason)
	}
	return strings.Join(parts, "; ")
}

// Unwrap makes the error match ErrNoSubprotocol.
func (e *NegotiationError) Unwrap() error { return ErrNoSubprotocol }
