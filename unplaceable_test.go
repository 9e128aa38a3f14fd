package trellis

import (
	"testing"
	"time"
)

// TestUnplaceableMs: Task.UnplaceableTimeout on the wire keeps a limit a
// limit (never 0, the manager's default), and any negative one as -1.
func TestUnplaceableMs(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 0},
		{-time.Nanosecond, -1},
		{-time.Hour, -1},
		{time.Nanosecond, 1},
		{1500 * time.Microsecond, 2},
		{2 * time.Second, 2000},
	} {
		if got := unplaceableMs(tc.d); got != tc.want {
			t.Errorf("unplaceableMs(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}
