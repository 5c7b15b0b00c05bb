package gateway

import (
	"crypto/tls"
	"os"
	"testing"
	"time"
)

// TestCertificateRotatedOnDisk: a listener serves the certificate that
// replaced its files to the next clients, without a restart or a reload;
// a broken replacement leaves the previous one in service.
func TestCertificateRotatedOnDisk(t *testing.T) {
	t.Parallel()
	certFile, keyFile := selfSignedCert(t)
	opts := baseOptions()
	opts.Listeners[0].TLSCert, opts.Listeners[0].TLSKey = certFile, keyFile
	gw := startGateway(t, opts)

	served := func() []byte {
		t.Helper()
		c, err := tls.Dial("tcp", gw.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	first := served()

	// A renewal: new files in place, as certbot's deploy does.
	newCert, newKey := selfSignedCert(t)
	replace := func(src, dst string) {
		t.Helper()
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(time.Minute) // a change even on coarse file times
		if err := os.Chtimes(dst, later, later); err != nil {
			t.Fatal(err)
		}
	}
	replace(newCert, certFile)
	replace(newKey, keyFile)
	want, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testWait)
	for string(served()) != string(want.Certificate[0]) {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate is not served")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A broken file (half written): the renewed certificate stays.
	if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\ngarbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := gw.srv.ReloadCertificates(); err == nil {
		t.Error("ReloadCertificates accepted a broken certificate")
	}
	if string(served()) != string(want.Certificate[0]) || string(served()) == string(first) {
		t.Error("a broken certificate file took the good one out of service")
	}
}
