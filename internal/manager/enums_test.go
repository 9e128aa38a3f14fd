package manager

import (
	"strings"
	"testing"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// TestResultKinds checks that every wire kind but UNSPECIFIED maps to a
// distinct core kind and back, and every core kind to a wire kind.
func TestResultKinds(t *testing.T) {
	seen := make(map[core.Kind]pb.ResultKind)
	for n := range pb.ResultKind_name {
		k := pb.ResultKind(n)
		c := coreKind(k)
		if k == pb.ResultKind_RESULT_KIND_UNSPECIFIED {
			if c != core.Failed {
				t.Errorf("coreKind(%v) = %v, want failed", k, c)
			}
			continue
		}
		if prev, dup := seen[c]; dup {
			t.Errorf("coreKind(%v) = %v, as coreKind(%v): unmapped or duplicate", k, c, prev)
		}
		seen[c] = k
		if got := protoKind(c); got != k {
			t.Errorf("protoKind(coreKind(%v)) = %v, want %v", k, got, k)
		}
	}
	// Every core kind: from 1 until String says the kind is unknown.
	for k := core.Kind(1); !strings.HasPrefix(k.String(), "kind("); k++ {
		p := protoKind(k)
		if p == pb.ResultKind_RESULT_KIND_UNSPECIFIED {
			t.Errorf("protoKind(%v) = %v: not mapped", k, p)
		}
		if got := coreKind(p); got != k {
			t.Errorf("coreKind(protoKind(%v)) = %v, want %v", k, got, k)
		}
	}
	if got := coreKind(pb.ResultKind(1000)); got != core.Failed {
		t.Errorf("coreKind(1000) = %v, want failed", got)
	}
}

// TestCacheLevels checks that every wire level maps to a distinct core
// level, UNSPECIFIED and WORKFLOW both to workflow.
func TestCacheLevels(t *testing.T) {
	seen := make(map[core.Level]pb.CacheLevel)
	for n := range pb.CacheLevel_name {
		l := pb.CacheLevel(n)
		c := coreLevel(l)
		if l == pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED {
			if c != core.LevelWorkflow {
				t.Errorf("coreLevel(%v) = %v, want workflow (%v)", l, c, core.LevelWorkflow)
			}
			continue
		}
		if prev, dup := seen[c]; dup {
			t.Errorf("coreLevel(%v) = %v, as coreLevel(%v): unmapped or duplicate", l, c, prev)
		}
		seen[c] = l
	}
	if len(seen) != int(core.LevelForever) {
		t.Errorf("wire levels map to %d core levels, want %d", len(seen), core.LevelForever)
	}
}
