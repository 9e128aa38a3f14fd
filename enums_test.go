package trellis

import (
	"strings"
	"testing"

	pb "trellis/internal/proto/trellisv1"
)

// TestResultKinds checks that every wire kind but UNSPECIFIED maps to a
// distinct API kind and back, and every API kind to a wire kind.
func TestResultKinds(t *testing.T) {
	seen := make(map[ResultKind]pb.ResultKind)
	for n := range pb.ResultKind_name {
		k := pb.ResultKind(n)
		if k == pb.ResultKind_RESULT_KIND_UNSPECIFIED {
			continue
		}
		r := resultKindOf(k)
		if prev, dup := seen[r]; dup {
			t.Errorf("resultKindOf(%v) = %v, as resultKindOf(%v): unmapped or duplicate", k, r, prev)
		}
		seen[r] = k
		if got := protoResultKind(r); got != k {
			t.Errorf("protoResultKind(resultKindOf(%v)) = %v, want %v", k, got, k)
		}
	}
	for k := ResultKind(1); !strings.HasPrefix(k.String(), "kind("); k++ {
		p := protoResultKind(k)
		if p == pb.ResultKind_RESULT_KIND_UNSPECIFIED {
			t.Errorf("protoResultKind(%v) = %v: not mapped", k, p)
		}
		if got := resultKindOf(p); got != k {
			t.Errorf("resultKindOf(protoResultKind(%v)) = %v, want %v", k, got, k)
		}
	}
}

// TestCacheLevels checks that every wire level maps to an API level and
// back, and that the API's levels are all mapped.
func TestCacheLevels(t *testing.T) {
	for n := range pb.CacheLevel_name {
		l := pb.CacheLevel(n)
		if got := protoCacheLevel(cacheLevelOf(l)); got != l {
			t.Errorf("protoCacheLevel(cacheLevelOf(%v)) = %v, want %v", l, got, l)
		}
	}
	for _, l := range []CacheLevel{0, CacheTask, CacheWorkflow, CacheWorker, CacheForever} {
		if got := cacheLevelOf(protoCacheLevel(l)); got != l {
			t.Errorf("cacheLevelOf(protoCacheLevel(%d)) = %d, want %d", l, got, l)
		}
	}
	if n := len(pb.CacheLevel_name); n != 5 {
		t.Errorf("the wire has %d cache levels, the API 4 and unset: map the new one", n)
	}
}
