package proto

import (
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

func TestMilliCores(t *testing.T) {
	for _, tc := range []struct {
		cores float64
		want  int64
	}{{0, 0}, {1, 1000}, {0.5, 500}, {0.0015, 2}, {2.9999, 3000}, {1.0 / 3, 333}} {
		if got := MilliCores(&pb.Resources{Cores: tc.cores}); got != tc.want {
			t.Errorf("MilliCores(%v cores) = %d, want %d", tc.cores, got, tc.want)
		}
	}
	if got := MilliCores(nil); got != 0 {
		t.Errorf("MilliCores(nil) = %d, want 0", got)
	}
}
