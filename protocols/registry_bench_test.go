package protocols

import (
	"context"
	"testing"
)

type benchProtocol string

func (p benchProtocol) Name() string { return string(p) }
func (benchProtocol) NewSession(context.Context, SessionInfo, Outlet) (Session, error) {
	return nil, nil
}

// BenchmarkNegotiate is the per-handshake cost of parsing the offer and
// picking a protocol, for a typical two-name offer.
func BenchmarkNegotiate(b *testing.B) {
	r, err := NewRegistry([]string{"ship", "done", "echo", "ocpp1.6"})
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"ship", "done", "echo", "ocpp1.6"} {
		if err := r.Register(benchProtocol(name), "builtin"); err != nil {
			b.Fatal(err)
		}
	}
	header := []string{"x-unknown, done"}
	for _, policy := range []Policy{PolicyClient, PolicyServer} {
		b.Run(string(policy), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				offered, err := ParseOffer(header)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Negotiate(Handshake{Offered: offered}, Negotiation{Policy: policy}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
