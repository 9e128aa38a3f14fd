package trellis

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestShares: a Submit's calls split over leases in proportion to their
// slots: equal leases take equal shares (within one), and every call is in
// one share.
func TestShares(t *testing.T) {
	for _, tc := range []struct {
		name  string
		n     int
		slots []int32
		want  []int
	}{
		{"four equal leases", 20000, []int32{64, 64, 64, 64}, []int{5000, 5000, 5000, 5000}},
		{"four equal leases, a remainder", 10003, []int32{64, 64, 64, 64}, []int{2501, 2501, 2501, 2500}},
		{"by slots", 300, []int32{64, 128}, []int{100, 200}},
		{"fewer calls than leases", 2, []int32{64, 64, 64}, []int{1, 1, 0}},
		{"one lease", 7, []int32{64}, []int{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, shares(tc.n, tc.slots)); diff != "" {
				t.Errorf("shares(%d, %v) mismatch (-want +got):\n%s", tc.n, tc.slots, diff)
			}
		})
	}
}
