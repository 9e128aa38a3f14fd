package worker

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The worker's live heap is small (2–4 MB running 256 tasks) and it
// allocates about 10–17 KB per task, so with Go's default (GOGC=100, a
// goal of twice the live heap, 4 MB at least) it collects every few
// hundred tasks, and each collection scans every goroutine's stack (one
// per running attempt): ~10 ms of CPU each,
// measured with GODEBUG=gctrace=1 in `trellis bench capacity` (docs/
// benchmarks.md, "Capacity, tenth part"). A fixed headroom between the
// live heap and the next collection's goal makes collections as rare as
// that many bytes of allocation, whatever the heap holds: the worker
// spends at most headroom bytes more than Go's default would, and exactly
// Go's default once the live heap is larger than headroom.

// DefaultGCHeadroom is the worker's headroom unless told otherwise
// (trellis worker --gc-headroom).
const DefaultGCHeadroom = 64 << 20

// gcTuned is the one tuner of this process: the GC percent is the
// process's, not a worker's.
var gcTuned struct {
	mu       sync.Mutex
	headroom uint64 // 0: not tuning (Go's default, or GOGC's)
	sample   []metrics.Sample
	armed    bool
	before   int // the GC percent before the tuning began, given back by TuneGC(0)
}

// TuneGC keeps about headroom bytes between the live heap and the next
// collection, by setting the GC percent after every collection to
// headroom ÷ live heap (never below 100, Go's default). It does nothing
// when headroom is 0 or GOGC is set in the environment (the user's
// choice stands); it returns whether it tunes. A later call replaces the
// headroom; 0 restores Go's default. It starts no goroutine: a finalizer
// runs after each collection and sets the next percent.
func TuneGC(headroom int64) bool {
	gcTuned.mu.Lock()
	defer gcTuned.mu.Unlock()
	if headroom <= 0 || os.Getenv("GOGC") != "" {
		if gcTuned.headroom != 0 {
			debug.SetGCPercent(gcTuned.before)
		}
		gcTuned.headroom = 0
		return false
	}
	if gcTuned.sample == nil {
		gcTuned.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}
	}
	tuning := gcTuned.headroom != 0
	gcTuned.headroom = uint64(headroom)
	if p := retuneLocked(); !tuning {
		gcTuned.before = p
	}
	if !gcTuned.armed {
		gcTuned.armed = true
		armGCSentinel()
	}
	return true
}

// gcSentinel is garbage from its birth: its finalizer runs after the next
// collection (it holds a pointer, so the tiny allocator, whose blocks
// hold several objects, does not take it).
type gcSentinel struct{ _ *int }

// armGCSentinel makes a sentinel whose finalizer retunes and makes the
// next, until the tuning stops.
func armGCSentinel() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		gcTuned.mu.Lock()
		defer gcTuned.mu.Unlock()
		if gcTuned.headroom == 0 {
			gcTuned.armed = false
			return
		}
		retuneLocked()
		armGCSentinel()
	})
}

// retuneLocked sets the GC percent for the live heap now and returns the
// one it replaced.
func retuneLocked() int {
	metrics.Read(gcTuned.sample)
	var v [3]uint64 // live heap, stacks, globals
	for i, s := range gcTuned.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	return debug.SetGCPercent(gcPercent(gcTuned.headroom, v[0], v[1]+v[2]))
}

// minHeapGoal is the runtime's smallest heap goal at GOGC=100 (4 MB,
// runtime/mgcpacer.go): the goal is never under minHeapGoal × percent/100.
const minHeapGoal = 4 << 20

// gcPercent is the GC percent that puts the next collection at most
// headroom bytes above a live heap of live bytes, with roots bytes of
// stacks and globals: never below 100, Go's default. The runtime's goal
// is live + (live + roots) × percent/100, and never under minHeapGoal ×
// percent/100, so the base is all three, and at least minHeapGoal (both
// terms then stay within headroom; before the first collection the
// figures are 0).
func gcPercent(headroom, live, roots uint64) int {
	base := max(live+roots, minHeapGoal)
	p := headroom / (base / 100) // no overflow: base/100 is at least 41,943
	return int(min(max(p, 100), math.MaxInt32))
}
