package gateway

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/gateway/auth"
	"github.com/wsgate/wsgate/protocols"
)

// AuthMode is how a listener's devices prove who they are.
type AuthMode string

const (
	// AuthNone takes the device id a session attaches as at its word.
	AuthNone AuthMode = ""
	// AuthToken wants a token of Access.Tokens for the device id: the one
	// the protocol's hello carried (protocols.Device.Token), else the
	// upgrade request's Authorization: Bearer, or Basic with the device id
	// as the user (OCPP's security profiles).
	AuthToken AuthMode = "token"
	// AuthMTLS wants a client certificate that chains to the listener's
	// ClientCA; the session must attach as the device id it names.
	AuthMTLS AuthMode = "mtls"
)

// Access is how the server authenticates and authorises devices: the
// token rules of AuthToken listeners, the access rules of every session,
// and the throttling of addresses that fail. SetAccess replaces the rules
// while the server runs.
type Access struct {
	Tokens   []auth.TokenRule
	ACL      []auth.ACLRule
	Throttle auth.ThrottleOptions
}

// listenerAccess is a listener's authentication, shared by its
// connections.
type listenerAccess struct {
	mode   AuthMode
	idFrom auth.IDFrom
	ca     *caFile // AuthMTLS
}

// connAuth is what a connection of an authenticating listener keeps of
// its authentication; connections of other listeners keep none.
type connAuth struct {
	lis        *listenerAccess
	bearer     string // the upgrade's bearer (or Basic) token, until the session attaches
	basicUser  string // the Basic user, which must be the device the session attaches as
	certDevice string // AuthMTLS: the device the certificate names
	grant      auth.Grant
}

func (s *Server) setupAccess(a Access) error {
	tokens, err := auth.NewTokens(a.Tokens)
	if err != nil {
		return fmt.Errorf("device tokens: %w", err)
	}
	acl, err := auth.NewACL(a.ACL)
	if err != nil {
		return fmt.Errorf("access rules: %w", err)
	}
	s.tokens, s.throttle = tokens, auth.NewThrottle(a.Throttle)
	s.acl.Store(acl)
	return nil
}

// SetAccess replaces the token and access rules (a reload; the throttle
// keeps its settings), then closes with 1008 the sessions the new rules no
// longer admit: a device whose token was revoked, one whose certificate no
// longer chains to its listener's CAs (after ReloadCertificates).
func (s *Server) SetAccess(a Access) error {
	acl, err := auth.NewACL(a.ACL)
	if err != nil {
		return fmt.Errorf("access rules: %w", err)
	}
	if err := s.tokens.Replace(a.Tokens); err != nil {
		return fmt.Errorf("device tokens: %w", err)
	}
	s.acl.Store(acl)
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.recheck()
	}
	return nil
}

func (s *Server) newListenerAccess(l Listener) (*listenerAccess, error) {
	la := &listenerAccess{mode: l.Auth, idFrom: l.DeviceIDFrom}
	switch l.Auth {
	case AuthNone, AuthToken:
	case AuthMTLS:
		if l.ClientCA == "" {
			return nil, errors.New("mtls needs ClientCA")
		}
		ca, err := loadCAFile(l.ClientCA, s.log)
		if err != nil {
			return nil, err
		}
		s.cas = append(s.cas, ca)
		la.ca = ca
	default:
		return nil, fmt.Errorf("unknown auth mode %q", l.Auth)
	}
	return la, nil
}

// admitRequest applies a listener's authentication to an upgrade request:
// a throttled address gets 429, an mtls client whose certificate does not
// chain to the listener's CAs 403. It returns what the connection keeps.
func (s *Server) admitRequest(la *listenerAccess, r *http.Request) (*connAuth, *HandshakeError) {
	if la.mode == AuthNone {
		return nil, nil
	}
	ip, now := hostOf(r.RemoteAddr), time.Now()
	if wait, blocked := s.throttle.Blocked(ip, now); blocked {
		s.authThrottled.Add(1)
		herr := refuse(http.StatusTooManyRequests, "too many failed authentications from this address; retry later")
		herr.Header = http.Header{"Retry-After": {strconv.Itoa(int(math.Ceil(wait.Seconds())))}}
		return nil, herr
	}
	a := &connAuth{lis: la}
	switch la.mode {
	case AuthToken:
		scheme, credentials, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		credentials = strings.TrimSpace(credentials)
		switch {
		case strings.EqualFold(scheme, "Bearer"):
			a.bearer = credentials
		case strings.EqualFold(scheme, "Basic"):
			// OCPP's security profiles 1 and 2: the device id as the
			// user, its token as the password.
			if raw, err := base64.StdEncoding.DecodeString(credentials); err == nil {
				a.basicUser, a.bearer, _ = strings.Cut(string(raw), ":")
			}
		}
	case AuthMTLS:
		var chain []*x509.Certificate
		if r.TLS != nil {
			chain = r.TLS.PeerCertificates
		}
		if len(chain) == 0 {
			return nil, s.authRefused(r, "", "no client certificate", http.StatusForbidden)
		}
		if err := auth.VerifyClient(chain, la.ca.get(), now); err != nil {
			return nil, s.authRefused(r, "", "client certificate not accepted: "+err.Error(), http.StatusForbidden)
		}
		device, err := auth.DeviceFromCert(chain[0], la.idFrom)
		if err != nil {
			return nil, s.authRefused(r, "", "client certificate names no device: "+err.Error(), http.StatusForbidden)
		}
		a.certDevice = device
	}
	return a, nil
}

