package worker

import (
	"strings"
	"testing"

	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/cache"
	"trellis/internal/worker/sandbox"
)

// TestCacheLevels checks that every wire level maps to a cache level and
// back (UNSPECIFIED to workflow), and every cache level to a wire level.
func TestCacheLevels(t *testing.T) {
	for n := range pb.CacheLevel_name {
		l := pb.CacheLevel(n)
		c := level(l)
		if l == pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED {
			if c != cache.LevelWorkflow {
				t.Errorf("level(%v) = %v, want workflow", l, c)
			}
			continue
		}
		if got := protoLevel(c); got != l {
			t.Errorf("protoLevel(level(%v)) = %v, want %v", l, got, l)
		}
	}
	// Every cache level: from 1 until String says the level is unknown.
	for l := cache.Level(1); !strings.HasPrefix(l.String(), "level("); l++ {
		p := protoLevel(l)
		if p == pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED {
			t.Errorf("protoLevel(%v) = %v: not mapped", l, p)
		}
		if got := level(p); got != l {
			t.Errorf("level(protoLevel(%v)) = %v, want %v", l, got, l)
		}
	}
}

// TestResultKinds checks the wire kind of every sandbox kind.
func TestResultKinds(t *testing.T) {
	want := map[sandbox.Kind]pb.ResultKind{
		sandbox.Success:        pb.ResultKind_RESULT_KIND_SUCCESS,
		sandbox.Failed:         pb.ResultKind_RESULT_KIND_FAILED,
		sandbox.TimedOut:       pb.ResultKind_RESULT_KIND_TIMED_OUT,
		sandbox.MemoryExceeded: pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED,
		sandbox.DiskExceeded:   pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED,
		sandbox.Cancelled:      pb.ResultKind_RESULT_KIND_CANCELLED,
	}
	n := 0
	for k := sandbox.Kind(1); !strings.HasPrefix(k.String(), "Kind("); k++ {
		n++
		w, ok := want[k]
		if !ok {
			t.Errorf("sandbox kind %v is new: map it in resultKind and in this test", k)
			continue
		}
		if got := resultKind(k); got != w {
			t.Errorf("resultKind(%v) = %v, want %v", k, got, w)
		}
	}
	if n != len(want) {
		t.Errorf("%d sandbox kinds, want %d", n, len(want))
	}
}
