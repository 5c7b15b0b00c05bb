package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminToken: with admin.token_file the admin API wants the token
// (the health probes excepted), a web page cannot reload the gateway, and
// `wsgate reload` sends the token from the same file.
func TestAdminToken(t *testing.T) {
	ts := testConfig(t, "")
	withAdminToken(t, ts.path, "s3cr3t-admin-token")
	doc, err := os.ReadFile(ts.path)
	if err != nil {
		t.Fatal(err)
	}
	startInProcess(t, ts.path, ts.wsURL)

	request := func(method, path, token, origin string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+ts.adminAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	for _, tt := range []struct {
		method, path, token, origin string
		want                        int
	}{
		{"GET", "/devices", "", "", http.StatusUnauthorized},
		{"GET", "/devices", "guess", "", http.StatusUnauthorized},
		{"GET", "/devices", "s3cr3t-admin-token", "", http.StatusOK},
		{"GET", "/healthz", "", "", http.StatusOK},
		{"POST", "/reload", "s3cr3t-admin-token", "http://evil.example", http.StatusForbidden},
	} {
		if got := request(tt.method, tt.path, tt.token, tt.origin); got != tt.want {
			t.Errorf("%s %s (token %q, origin %q): %d, want %d", tt.method, tt.path, tt.token, tt.origin, got, tt.want)
		}
	}

	var out bytes.Buffer
	if status := run(t.Context(), []string{"reload", "-config", ts.path}, &out, &out); status != 0 || !strings.Contains(out.String(), "configuration reloaded") {
		t.Errorf("wsgate reload: %d\n%s", status, out.String())
	}
	// An invalid file: the command says what is wrong, the gateway runs on.
	bad := bytes.Replace(doc, []byte("[log]\n"), []byte("[log]\nformat = \"xml\"\n"), 1)
	if err := os.WriteFile(ts.path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	// The token comes from the file named by the valid configuration.
	if status := run(t.Context(), []string{"reload", "-admin", ts.adminAddr}, &out, &out); status == 0 {
		t.Errorf("wsgate reload without the token succeeded:\n%s", out.String())
	}
	t.Setenv("WSGATE_ADMIN_TOKEN", "s3cr3t-admin-token")
	out.Reset()
	if status := run(t.Context(), []string{"reload", "-admin", ts.adminAddr}, &out, &out); status != 1 ||
		!strings.Contains(out.String(), "configuration not applied") || !strings.Contains(out.String(), `log.format: "xml" is not text or json`) {
		t.Errorf("wsgate reload of an invalid file: %d\n%s", status, out.String())
	}
	if got := request("GET", "/healthz", "", ""); got != http.StatusOK {
		t.Errorf("the gateway does not run on after a refused reload: /healthz %d", got)
	}
}

// TestAdminOffLoopbackNeedsToken: `wsgate check` refuses an admin address
// reachable from the network without a token.
func TestAdminOffLoopbackNeedsToken(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSGATE_ADMIN_TOKEN", "")
	for _, tt := range []struct {
		doc  string
		want int
	}{
		{"[admin]\naddress = \":9180\"\n", 1},
		{"[admin]\naddress = \"0.0.0.0:9180\"\n", 1},
		{"[admin]\naddress = \":9180\"\ntoken_file = \"" + token + "\"\n", 0},
		{"[admin]\naddress = \"127.0.0.1:9180\"\n", 0},
	} {
		path := filepath.Join(dir, "wsgate.toml")
		if err := os.WriteFile(path, []byte(tt.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if status := run(t.Context(), []string{"check", "-config", path}, &out, &out); status != tt.want {
			t.Errorf("%q: check %d, want %d\n%s", tt.doc, status, tt.want, out.String())
		} else if tt.want == 1 && !strings.Contains(out.String(), "admin.address: :9180 is reachable from the network") && !strings.Contains(out.String(), "admin.address: 0.0.0.0:9180 is reachable") {
			t.Errorf("%q: %s", tt.doc, out.String())
		}
	}
}

// withAdminToken adds admin.token_file to the configuration at path, with
// token in the file.
func withAdminToken(t *testing.T, path, token string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte("[admin]\n"), []byte("[admin]\ntoken_file = \""+tokenFile+"\"\n"), 1)
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
}
