package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/wsgate/wsgate/protocols/ship/internal/atomicfile"
)

// File names of the identity inside its directory.
const (
	KeyFile  = "ship-key.pem"  // PKCS#8 "PRIVATE KEY", mode 0600
	CertFile = "ship-cert.pem" // "CERTIFICATE", mode 0644
)

// ValidityYears is how long a generated certificate is valid, from the
// moment it is created (ship-go: now + 10 years; ship.md section 2).
const ValidityYears = 10

// Errors of LoadOrCreate.
var (
	// ErrKeyMissing: the certificate exists but its key does not. Creating a
	// new key would silently change the SKI and break every pairing, so the
	// operator must remove the certificate to start a new identity.
	ErrKeyMissing = errors.New("identity: certificate present but private key missing")
	// ErrKeyMismatch: the stored certificate is not for the stored key.
	ErrKeyMismatch = errors.New("identity: certificate does not match private key")
	// ErrNotP256: a key is not ECDSA on P-256, the only key SHIP allows.
	ErrNotP256 = errors.New("identity: key is not ECDSA P-256")
	// ErrSKIMismatch: a certificate's SubjectKeyIdentifier extension is not
	// the SKI of its public key.
	ErrSKIMismatch = errors.New("identity: SKI extension does not match public key")
)

// Subject describes the local node in the certificate it generates and
// carries the configured SHIP ID. It only matters on first start: a stored
// certificate is loaded as it is.
type Subject struct {
	CommonName         string // ship-go suggests "<model>-<serial>"; default "wsgate"
	Organization       string // brand
	OrganizationalUnit string
	Country            string // two letters, optional
	// SHIPID is the configured SHIP ID; empty means DefaultSHIPID(SKI).
	SHIPID string
}

// Identity is the local SHIP node: its certificate and key, its SKI and its
// SHIP ID.
type Identity struct {
	// Certificate holds the key and the self-signed certificate, with Leaf
	// set and the signature algorithm limited to ECDSA P-256 SHA-256.
	Certificate tls.Certificate
	// SKI is the local SKI, 40 lower-case hex characters.
	SKI string
	// SHIPID is the configured or default SHIP ID.
	SHIPID string
	// Created is true when this call generated a new key or certificate.
	Created bool
	// KeyPath and CertPath are the files the identity is kept in.
	KeyPath, CertPath string
}

// Leaf returns the parsed local certificate.
func (id *Identity) Leaf() *x509.Certificate { return id.Certificate.Leaf }

// LoadOrCreate returns the identity kept in dir, creating dir (0700), an
// ECDSA P-256 key and a self-signed certificate for subject the first time.
// Files are written atomically (temporary file, fsync, rename), the key
// with mode 0600 and the certificate with 0644. If the key exists but the
// certificate does not (a crash between the two writes), a certificate is
// made for the existing key, so the SKI does not change.
func LoadOrCreate(dir string, subject Subject) (*Identity, error) {
	if subject.SHIPID != "" {
		if err := ValidateSHIPID(subject.SHIPID); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	id := &Identity{KeyPath: filepath.Join(dir, KeyFile), CertPath: filepath.Join(dir, CertFile)}

	certPEM, err := os.ReadFile(id.CertPath)
	certExists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity: %w", err)
	}

	key, err := loadKey(id.KeyPath)
	switch {
	case errors.Is(err, fs.ErrNotExist) && certExists:
		return nil, fmt.Errorf("%w: %s without %s", ErrKeyMissing, id.CertPath, id.KeyPath)
	case errors.Is(err, fs.ErrNotExist):
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("identity: generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("identity: marshal key: %w", err)
		}
		if err := atomicfile.Write(id.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		id.Created = true
	case err != nil:
		return nil, err
	}

	ski, err := SKIFromPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}

	var leaf *x509.Certificate
	if certExists {
		leaf, err = parseCertPEM(certPEM)
		if err != nil {
			return nil, fmt.Errorf("identity: %s: %w", id.CertPath, err)
		}
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || !pub.Equal(&key.PublicKey) {
			return nil, fmt.Errorf("%w: %s", ErrKeyMismatch, id.CertPath)
		}
		if ext := hex.EncodeToString(leaf.SubjectKeyId); ext != ski {
			return nil, fmt.Errorf("%w: %s: extension %q, key %q", ErrSKIMismatch, id.CertPath, ext, ski)
		}
	} else {
		der, err := createCertificate(key, subject, ski, time.Now())
		if err != nil {
			return nil, err
		}
		if leaf, err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("identity: parse generated certificate: %w", err)
		}
		if err := atomicfile.Write(id.CertPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		id.Created = true
	}

	id.Certificate = tls.Certificate{
		Certificate:                  [][]byte{leaf.Raw},
		PrivateKey:                   key,
		Leaf:                         leaf,
		SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
	}
	id.SKI = ski
	id.SHIPID = subject.SHIPID
	if id.SHIPID == "" {
		id.SHIPID = DefaultSHIPID(ski)
	}
	return id, nil
}

// createCertificate makes the self-signed certificate as ship-go does: a
// random serial below 2^130, valid from now for ValidityYears, a CA with
// key usage digitalSignature, and the SubjectKeyIdentifier set to ski.
func createCertificate(key *ecdsa.PrivateKey, subject Subject, ski string, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 130))
	if err != nil {
		return nil, fmt.Errorf("identity: serial: %w", err)
	}
	skiBytes, err := hex.DecodeString(ski)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	name := pkix.Name{CommonName: subject.CommonName}
	if name.CommonName == "" {
		name.CommonName = "wsgate"
	}
	if subject.Organization != "" {
		name.Organization = []string{subject.Organization}
	}
	if subject.OrganizationalUnit != "" {
		name.OrganizationalUnit = []string{subject.OrganizationalUnit}
	}
	if subject.Country != "" {
		name.Country = []string{subject.Country}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		NotBefore:             now,
		NotAfter:              now.AddDate(ValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skiBytes,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("identity: create certificate: %w", err)
	}
	return der, nil
}

// loadKey reads a PEM ECDSA P-256 key (PKCS#8 or SEC 1). A missing file
// gives an error wrapping fs.ErrNotExist.
func loadKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("identity: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("identity: %s: no PEM block", path)
	}
	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("identity: %s: unexpected PEM block %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %s", ErrNotP256, path)
	}
	return key, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}
