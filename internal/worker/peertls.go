package worker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"trellis/internal/certs"
	pb "trellis/internal/proto/trellisv1"
)

// peerTLS is what a worker of a cluster over TLS gets from the manager in
// each Welcome: its file server's certificate and the cluster CA that peers'
// certificates must verify against. Written by the session, read by
// handshakes; atomic, as the file server serves while sessions come and go.
type peerTLS struct {
	cert  atomic.Pointer[tls.Certificate]
	roots atomic.Pointer[x509.CertPool]
}

// usePeerTLS makes the file server speak TLS only, with the certificate the
// manager gives, and fetches from peers verify theirs against the CA it
// gives. Until the first Welcome, handshakes fail.
func (w *Worker) usePeerTLS() {
	w.server.TLSConfig = certs.FileServer(w.peerTLS.cert.Load)
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		DialTLSContext:      certs.DialPeer(w.peerTLS.roots.Load),
	}}
	p := *w.fetcher
	p.HTTP = client
	w.peers = &p
}

// takePeerTLS keeps the certificate and CA of a Welcome, if it has them.
func (w *Worker) takePeerTLS(welcome *pb.Welcome) {
	if w.peers == nil { // not TLS; and the server's TLSConfig is http's to write once it serves
		return
	}
	if len(welcome.TlsCertPem) == 0 {
		w.log.Warn("the manager gave no certificate for the file server: peers cannot fetch from this worker over TLS")
		return
	}
	pair, err := tls.X509KeyPair(welcome.TlsCertPem, welcome.TlsKeyPem)
	if err != nil {
		w.log.Warn("the manager's certificate for the file server", "err", err)
		return
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(welcome.TlsCaPem) {
		w.log.Warn("the manager's cluster CA holds no PEM certificate: fetches from peers will fail")
		return
	}
	w.peerTLS.cert.Store(&pair)
	w.peerTLS.roots.Store(pool)
}

// renewPeerCert serves the certificate the manager renewed from now on:
// handshakes under way keep the one they began with.
func (w *Worker) renewPeerCert(c *pb.PeerCertificate) {
	if w.peers == nil {
		return // not TLS
	}
	pair, err := tls.X509KeyPair(c.CertPem, c.KeyPem)
	if err != nil {
		w.log.Warn("the manager's renewed certificate for the file server (the current one stays)", "err", err)
		return
	}
	w.peerTLS.cert.Store(&pair)
	w.log.Info("file server certificate renewed by the manager")
}

// dialFilesTLS dials https for the worker's file client, which fetches from
// the manager (verified as the worker's stream is, with Config.TLS) and
// from URL origins (verified against the system's roots, as without TLS).
func (w *Worker) dialFilesTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	cfg := &tls.Config{}
	if addr == w.cfg.Manager {
		cfg = w.cfg.TLS.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	cfg.NextProtos = []string{"http/1.1"}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	return d.DialContext(ctx, network, addr)
}
