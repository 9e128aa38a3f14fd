package worker

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	cases := []struct {
		name                  string
		headroom, live, roots uint64
		want                  int
	}{
		{"heap and roots: the goal is headroom above the heap", 64 << 20, 6 << 20, 2 << 20, 800},
		{"small heap: taken as the runtime's 4 MB floor, whose goal stays within headroom", 64 << 20, 2 << 20, 1 << 20, 1600},
		{"no figure yet: taken as 4 MB", 64 << 20, 0, 0, 1600},
		{"heap over headroom: Go's default", 64 << 20, 256 << 20, 0, 100},
		{"heap at headroom: Go's default", 64 << 20, 64 << 20, 0, 100},
		{"huge headroom: capped", 1 << 62, 1 << 20, 0, 1<<31 - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := gcPercent(tc.headroom, tc.live, tc.roots)
			if got != tc.want {
				t.Errorf("gcPercent(%d, %d, %d) = %d, want %d", tc.headroom, tc.live, tc.roots, got, tc.want)
			}
			// The runtime's goal with this percent (runtime/mgcpacer.go).
			goal := max(tc.live+(tc.live+tc.roots)*uint64(got)/100, minHeapGoal*uint64(got)/100)
			if got > 100 && goal > tc.live+tc.headroom {
				t.Errorf("goal %d MB at %d%%, over the live heap %d MB + headroom %d MB", goal>>20, got, tc.live>>20, tc.headroom>>20)
			}
		})
	}
}

// currentGCPercent reads the GC percent without setting it (a set and a
// set back could undo a retune made between them).
func currentGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// sentinelArmed reports whether a sentinel waits for a collection.
func sentinelArmed() bool {
	gcTuned.mu.Lock()
	defer gcTuned.mu.Unlock()
	return gcTuned.armed
}

// TestTuneGC: the percent is set at once and again after each collection
// (the sentinel's finalizer), and TuneGC(0) gives Go's default back.
func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Cleanup(func() { TuneGC(0) })
	if !TuneGC(1 << 40) {
		t.Fatal("TuneGC(1 TB) = false with GOGC unset, want true")
	}
	if p := currentGCPercent(); p <= 100 {
		t.Fatalf("GC percent after TuneGC(1 TB) = %d, want over 100", p)
	}
	debug.SetGCPercent(100) // as if something reset it: the next collection retunes
	deadline := time.Now().Add(10 * time.Second)
	for currentGCPercent() == 100 {
		if time.Now().After(deadline) {
			t.Fatal("GC percent still 100 10s after collections, want it retuned by the sentinel")
		}
		runtime.GC()
		time.Sleep(time.Millisecond) // the finalizer runs on its own goroutine
	}
	if TuneGC(0) {
		t.Error("TuneGC(0) = true, want false")
	}
	if p := currentGCPercent(); p != 100 {
		t.Errorf("GC percent after TuneGC(0) = %d, want 100", p)
	}
	for sentinelArmed() { // the sentinel stops at the next collection
		if time.Now().After(deadline) {
			t.Fatal("a sentinel is still armed 10s after TuneGC(0) and collections, want none")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if p := currentGCPercent(); p != 100 {
		t.Errorf("GC percent after TuneGC(0) and collections = %d, want 100", p)
	}
}

func TestTuneGCLeavesGOGC(t *testing.T) {
	t.Setenv("GOGC", "200")
	before := currentGCPercent()
	if TuneGC(64 << 20) {
		t.Error("TuneGC = true with GOGC=200 set, want false: the user's choice stands")
	}
	if p := currentGCPercent(); p != before {
		t.Errorf("GC percent = %d after TuneGC with GOGC set, want %d unchanged", p, before)
	}
}