// authRefused counts and logs a failed authentication at the upgrade, and
// returns the refusal.
func (s *Server) authRefused(r *http.Request, device, reason string, status int) *HandshakeError {
	s.authFailures.Add(1)
	s.throttle.Fail(hostOf(r.RemoteAddr), time.Now())
	s.logLimited("auth", "device authentication failed", "remote", r.RemoteAddr, "device", device, "reason", reason)
	return refuse(status, "%s", reason)
}

// authenticate checks the device a session attaches as against its
// listener's authentication. The error matches protocols.ErrUnauthorized
// when the device is refused.
func (c *conn) authenticate(d protocols.Device) error {
	a := c.auth
	if a == nil {
		return nil
	}
	srv, ip := c.srv, hostOf(c.info.RemoteAddr)
	if _, blocked := srv.throttle.Blocked(ip, time.Now()); blocked {
		srv.authThrottled.Add(1)
		c.logLimited("auth", "device authentication refused: too many failures from this address", "device", d.ID)
		return fmt.Errorf("%w: too many failed authentications from this address", protocols.ErrUnauthorized)
	}
	switch a.lis.mode {
	case AuthMTLS:
		if d.ID != a.certDevice {
			return c.authFailed(d.ID, fmt.Sprintf("the client certificate is %q's", a.certDevice))
		}
	case AuthToken:
		token := d.Token
		if token == "" {
			token = a.bearer
			if a.basicUser != "" && a.basicUser != d.ID {
				return c.authFailed(d.ID, fmt.Sprintf("the Basic credentials are %q's", a.basicUser))
			}
		}
		if token == "" {
			return c.authFailed(d.ID, "no token")
		}
		ctx, cancel := context.WithTimeout(c.ctx, srv.opts.HandshakeTimeout)
		g, err := srv.tokens.Verify(ctx, d.ID, token)
		cancel()
		switch {
		case errors.Is(err, auth.ErrBusy):
			return fmt.Errorf("%w: %v", protocols.ErrBusy, err) // not the device's fault
		case err != nil:
			return c.authFailed(d.ID, "unknown device or wrong token")
		}
		c.mu.Lock()
		a.grant, a.bearer = g, ""
		c.mu.Unlock()
	}
	srv.throttle.Succeed(ip)
	return nil
}

func (c *conn) authFailed(device, reason string) error {
	c.srv.authFailures.Add(1)
	c.srv.throttle.Fail(hostOf(c.info.RemoteAddr), time.Now())
	c.logLimited("auth", "device authentication failed", "device", device, "reason", reason)
	return fmt.Errorf("%w: %s", protocols.ErrUnauthorized, reason)
}

// recheck closes the connection with 1008 when the current rules no longer
// admit what it authenticated with.
func (c *conn) recheck() {
	a := c.auth
	if a == nil {
		return
	}
	var reason string
	switch a.lis.mode {
	case AuthToken:
		c.mu.Lock()
		g := a.grant
		c.mu.Unlock()
		if g.Device != "" && !c.srv.tokens.Still(g) {
			reason = "device token revoked"
		}
	case AuthMTLS:
		if c.info.TLS != nil {
			if err := auth.VerifyClient(c.info.TLS.PeerCertificates, a.lis.ca.get(), time.Now()); err != nil {
				reason = "client certificate no longer accepted"
			}
		}
	}
	if reason != "" {
		c.logLimited("auth", "closing a session the new configuration does not admit", "device", c.deviceID(), "reason", reason)
		c.Close(protocols.ClosePolicyViolation, reason)
	}
}

// mayPublish applies the gateway's rules to a frame of device: no device
// publishes on the gateway's own channels (cmd/, status) but the result of
// a command its session was given and has not answered (commands.go), and
// the access rules may narrow the rest.
func (c *conn) mayPublish(device, channel string, payload []byte) error {
	if auth.Reserved(channel) {
		if c.takeResult(channel, payload) {
			return nil
		}
		c.srv.forbiddenPublishes.Add(1)
		return fmt.Errorf("%w: %q is the gateway's own channel", protocols.ErrForbidden, channel)
	}
	if !c.srv.acl.Load().MayPublish(device, channel) {
		c.srv.forbiddenPublishes.Add(1)
		c.logLimited("acl", "publish refused by the access rules", "device", device, "channel", channel)
		return fmt.Errorf("%w: %s may not publish on %q", protocols.ErrForbidden, device, channel)
	}
	return nil
}
