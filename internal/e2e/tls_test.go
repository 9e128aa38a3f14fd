package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
	"trellis/internal/certs"
)

// tlsLine parses the line of a manager started with --tls auto: its CA file
// and the CA's fingerprint.
func tlsLine(t *testing.T, m *proc) (ca, fingerprint string) {
	t.Helper()
	waitFor(t, 20*time.Second, "the manager to print its CA", func() bool {
		sc := bufio.NewScanner(strings.NewReader(m.Output()))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "trellis manager TLS: CA "); ok {
				f := strings.Fields(rest)
				ca, fingerprint = f[0], strings.TrimSuffix(f[len(f)-1], ")")
				return true
			}
		}
		return false
	})
	return ca, fingerprint
}

// tlsClient dials the cluster over TLS with the CA file or fingerprint.
func (c *cluster) tlsClient(ca, fingerprint string) (*trellis.Client, error) {
	c.t.Helper()
	cfg, err := trellis.ClusterTLS(c.addr, ca, fingerprint)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := trellis.Dial(ctx, c.addr, trellis.WithSecret(c.secret()), trellis.WithTLS(cfg))
	if err == nil {
		c.t.Cleanup(func() { cl.Close() })
	}
	return cl, err
}

// A manager with --tls auto serves workers and clients that trust its CA
// (by file or by fingerprint) and keeps its CA across a restart.
func TestTLSAuto(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	c := newCluster(t, "--tls", "auto", "--tls-dir", dir)
	ca, fp := tlsLine(t, c.manager)
	if ca != filepath.Join(dir, certs.CAFile) || !strings.HasPrefix(fp, "sha256:") {
		t.Fatalf("manager printed CA %q fingerprint %q, want %s and sha256:…", ca, fp, filepath.Join(dir, certs.CAFile))
	}
	c.worker("w1", nil, "--tls-ca", ca)
	c.worker("w2", nil, "--tls-fingerprint", fp)
	cl, err := c.tlsClient(ca, "")
	if err != nil {
		t.Fatalf("Dial over TLS with the CA: %v", err)
	}
	c.waitWorkers(cl, 2)

	// An input goes up to the manager's /files/, an output comes back.
	in := filepath.Join(t.TempDir(), "in.txt")
	body := strings.Repeat("over tls\n", 10000)
	os.WriteFile(in, []byte(body), 0o644)
	out := filepath.Join(t.TempDir(), "out.txt")
	tk := trellis.NewTask("cat in.txt > out.txt")
	tk.AddInput(trellis.LocalFile(in), "in.txt")
	tk.AddOutput(trellis.Output(out), "out.txt")
	hs, err := cl.Submit(context.Background(), tk)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], time.Minute); !r.OK() {
		t.Fatalf("task over TLS: %v", r.Err())
	}
	if got, _ := os.ReadFile(out); string(got) != body {
		t.Errorf("output over TLS: %d bytes, want the %d bytes of the input", len(got), len(body))
	}

	if code, out := runTrellis(t, "status", c.addr, "--secret-file", c.secretFile, "--tls-fingerprint", fp); code != 0 || !strings.Contains(out, "w2") {
		t.Errorf("status with the pinned fingerprint: exit %d, output:\n%s", code, out)
	}
	if code, out := runTrellis(t, "status", c.addr, "--secret-file", c.secretFile); code == 0 {
		t.Errorf("status in plain HTTP to a TLS manager: exit 0, output:\n%s", out)
	}

	// Started again with the same directory: the same CA.
	cl.Close()
	c.manager.signal(t, syscall.SIGTERM)
	c.manager.wait(t, 20*time.Second)
	again := newCluster(t, "--tls", "auto", "--tls-dir", dir)
	if ca2, fp2 := tlsLine(t, again.manager); ca2 != ca || fp2 != fp {
		t.Errorf("after a restart the CA is %s %s, want the same %s %s", ca2, fp2, ca, fp)
	}
	if _, err := again.tlsClient("", fp); err != nil {
		t.Errorf("Dial the restarted manager with the pinned fingerprint: %v", err)
	}
}

// issue writes a certificate for hosts, valid from notBefore to notAfter,
// signed by the CA kept in caDir (followed by the CA's), and its key; it
// returns their paths.
func issue(t *testing.T, caDir string, hosts []string, notBefore, notAfter time.Time) (cert, key string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(caDir, certs.CAFile), filepath.Join(caDir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	der, priv, err := certs.Issue(pair.Leaf, pair.PrivateKey.(*ecdsa.PrivateKey), hosts, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(priv)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Leaf.Raw})...)
	os.WriteFile(cert, chain, 0o644) // the CA after it, as --tls auto serves, for pinning
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert, key
}

