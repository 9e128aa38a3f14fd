package trellis

import pb "trellis/internal/proto/trellisv1"

// The wire's enums and the public API's meet here, converted by explicit
// switches (never numeric casts), so that a value added on one side and not
// mapped fails enums_test.go.

// resultKindOf turns the wire's result kind into the API's; unspecified or
// unknown is Failed.
func resultKindOf(k pb.ResultKind) ResultKind {
	switch k {
	case pb.ResultKind_RESULT_KIND_SUCCESS:
		return Success
	case pb.ResultKind_RESULT_KIND_FAILED:
		return Failed
	case pb.ResultKind_RESULT_KIND_TIMED_OUT:
		return TimedOut
	case pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED:
		return ResourceExceeded
	case pb.ResultKind_RESULT_KIND_INPUT_MISSING:
		return InputMissing
	case pb.ResultKind_RESULT_KIND_WORKER_LOST:
		return WorkerLost
	case pb.ResultKind_RESULT_KIND_CANCELLED:
		return Cancelled
	}
	return Failed
}

// protoEffects turns the API's effects into the wire's; unknown values
// are EffectsNone's.
func protoEffects(e Effects) pb.Effects {
	switch e {
	case EffectsIdempotent:
		return pb.Effects_EFFECTS_IDEMPOTENT
	case EffectsAtMostOnce:
		return pb.Effects_EFFECTS_AT_MOST_ONCE
	}
	return pb.Effects_EFFECTS_NONE
}

// protoKeep turns the API's keep into the wire's.
func protoKeep(k Keep) pb.Keep {
	switch k.how {
	case keepLineage:
		return pb.Keep_KEEP_LINEAGE
	case keepReplicate:
		return pb.Keep_KEEP_REPLICATE
	case keepCheckpointSync:
		return pb.Keep_KEEP_CHECKPOINT_SYNC
	case keepCheckpointAsync:
		return pb.Keep_KEEP_CHECKPOINT_ASYNC
	}
	return pb.Keep_KEEP_DEFAULT
}

// protoVerdict turns the API's verdict into the wire's; unknown values
// are unspecified, which the manager refuses.
func protoVerdict(v Verdict) pb.Verdict {
	switch v {
	case VerdictDone:
		return pb.Verdict_VERDICT_DONE
	case VerdictFailed:
		return pb.Verdict_VERDICT_FAILED
	case VerdictRerun:
		return pb.Verdict_VERDICT_RERUN
	}
	return pb.Verdict_VERDICT_UNSPECIFIED
}

// protoCacheLevel turns the API's cache level into the wire's; 0 (not set)
// is CACHE_LEVEL_UNSPECIFIED, which workers read as CacheWorkflow.
func protoCacheLevel(l CacheLevel) pb.CacheLevel {
	switch l {
	case CacheTask:
		return pb.CacheLevel_CACHE_LEVEL_TASK
	case CacheWorkflow:
		return pb.CacheLevel_CACHE_LEVEL_WORKFLOW
	case CacheWorker:
		return pb.CacheLevel_CACHE_LEVEL_WORKER
	case CacheForever:
		return pb.CacheLevel_CACHE_LEVEL_FOREVER
	}
	return pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED
}
