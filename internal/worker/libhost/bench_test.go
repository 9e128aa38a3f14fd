package libhost

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCallSequential measures one call at a time to a trivial function
// of a Go SDK library: the round trip through both processes.
func BenchmarkCallSequential(b *testing.B) {
	h := start(b, helperSpec(b, "ok"))
	ctx := context.Background()
	args := []byte(`[1,2]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Call(ctx, "noop", args, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallAsync measures throughput with many concurrent callers and 4
// slots: frames are batched in both directions.
func BenchmarkCallAsync(b *testing.B) {
	spec := helperSpec(b, "ok")
	spec.Slots = 4
	h := start(b, spec)
	ctx := context.Background()
	args := []byte(`[1,2]`)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Call(ctx, "noop", args, time.Minute); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// TestCallLatency reports (with -v) the p50 and p99 round trip of sequential
// calls, and the throughput of concurrent ones. It asserts nothing about
// speed: the race detector and a loaded machine make numbers meaningless.
func TestCallLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	spec := helperSpec(t, "ok")
	spec.Slots = 4
	h := start(t, spec)
	ctx := context.Background()
	args := []byte(`[1,2]`)
	const n = 2000
	for range 100 { // warm up
		if _, err := h.Call(ctx, "noop", args, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	lat := make([]time.Duration, n)
	for i := range lat {
		start := time.Now()
		if _, err := h.Call(ctx, "noop", args, time.Minute); err != nil {
			t.Fatal(err)
		}
		lat[i] = time.Since(start)
	}
	slices.Sort(lat)
	t.Logf("sequential: p50 %v, p99 %v, max %v over %d calls", lat[n/2], lat[n*99/100], lat[n-1], n)

	const callers, perCaller = 16, 1000
	var wg sync.WaitGroup
	var failed atomic.Int32
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for range perCaller {
				if _, err := h.Call(ctx, "noop", args, time.Minute); err != nil {
					failed.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d callers failed", failed.Load())
	}
	d := time.Since(start)
	t.Logf("async (%d callers, 4 slots): %.0f calls/s", callers, callers*perCaller/d.Seconds())
}
