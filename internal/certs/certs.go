// Package certs makes, loads and checks the TLS certificates of a cluster.
//
// A manager serves TLS with a certificate and key it is given, or with ones
// Auto makes: a cluster CA (ECDSA P-256) and a server certificate it signs,
// kept in a directory and reused when the manager starts again. Clients and
// workers trust the manager through the CA's file, or by pinning the CA's
// SHA-256 fingerprint. Explain turns a failed verification into an error
// that says what is wrong and what to do. The package holds no state.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The files Auto keeps in its directory.
const (
	CAFile   = "ca.pem"          // the cluster CA's certificate: give it to workers and clients
	caKey    = "ca-key.pem"      // the CA's key: stays with the manager
	CertFile = "manager.pem"     // the manager's certificate, then the CA's
	KeyFile  = "manager-key.pem" // the manager's key
)

// Lifetimes of what Auto makes. A server certificate that ends within
// renewBefore is made again at the next start, signed by the same CA.
const (
	caLife      = 10 * 365 * 24 * time.Hour
	serverLife  = 365 * 24 * time.Hour
	renewBefore = 30 * 24 * time.Hour
)

// Files names a certificate, its key, and the CA that signed it.
type Files struct{ Cert, Key, CA string }

// Auto returns the cluster CA and a server certificate for hosts in dir,
// making what is missing: the CA once, the server certificate when it is
// missing, ends within 30 days, or does not name every one of hosts.
func Auto(dir string, hosts []string) (Files, error) {
	f := Files{Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile), CA: filepath.Join(dir, CAFile)}
	ca, caPriv, err := loadOrMakeCA(dir)
	if err != nil {
		return f, err
	}
	if leaf, err := loadLeaf(f.Cert, f.Key); err == nil && fresh(leaf, ca, hosts) {
		return f, nil
	}
	return f, makeServer(f, ca, caPriv, hosts)
}

func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("tls directory %s: %w: give --tls-dir a directory the manager may write", dir, err)
	}
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, caKey)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("cluster CA key %s: not an ECDSA key: remove %s and %s to make a new CA", keyPath, certPath, keyPath)
		}
		return pair.Leaf, key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("cluster CA in %s: %w: remove %s and %s to make a new CA (workers and clients then need the new %s)", dir, err, certPath, keyPath, CAFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "trellis cluster CA", Organization: []string{"trellis"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make the cluster CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	// The key first: a CA file without its key would be taken as a CA.
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeFile(certPath, pemCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

// Issue signs a certificate for hosts (IP addresses or DNS names), valid
// from notBefore to notAfter, with the CA, for serving (and being a
// client), and returns it with its key.
func Issue(ca *x509.Certificate, caPriv *ecdsa.PrivateKey, hosts []string, notBefore, notAfter time.Time) (certDER []byte, key *ecdsa.PrivateKey, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"trellis"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caPriv)
	if err != nil {
		return nil, nil, fmt.Errorf("sign a certificate for %s: %w", strings.Join(hosts, ", "), err)
	}
	return certDER, key, nil
}

func makeServer(f Files, ca *x509.Certificate, caPriv *ecdsa.PrivateKey, hosts []string) error {
	der, key, err := Issue(ca, caPriv, hosts, time.Now().Add(-time.Hour), time.Now().Add(serverLife))
	if err != nil {
		return err
	}
	if err := writeKey(f.Key, key); err != nil {
		return err
	}
	// The CA follows the certificate, so that a client pinning the CA's
	// fingerprint finds it in the handshake.
	return writeFile(f.Cert, append(pemCert(der), pemCert(ca.Raw)...), 0o644)
}

func loadLeaf(cert, key string) (*x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	return pair.Leaf, nil
}

// fresh reports whether leaf was signed by ca, names every one of hosts, and
// is valid for longer than renewBefore.
func fresh(leaf, ca *x509.Certificate, hosts []string) bool {
	if leaf.CheckSignatureFrom(ca) != nil || time.Until(leaf.NotAfter) < renewBefore {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// Server is the TLS configuration of a server with the certificate (and
// the chain after it) in certFile and its key in keyFile.
func Server(certFile, keyFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the TLS certificate %s and key %s: %w: give a PEM certificate and its PEM key", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}, nil
}

// Client is the TLS configuration of a client of the manager at addr
// (host:port) that trusts the CA in caFile, or, when fingerprint is given
// instead, the certificate of that SHA-256 fingerprint among those the
// server sends (Fingerprint prints it). Either way the server's certificate
// must name addr's host and be valid now. It sets no NextProtos: each
// http.Transport offers its own.
func Client(addr, caFile, fingerprint string) (*tls.Config, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("manager address %q: %w: give HOST:PORT", addr, err)
	}
	switch {
	case caFile != "" && fingerprint != "":
		return nil, errors.New("give --tls-ca or --tls-fingerprint, not both")
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA file: %w: give the %s the manager printed", err, CAFile)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate: give the %s the manager printed", caFile, CAFile)
		}
		return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}, nil
	case fingerprint != "":
		want, err := parseFingerprint(fingerprint)
		if err != nil {
			return nil, err
		}
		return &tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: host,
			// The pinned certificate replaces the system's roots; the
			// usual checks (time, host, chain) follow in pinned. The
			// host is bound here: the handshake's ServerName is empty
			// when the host is an IP address.
			InsecureSkipVerify: true,
			VerifyConnection:   func(cs tls.ConnectionState) error { return pinned(cs, host, want) },
		}, nil
	}
	return nil, nil
}

