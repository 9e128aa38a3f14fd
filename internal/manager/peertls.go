package manager

import (
	"cmp"
	"net"
	"time"

	"trellis/internal/certs"

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

// peerCertificate gives the worker of hello at addr a certificate for the
// file server it announced, signed by Config.PeerCA, for its Welcome: it
// returns the certificate and key in PEM, and the host they name (the one
// its peers will dial). Without a PeerCA it returns nothing.
func (m *Manager) peerCertificate(hello *pb.Hello, addr string) (host string, certPEM, keyPEM []byte, err error) {
	if m.cfg.PeerCA == nil {
		return "", nil, nil, nil
	}
	host, _, err = net.SplitHostPort(fileServerAddr(hello.FileServer, addr))
	if err != nil {
		return "", nil, nil, err
	}
	certPEM, keyPEM, err = m.cfg.PeerCA.IssuePEMFor(host, m.peerCertLife())
	return host, certPEM, keyPEM, err
}

func (m *Manager) peerCertLife() time.Duration {
	return cmp.Or(m.cfg.PeerCertLife, certs.PeerLife)
}

// renewPeerCerts sends a new file server certificate to each worker whose
// certificate has lived half its life: a worker may stay connected longer
// than one lasts, and peers would then refuse its file server. The sessions
// are looked at only when the earliest renewal is due (nextRenew), so an
// idle tick costs nothing per worker.
func (s *state) renewPeerCerts(now time.Time) {
	if s.nextRenew.IsZero() || now.Before(s.nextRenew) {
		return
	}
	s.nextRenew = time.Time{}
	life := s.m.peerCertLife()
	for _, sess := range s.sessions {
		if sess.certRenew.IsZero() {
			continue
		}
		if !now.Before(sess.certRenew) {
			cert, key, err := s.m.cfg.PeerCA.IssuePEMFor(sess.certHost, life)
			if err != nil {
				s.m.log.Warn("renewing a worker's file server certificate (trying again in a minute)", "worker", sess.hello.Name, "err", err)
				sess.certRenew = now.Add(time.Minute)
			} else {
				s.enqueue(sess, &pb.ManagerMessage{Msg: &pb.ManagerMessage_PeerCertificate{PeerCertificate: &pb.PeerCertificate{CertPem: cert, KeyPem: key}}})
				sess.certRenew = now.Add(life / 2)
			}
		}
		s.renewBy(sess.certRenew)
	}
}

// renewBy makes the loop look at the sessions' certificates by t at the
// latest.
func (s *state) renewBy(t time.Time) {
	if !t.IsZero() && (s.nextRenew.IsZero() || t.Before(s.nextRenew)) {
		s.nextRenew = t
	}
}
