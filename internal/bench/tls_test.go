package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis/internal/certs"
)

// The peer transfer over TLS moves the file, digest checked, with the
// certificate the cluster CA signed; a plain one too.
func TestPeerTransferTLS(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		peer, cp, err := peerTransfer(context.Background(), 4, withTLS)
		if err != nil {
			t.Fatalf("TLS %v: %v", withTLS, err)
		}
		if peer.MBPerS <= 0 || peer.CPUPerGB <= 0 || cp <= 0 {
			t.Errorf("TLS %v: peer %+v, cp %v MB/s; want all measured", withTLS, peer, cp)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v; want %v", c.in, got, c.want)
		}
	}
}

// The two halves of `bench peer` move the file between them, over TLS
// with the CA that serve made; a fetch that does not trust that CA fails.
func TestPeerServeFetch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	caDir := filepath.Join(t.TempDir(), "tls")
	pr, pw := io.Pipe()
	served := make(chan error, 1)
	go func() { // exits when ctx is cancelled at the end of the test
		served <- PeerServe(ctx, "127.0.0.1:0", 2, caDir, pw)
		pw.Close()
	}()
	var rawURL, digest string
	var size int64
	if _, err := fmt.Fscanln(pr, &rawURL, &size, &digest); err != nil {
		t.Fatalf("reading serve's line: %v", err)
	}
	go io.Copy(io.Discard, pr) // exits when serve ends and closes pw
	res, err := PeerFetch(ctx, rawURL, size, digest, filepath.Join(caDir, certs.CAFile), "none")
	if err != nil {
		t.Fatal(err)
	}
	if !res.TLS || res.Bytes != 2<<20 || res.MBPerS <= 0 || res.CPUPerGB <= 0 {
		t.Errorf("got %+v; want TLS, %d bytes, a rate and its CPU", res, 2<<20)
	}
	if _, err := PeerFetch(ctx, rawURL, size, digest, "", ""); err == nil {
		t.Error("a plain fetch from a TLS server succeeded")
	}
	other, err := certs.CA(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	otherCA := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherCA, other.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PeerFetch(ctx, rawURL, size, digest, otherCA, ""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a fetch trusting another CA: %v; want a certificate error", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}