// pinned verifies the server's certificate against the certificate it sent
// whose fingerprint is want.
func pinned(cs tls.ConnectionState, host string, want []byte) error {
	roots := x509.NewCertPool()
	found := false
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates {
		if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], want) {
			roots.AddCert(c)
			found = true
		} else {
			inter.AddCert(c)
		}
	}
	if !found {
		return &x509.UnknownAuthorityError{Cert: cs.PeerCertificates[0]}
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

// Fingerprint is the SHA-256 fingerprint of the first certificate in the PEM
// file, as --tls-fingerprint takes it: "sha256:" and hex.
func Fingerprint(pemFile string) (string, error) {
	b, err := os.ReadFile(pemFile)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s holds no PEM certificate", pemFile)
	}
	sum := sha256.Sum256(block.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func parseFingerprint(s string) ([]byte, error) {
	h := strings.ToLower(strings.TrimPrefix(strings.ToLower(s), "sha256:"))
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("--tls-fingerprint %q: want sha256: and 64 hex digits, as the manager printed", s)
	}
	return b, nil
}

// Explain rewrites an error from reaching the manager at addr ("" when the
// caller names it already) over TLS into one that says what failed and what
// to do, wrapping ErrUntrusted; other errors come back as they are.
func Explain(err error, addr string) error {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	var unknownPtr *x509.UnknownAuthorityError
	var host x509.HostnameError
	var record tls.RecordHeaderError
	who := "manager"
	if addr != "" {
		who += " " + addr
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%s: its TLS certificate is not valid now (valid %s to %s): renew it (trellis manager --tls auto renews its own at start): %w",
			who, invalid.Cert.NotBefore.UTC().Format(time.RFC3339), invalid.Cert.NotAfter.UTC().Format(time.RFC3339), ErrUntrusted)
	case errors.As(err, &invalid):
		return fmt.Errorf("%s: its TLS certificate is not valid: %s: %w", who, invalid.Error(), ErrUntrusted)
	case errors.As(err, &unknown) || errors.As(err, &unknownPtr):
		return fmt.Errorf("%s: its TLS certificate is not signed by the CA given (--tls-ca) or pinned (--tls-fingerprint): give the CA file or fingerprint this manager printed: %w", who, ErrUntrusted)
	case errors.As(err, &host):
		return fmt.Errorf("%s: its TLS certificate is not for host %s (%s): connect by a name or address it names, or give the manager a certificate for this one: %w",
			who, host.Host, names(host.Certificate), ErrUntrusted)
	case errors.As(err, &record):
		return fmt.Errorf("%s does not speak TLS: drop --tls-ca and --tls-fingerprint, or start the manager with TLS: %w", who, ErrUntrusted)
	}
	return err
}

// ErrUntrusted marks errors Explain rewrote: retrying will not help.
var ErrUntrusted = errors.New("manager not trusted")

func names(c *x509.Certificate) string {
	var all []string
	all = append(all, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		all = append(all, ip.String())
	}
	if len(all) == 0 {
		return "it names no host"
	}
	return "it names " + strings.Join(all, ", ")
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile writes through a temporary file, so that a crash leaves the old
// file or the new one.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
