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

// The inverses of the conversions, for the round trips above: the client
// never converts these ways.

// protoResultKind turns the API's result kind into the wire's; an invalid
// kind is RESULT_KIND_UNSPECIFIED.
func protoResultKind(k ResultKind) pb.ResultKind {
	switch k {
	case Success:
		return pb.ResultKind_RESULT_KIND_SUCCESS
	case Failed:
		return pb.ResultKind_RESULT_KIND_FAILED
	case TimedOut:
		return pb.ResultKind_RESULT_KIND_TIMED_OUT
	case ResourceExceeded:
		return pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED
	case InputMissing:
		return pb.ResultKind_RESULT_KIND_INPUT_MISSING
	case WorkerLost:
		return pb.ResultKind_RESULT_KIND_WORKER_LOST
	case Cancelled:
		return pb.ResultKind_RESULT_KIND_CANCELLED
	}
	return pb.ResultKind_RESULT_KIND_UNSPECIFIED
}

// cacheLevelOf turns the wire's cache level into the API's (unspecified:
// 0, the default).
func cacheLevelOf(l pb.CacheLevel) CacheLevel {
	switch l {
	case pb.CacheLevel_CACHE_LEVEL_TASK:
		return CacheTask
	case pb.CacheLevel_CACHE_LEVEL_WORKFLOW:
		return CacheWorkflow
	case pb.CacheLevel_CACHE_LEVEL_WORKER:
		return CacheWorker
	case pb.CacheLevel_CACHE_LEVEL_FOREVER:
		return CacheForever
	}
	return 0
}

// TestEffectsAndVerdicts checks that every wire value of Effects and
// Verdict (but VERDICT_UNSPECIFIED) has an API value that maps to it.
func TestEffectsAndVerdicts(t *testing.T) {
	got := map[pb.Effects]bool{}
	for _, e := range []Effects{EffectsNone, EffectsIdempotent, EffectsAtMostOnce} {
		got[protoEffects(e)] = true
	}
	for n := range pb.Effects_name {
		if !got[pb.Effects(n)] {
			t.Errorf("wire effects %v: no API value maps to it", pb.Effects(n))
		}
	}
	verdicts := map[pb.Verdict]bool{}
	for _, v := range []Verdict{VerdictDone, VerdictFailed, VerdictRerun} {
		verdicts[protoVerdict(v)] = true
	}
	for n := range pb.Verdict_name {
		if v := pb.Verdict(n); v != pb.Verdict_VERDICT_UNSPECIFIED && !verdicts[v] {
			t.Errorf("wire verdict %v: no API value maps to it", v)
		}
	}
}

// TestKeeps checks that every wire keep is made by one API keep.
func TestKeeps(t *testing.T) {
	seen := make(map[pb.Keep]string)
	for _, k := range []Keep{{}, Lineage(), Replicate(2), Checkpoint(CheckpointSync), Checkpoint(CheckpointAsync)} {
		p := protoKeep(k)
		if prev, dup := seen[p]; dup {
			t.Errorf("protoKeep(%v) = %v, as protoKeep(%v)", k, p, prev)
		}
		seen[p] = k.String()
	}
	if len(seen) != len(pb.Keep_name) {
		t.Errorf("the API makes %d wire keeps, the wire has %d: map the new one", len(seen), len(pb.Keep_name))
	}
}
