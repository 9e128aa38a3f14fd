package manager

import (
	"net"

	pb "trellis/internal/proto/trellisv1"
)

// peerScheme is how workers reach each other's file servers: https when
// the manager hands them certificates (Config.PeerCA).
func (m *Manager) peerScheme() string {
	if m.cfg.PeerCA != nil {
		return "https"
	}
	return "http"
}

// peerCertificate puts in w a certificate for the file server the worker of
// hello at addr announced, signed by Config.PeerCA, with the CA; it does
// nothing without one. The host is the one its peers will dial.
func (m *Manager) peerCertificate(w *pb.Welcome, hello *pb.Hello, addr string) error {
	if m.cfg.PeerCA == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(fileServerAddr(hello.FileServer, addr))
	if err != nil {
		return err
	}
	if w.TlsCertPem, w.TlsKeyPem, err = m.cfg.PeerCA.IssuePEM(host); err != nil {
		return err
	}
	w.TlsCaPem = m.cfg.PeerCA.PEM()
	return nil
}
