package manager

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"trellis/internal/certs"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// A worker's Welcome brings its file server's certificate, signed by the
// cluster CA for the host its peers dial; once half of its life has passed,
// the manager sends a new one, signed by the same CA, that ends later.
func TestPeerCertificateRenewed(t *testing.T) {
	ca, err := certs.CA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const life = 2 * time.Second
	m, ctx := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s", PeerCA: ca, PeerCertLife: life})

	w := m.ConnectWorker(ctx)
	hello := &pb.Hello{Name: "w", Protocol: proto.Protocol, FileServer: "127.0.0.1:9999",
		Resources: &pb.Resources{Cores: 1, MemoryMb: 1000, DiskMb: 1000}}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	first, err := w.Receive()
	if err != nil || first.GetWelcome() == nil {
		t.Fatalf("first message %v, %v; want a welcome", first, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	verified := func(what string, certPEM []byte) *x509.Certificate {
		t.Helper()
		block, _ := pem.Decode(certPEM)
		if block == nil {
			t.Fatalf("%s: no PEM", what)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
			t.Fatalf("%s does not verify for 127.0.0.1 with the cluster CA: %v", what, err)
		}
		return c
	}
	welcomed := verified("the welcome's certificate", first.GetWelcome().TlsCertPem)
	renewedc := make(chan *pb.PeerCertificate, 1)
	go func() { // exits when the stream ends (the test's end) or a renewal came
		for {
			msg, err := w.Receive()
			if err != nil {
				return
			}
			msgs := []*pb.ManagerMessage{msg}
			if b := msg.GetBatch(); b != nil {
				msgs = b.Msgs
			}
			for _, msg := range msgs {
				if c := msg.GetPeerCertificate(); c != nil {
					renewedc <- c
					return
				}
			}
		}
	}()
	var renewed *pb.PeerCertificate
	select {
	case renewed = <-renewedc:
	case <-time.After(10 * time.Second):
		t.Fatalf("no PeerCertificate in 10 s for a certificate of %v", life)
	}
	got := verified("the renewed certificate", renewed.CertPem)
	if !got.NotAfter.After(welcomed.NotAfter) {
		t.Errorf("the renewed certificate ends %v, not after the welcome's %v", got.NotAfter, welcomed.NotAfter)
	}
}
