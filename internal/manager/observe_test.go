package manager

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// An observation lands in the first bucket whose bound holds it, or past
// the last.
func TestHistogramObserve(t *testing.T) {
	h := newHistogram([]float64{0.001, 0.1})
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, time.Second} {
		h.observe(d)
	}
	want := Histogram{Buckets: []float64{0.001, 0.1}, Counts: []uint64{2, 1, 1}, Sum: 1.0035, Count: 4}
	if diff := cmp.Diff(want, h, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
		t.Errorf("observe mismatch (-want +got):\n%s", diff)
	}
	c := h.clone()
	c.Counts[0] = 99
	if h.Counts[0] != 2 {
		t.Errorf("clone shares its counts with the loop's histogram")
	}
}
