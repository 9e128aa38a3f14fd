package bench

import (
	"context"
	"testing"
)

// The peer transfer over TLS moves the file, digest checked, with the
// certificate the cluster CA signed; a plain one too.
func TestPeerTransferTLS(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		peer, cp, err := peerTransfer(context.Background(), 4, withTLS)
		if err != nil {
			t.Fatalf("TLS %v: %v", withTLS, err)
		}
		if peer <= 0 || cp <= 0 {
			t.Errorf("TLS %v: peer %v MB/s, cp %v MB/s; want both measured", withTLS, peer, cp)
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