// Workers, status and the Go client refuse a manager whose certificate does
// not verify, and say why; a worker that cannot verify never joins.
func TestTLSRefused(t *testing.T) {
	caDir := filepath.Join(t.TempDir(), "ca")
	if _, err := certs.Auto(caDir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	otherDir := filepath.Join(t.TempDir(), "other")
	if _, err := certs.Auto(otherDir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(caDir, certs.CAFile)
	now := time.Now()
	for _, tc := range []struct {
		name  string
		cert  func() (string, string)
		trust string // the CA file workers and clients get
		pin   bool   // give its fingerprint instead
		want  string
	}{
		{"expired", func() (string, string) {
			return issue(t, caDir, []string{"127.0.0.1"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
		}, ca, false, "its TLS certificate is not valid now"},
		{"wrong CA", func() (string, string) {
			return filepath.Join(caDir, certs.CertFile), filepath.Join(caDir, certs.KeyFile)
		}, filepath.Join(otherDir, certs.CAFile), false, "its TLS certificate is not signed by the CA given"},
		{"wrong host", func() (string, string) {
			return issue(t, caDir, []string{"elsewhere.example"}, now.Add(-time.Hour), now.Add(time.Hour))
		}, ca, false, "its TLS certificate is not for host 127.0.0.1 (it names elsewhere.example)"},
		{"wrong host, pinned", func() (string, string) {
			return issue(t, caDir, []string{"elsewhere.example"}, now.Add(-time.Hour), now.Add(time.Hour))
		}, ca, true, "its TLS certificate is not for host 127.0.0.1 (it names elsewhere.example)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := tc.cert()
			c := newCluster(t, "--tls-cert", cert, "--tls-key", key)
			flag, value, caFile, fp := "--tls-ca", tc.trust, tc.trust, ""
			if tc.pin {
				fp, _ = certs.Fingerprint(tc.trust)
				flag, value, caFile = "--tls-fingerprint", fp, ""
			}
			w := c.worker("intruder", nil, flag, value)
			if code := w.wait(t, 30*time.Second); code == 0 {
				t.Errorf("worker exited 0 from a manager it cannot verify")
			}
			if out := w.Output(); !strings.Contains(out, "refused by the manager") || !strings.Contains(out, tc.want) {
				t.Errorf("worker output does not say %q:\n%s", tc.want, out)
			}
			if code, out := runTrellis(t, "status", c.addr, "--secret-file", c.secretFile, flag, value); code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("status: exit %d, want non-zero and %q in:\n%s", code, tc.want, out)
			}
			_, err := c.tlsClient(caFile, fp)
			if !errors.Is(err, trellis.ErrUntrusted) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial: %v, want ErrUntrusted saying %q", err, tc.want)
			}
			// The manager has no worker: the refused one never joined.
			if cl, err := c.tlsClient(filepath.Join(caDir, certs.CAFile), ""); err == nil {
				if s, err := cl.Status(context.Background()); err == nil && len(s.Workers) != 0 {
					t.Errorf("manager has %d workers, want none", len(s.Workers))
				}
			}
		})
	}
}

// A worker serves its cache on the address it reaches the manager from, not
// on every interface: reached on loopback, its file server does not answer on
// the machine's other addresses.
func TestFileServerBindsTowardManager(t *testing.T) {
	var other string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			other = n.IP.String()
			break
		}
	}
	if other == "" {
		t.Skip("this machine has no IPv4 address besides loopback to try the file server on")
	}
	c := newCluster(t)
	c.worker("w", nil)
	var port string
	waitFor(t, 20*time.Second, "the worker to join", func() bool {
		_, after, ok := strings.Cut(c.manager.Output(), "file_server=")
		if !ok {
			return false
		}
		_, port, _ = net.SplitHostPort(strings.Fields(after)[0])
		return true
	})
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 5*time.Second); err != nil {
		t.Fatalf("file server on 127.0.0.1:%s, the address toward the manager: %v", port, err)
	} else {
		conn.Close()
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(other, port), 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("file server answers on %s:%s, want it bound to 127.0.0.1 only (the manager is on loopback)", other, port)
	}
}

// With --tls auto a file moves between workers over TLS: the consumer runs
// on a worker that has not the file, and gets it from the producer's file
// server, which serves only TLS with the certificate the manager gave it.
func TestTLSPeerTransfer(t *testing.T) {
	c := newCluster(t, "--tls", "auto", "--tls-dir", filepath.Join(t.TempDir(), "tls"))
	ca, fp := tlsLine(t, c.manager)
	c.worker("producer", nil, "--cores", "1", "--tls-ca", ca)
	cl, err := c.tlsClient(ca, "")
	if err != nil {
		t.Fatal(err)
	}
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	gate := filepath.Join(dir, "open")
	defer os.WriteFile(gate, nil, 0o644)
	numbers := trellis.Temp()
	produce := trellis.NewTask("seq 1 200000 > n.txt").AddOutput(numbers, "n.txt")
	hold := trellis.NewTask("while [ ! -e " + gate + " ]; do sleep 0.05; done")
	hold.After = []*trellis.Task{produce}
	hs, err := cl.Submit(context.Background(), produce, hold)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[0], 30*time.Second); !r.OK() {
		t.Fatalf("producer: %v", r.Err())
	}
	waitRunning(t, cl, 1, "the hold task to take the producer's one core")
	c.worker("consumer", nil, "--cores", "1", "--tls-fingerprint", fp)
	c.waitWorkers(cl, 2)
	count := trellis.NewTask("wc -l < n.txt | tr -d ' ' > count.txt").AddInput(numbers, "n.txt")
	out := trellis.Output(filepath.Join(dir, "count.txt"))
	count.AddOutput(out, "count.txt")
	hc, err := cl.Submit(context.Background(), count)
	if err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, hc[0], time.Minute)
	if !r.OK() {
		t.Fatalf("consumer: %v", r.Err())
	}
	if r.Worker != "consumer" {
		t.Errorf("the consumer ran on %s, want the worker without the file", r.Worker)
	}
	if got, _ := os.ReadFile(out.Path()); string(got) != "200000\n" {
		t.Errorf("count.txt = %q, want 200000", got)
	}
}
