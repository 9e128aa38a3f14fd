package worker

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	cases := []struct {
		name           string
		headroom, live uint64
		want           int
	}{
		{"small heap: the goal is headroom above it", 64 << 20, 4 << 20, 1600},
		{"no figure yet: taken as 1 MB", 64 << 20, 0, 6400},
		{"heap over headroom: Go's default", 64 << 20, 256 << 20, 100},
		{"heap at headroom: Go's default", 64 << 20, 64 << 20, 100},
		{"huge headroom: capped", 1 << 62, 1 << 20, 1<<31 - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercent(tc.headroom, tc.live); got != tc.want {
				t.Errorf("gcPercent(%d, %d) = %d, want %d", tc.headroom, tc.live, got, tc.want)
			}
		})
	}
}

// currentGCPercent reads the GC percent (setting it back at once).
func currentGCPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
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
	runtime.GC()
	runtime.GC()
	if p := currentGCPercent(); p != 100 {
		t.Errorf("GC percent after TuneGC(0) and two collections = %d, want 100 (the sentinel stops)", p)
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
