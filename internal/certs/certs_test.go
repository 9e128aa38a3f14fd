package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis/internal/certs"
)

func ca(t *testing.T) *certs.Authority {
	t.Helper()
	a, err := certs.CA(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// fileServer serves 200 over TLS with a certificate a signs for host.
func fileServer(t *testing.T, a *certs.Authority, host string) string {
	t.Helper()
	certPEM, keyPEM, err := a.IssuePEM(host)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: certs.FileServer(func() *tls.Certificate { return &pair }),
		Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go srv.ServeTLS(ln, "", "") // exits when the test's cleanup closes the server
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/"
}

// A peer's file server is trusted only with a certificate the cluster CA
// signed for the address dialled.
func TestPeers(t *testing.T) {
	cluster, other := ca(t), ca(t)
	pool := x509.NewCertPool()
	pool.AddCert(cluster.Cert)
	for _, tc := range []struct {
		name   string
		signer *certs.Authority
		host   string
		roots  *x509.CertPool
		want   string // "" for success
	}{
		{"cluster CA", cluster, "127.0.0.1", pool, ""},
		{"other CA", other, "127.0.0.1", pool, "unknown authority"},
		{"other host", cluster, "10.1.2.3", pool, "10.1.2.3"},
		{"no CA yet", cluster, "127.0.0.1", nil, "no cluster CA from the manager yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := fileServer(t, tc.signer, tc.host)
			tr := &http.Transport{DialTLSContext: certs.DialPeer(func() *x509.CertPool { return tc.roots })}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
			if err == nil {
				resp.Body.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("GET %s: %v, want success", url, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("GET %s: %v, want an error saying %q", url, err, tc.want)
			}
		})
	}
}

// Auto keeps its CA across calls, and makes the server certificate again
// when it must name another host.
func TestAutoKeepsCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, err := certs.Auto(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	fp1, _ := certs.Fingerprint(f.CA)
	leaf1, _ := certs.Fingerprint(f.Cert)
	f, err = certs.Auto(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	fp2, _ := certs.Fingerprint(f.CA)
	leaf2, _ := certs.Fingerprint(f.Cert)
	if fp1 != fp2 || leaf1 != leaf2 {
		t.Errorf("second Auto: CA %s, certificate %s; want the first's %s, %s", fp2, leaf2, fp1, leaf1)
	}
	f, err = certs.Auto(dir, []string{"127.0.0.1", "node7.example"})
	if err != nil {
		t.Fatal(err)
	}
	fp3, _ := certs.Fingerprint(f.CA)
	leaf3, _ := certs.Fingerprint(f.Cert)
	if fp3 != fp1 || leaf3 == leaf1 {
		t.Errorf("Auto with a new host: CA %s (want %s, the same), certificate %s (want a new one)", fp3, fp1, leaf3)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.VerifyHostname("node7.example"); err != nil {
		t.Errorf("the new certificate: %v", err)
	}
}
