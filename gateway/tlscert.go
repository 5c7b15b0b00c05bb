package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often a handshake may look at a certificate's
// files for a change: often enough that a renewed certificate is served
// within seconds, rarely enough to cost nothing under a connection storm.
const certCheckEvery = time.Second

// certificate is a listener's PEM key pair. It is read again when its
// files change, so that a renewed certificate (certbot, a CA's rotation)
// is served to the next client without a restart; a pair that fails to
// load keeps the last good one in service.
type certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // the files' modification times when cert was read
	checked time.Time
}

func loadCertificate(certFile, keyFile string, log *slog.Logger) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.reload(time.Now(), true); err != nil {
		return nil, err
	}
	return c, nil
}

// get is the listener's tls.Config.GetCertificate.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now()
	c.mu.Lock()
	due := now.Sub(c.checked) >= certCheckEvery
	c.mu.Unlock()
	if due {
		if err := c.reload(now, false); err != nil {
			c.log.Warn("TLS certificate not reloaded; serving the previous one", "cert", c.certFile, "err", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

// reload reads the pair again when its files changed since it was read,
// or always when force is set.
func (c *certificate) reload(now time.Time, force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = now
	stamp, err := modTimes(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	if !force && stamp == c.stamp {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	if c.cert != nil {
		c.log.Info("TLS certificate reloaded", "cert", c.certFile)
	}
	c.cert, c.stamp = &pair, stamp
	return nil
}

func modTimes(files ...string) (stamp [2]time.Time, err error) {
	for i, f := range files {
		st, serr := os.Stat(f)
		if serr != nil {
			err = errors.Join(err, serr)
			continue
		}
		stamp[i] = st.ModTime()
	}
	return stamp, err
}

// ReloadCertificates reads every listener's certificate files again now
// (a reload), instead of at the next handshake after they change.
func (s *Server) ReloadCertificates() error {
	var errs []error
	for _, c := range s.certs {
		if err := c.reload(time.Now(), true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.certFile, err))
		}
	}
	return errors.Join(errs...)
}
