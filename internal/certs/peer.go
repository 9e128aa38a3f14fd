package certs

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Authority is a CA that signs the certificates of workers' file servers.
type Authority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CA loads the cluster CA kept in dir, making it first if dir has none.
func CA(dir string) (*Authority, error) {
	cert, key, err := loadOrMakeCA(dir)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// PEM is the CA's certificate in PEM.
func (a *Authority) PEM() []byte { return pemCert(a.Cert.Raw) }

// peerLife is how long a file server's certificate lasts; a worker gets a
// new one each time it joins.
const peerLife = 30 * 24 * time.Hour

// IssuePEM signs a file server's certificate for host and returns it and its
// key in PEM.
func (a *Authority) IssuePEM(host string) (certPEM, keyPEM []byte, err error) {
	der, key, err := Issue(a.Cert, a.Key, []string{host}, time.Now().Add(-time.Hour), time.Now().Add(peerLife))
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemCert(der), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// ErrNoCertificate is a file server's answer to a handshake before the
// manager gave it a certificate.
var ErrNoCertificate = errors.New("no certificate from the manager yet")

// FileServer is the TLS configuration of a worker's file server, serving
// the certificate that cert returns (nil until the manager gave one).
func FileServer(cert func() *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return nil, ErrNoCertificate
		},
	}
}

// Peers is the TLS configuration of a worker fetching from its peers: a
// peer's certificate must be signed by the CA that roots returns (nil until
// the manager gave it) and name the address dialled.
func Peers(roots func() *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The roots come later, from the manager; the usual checks
		// follow in VerifyConnection.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			pool := roots()
			if pool == nil {
				return errors.New("no cluster CA from the manager yet to verify the peer with")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: pool, Intermediates: inter}); err != nil {
				return fmt.Errorf("peer's TLS certificate: %w", err)
			}
			return nil
		},
	}
}
