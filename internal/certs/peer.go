package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
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

// PeerLife is how long a file server's certificate lasts. A worker gets one
// each time it joins, and a new one from its manager when half of it has
// passed.
const PeerLife = 30 * 24 * time.Hour

// IssuePEM signs a file server's certificate for host, valid for PeerLife,
// and returns it and its key in PEM.
func (a *Authority) IssuePEM(host string) (certPEM, keyPEM []byte, err error) {
	return a.IssuePEMFor(host, PeerLife)
}

// IssuePEMFor is IssuePEM for a certificate that lasts life.
func (a *Authority) IssuePEMFor(host string, life time.Duration) (certPEM, keyPEM []byte, err error) {
	der, key, err := Issue(a.Cert, a.Key, []string{host}, time.Now().Add(-time.Hour), time.Now().Add(life))
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

// DialPeer is an http.Transport's DialTLSContext for a worker fetching from
// its peers: a peer's certificate must be signed by the CA that roots
// returns (nil until the manager gave it) and name the address dialled.
// It dials rather than configures, as the host to check must be bound per
// connection (a handshake's ServerName is empty for an IP address).
func DialPeer(roots func() *x509.CertPool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		pool := roots()
		if pool == nil {
			return nil, errors.New("no cluster CA from the manager yet to verify the peer with")
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
			Config: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: host, NextProtos: []string{"http/1.1"}}}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", addr, err)
		}
		return c, nil
	}
}
