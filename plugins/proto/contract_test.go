package pluginpb

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wsgate/wsgate/protocols"
)

// wire sends e through its wire encoding.
func wire(t *testing.T, e *Error) *Error {
	t.Helper()
	b, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var out Error
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestErrorsCrossTheWire(t *testing.T) {
	sentinels := []error{protocols.ErrBusy, protocols.ErrInvalidFrame, protocols.ErrClosed, protocols.ErrDeviceOffline,
		protocols.ErrUnauthorized, protocols.ErrForbidden, protocols.ErrSendQueueFull}
	type test struct {
		name      string
		err       error
		sentinel  error // the one it must match; nil: none
		wantClose *protocols.CloseError
	}
	tests := []test{
		{name: "plain", err: errors.New("no such charge point")},
		{name: "close", err: &protocols.CloseError{Code: 4001, Reason: "not registered"},
			wantClose: &protocols.CloseError{Code: 4001, Reason: "not registered"}},
		{name: "wrapped close", err: fmt.Errorf("refused: %w", &protocols.CloseError{Code: 1008, Reason: "policy"}),
			wantClose: &protocols.CloseError{Code: 1008, Reason: "policy"}},
		{name: "sentinel and close", err: fmt.Errorf("%w: %w", protocols.ErrForbidden, &protocols.CloseError{Code: 1008, Reason: "no"}),
			sentinel: protocols.ErrForbidden, wantClose: &protocols.CloseError{Code: 1008, Reason: "no"}},
	}
	for _, s := range sentinels {
		tests = append(tests, test{name: s.Error(), err: fmt.Errorf("attach dev-1: %w", s), sentinel: s})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := wire(t, ToError(tt.err)).Err()
			if got.Error() != tt.err.Error() {
				t.Errorf("text %q, want %q", got, tt.err)
			}
			for _, s := range sentinels {
				if is := errors.Is(got, s); is != (s == tt.sentinel) {
					t.Errorf("errors.Is(%q, %q) = %v", got, s, is)
				}
			}
			ce, ok := errors.AsType[*protocols.CloseError](got)
			if tt.wantClose == nil && ok {
				t.Errorf("a close %+v that was not sent", ce)
			}
			if tt.wantClose != nil && (!ok || *ce != *tt.wantClose) {
				t.Errorf("close %+v, want %+v", ce, tt.wantClose)
			}
		})
	}
	if ToError(nil) != nil || (*Error)(nil).Err() != nil {
		t.Error("nil does not stay nil")
	}
}

func TestSessionInfoCrossesTheWire(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "CP001"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	base := protocols.SessionInfo{ID: "s1", Subprotocol: "ocpp1.6", RemoteAddr: "192.0.2.1:4711", Path: "/ocpp/CP001",
		MaxMessage: 1 << 20, Heartbeat: 30 * time.Second, Gateway: "gw-1", Outbound: true}
	withTLS := base
	withTLS.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384, ServerName: "gw.example",
		NegotiatedProtocol: "http/1.1", HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}}
	for _, in := range []protocols.SessionInfo{base, withTLS} {
		b, err := proto.Marshal(FromSessionInfo(in))
		if err != nil {
			t.Fatal(err)
		}
		var decoded SessionInfo
		if err := proto.Unmarshal(b, &decoded); err != nil {
			t.Fatal(err)
		}
		out, err := decoded.ToSessionInfo()
		if err != nil {
			t.Fatal(err)
		}
		if in.TLS != nil {
			if out.TLS == nil || len(out.TLS.PeerCertificates) != 1 || !out.TLS.PeerCertificates[0].Equal(cert) {
				t.Fatalf("TLS state %+v lost the peer's certificate", out.TLS)
			}
			// Certificates compare by their DER; the rest field by field.
			in.TLS, out.TLS = stripCerts(in.TLS), stripCerts(out.TLS)
		}
		if !reflect.DeepEqual(out, in) {
			t.Errorf("got %+v\nwant %+v", out, in)
		}
	}
}

func stripCerts(cs *tls.ConnectionState) *tls.ConnectionState {
	c := *cs
	c.PeerCertificates = nil
	return &c
}

func TestSessionInfoRefusesABadCertificate(t *testing.T) {
	info := &SessionInfo{Tls: &TLS{PeerCertificates: [][]byte{[]byte("not DER")}}}
	if _, err := info.ToSessionInfo(); err == nil {
		t.Fatal("a certificate that does not parse was accepted")
	}
}
