package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/wsgate/wsgate/gateway/auth"
)

// fileCheckEvery is how often a handshake may look at a listener's TLS
// files for a change: often enough that a renewed certificate is served
// within seconds, rarely enough to cost nothing under a connection storm.
const fileCheckEvery = time.Second

// fromFiles is a value read from files (a key pair, a CA bundle) that is
// read again when they change, so that a renewed certificate (certbot, a
// CA's rotation) is used for the next clients without a restart; files
// that fail to load keep the last good value in service.
type fromFiles[T any] struct {
	files []string
	load  func() (T, error)
	log   *slog.Logger

	mu      sync.Mutex
	value   T
	stamp   []time.Time // the files' modification times when value was read
	checked time.Time
	loaded  bool
}

func newFromFiles[T any](load func() (T, error), log *slog.Logger, files ...string) (*fromFiles[T], error) {
	f := &fromFiles[T]{files: files, load: load, log: log}
	if err := f.reload(time.Now(), true); err != nil {
		return nil, err
	}
	return f, nil
}

// get returns the value, read again first when the files changed and they
// were last looked at fileCheckEvery ago.
func (f *fromFiles[T]) get() T {
	now := time.Now()
	f.mu.Lock()
	due := now.Sub(f.checked) >= fileCheckEvery
	f.mu.Unlock()
	if due {
		if err := f.reload(now, false); err != nil {
			f.log.Warn("TLS files not reloaded; the previous ones stay in service", "files", f.files, "err", err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value
}

// reload reads the files again when they changed since they were read, or
// always when force is set.
func (f *fromFiles[T]) reload(now time.Time, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked = now
	stamp, err := modTimes(f.files)
	if err != nil {
		return err
	}
	if !force && slices.Equal(stamp, f.stamp) {
		return nil
	}
	v, err := f.load()
	if err != nil {
		return err
	}
	if f.loaded {
		f.log.Info("TLS files reloaded", "files", f.files)
	}
	f.value, f.stamp, f.loaded = v, stamp, true
	return nil
}

func modTimes(files []string) ([]time.Time, error) {
	stamp := make([]time.Time, len(files))
	var errs []error
	for i, name := range files {
		st, err := os.Stat(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		stamp[i] = st.ModTime()
	}
	return stamp, errors.Join(errs...)
}

// certificate is a listener's PEM key pair.
type certificate = fromFiles[*tls.Certificate]

func loadCertificate(certFile, keyFile string, log *slog.Logger) (*certificate, error) {
	return newFromFiles(func() (*tls.Certificate, error) {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS key pair: %w", err)
		}
		return &pair, nil
	}, log, certFile, keyFile)
}

// getCertificate is a listener's tls.Config.GetCertificate.
func getCertificate(c *certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.get(), nil }
}

// caFile is the CA bundle an mtls listener's clients must chain to.
type caFile = fromFiles[*x509.CertPool]

func loadCAFile(path string, log *slog.Logger) (*caFile, error) {
	return newFromFiles(func() (*x509.CertPool, error) { return auth.LoadCAs(path) }, log, path)
}

// ReloadCertificates reads every listener's certificate and CA files again
// now (a reload), instead of at the next handshake after they change.
func (s *Server) ReloadCertificates() error {
	var errs []error
	for _, c := range s.certs {
		if err := c.reload(time.Now(), true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.files[0], err))
		}
	}
	for _, c := range s.cas {
		if err := c.reload(time.Now(), true); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.files[0], err))
		}
	}
	return errors.Join(errs...)
}
