package manager

import (
	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
)

// The wire's enums and the core's meet here, converted by explicit
// switches (never numeric casts), so that a value added on one side and not
// mapped fails enums_test.go.

// coreKind turns the kind a worker reports into the core's. An
// unspecified or unknown kind is a failure.
func coreKind(k pb.ResultKind) core.Kind {
	switch k {
	case pb.ResultKind_RESULT_KIND_SUCCESS:
		return core.Success
	case pb.ResultKind_RESULT_KIND_FAILED:
		return core.Failed
	case pb.ResultKind_RESULT_KIND_TIMED_OUT:
		return core.TimedOut
	case pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED:
		return core.ResourceExceeded
	case pb.ResultKind_RESULT_KIND_INPUT_MISSING:
		return core.InputMissing
	case pb.ResultKind_RESULT_KIND_WORKER_LOST:
		return core.WorkerLost
	case pb.ResultKind_RESULT_KIND_CANCELLED:
		return core.Cancelled
	}
	return core.Failed
}

// protoKind turns the core's kind into the wire's; an invalid kind is
// RESULT_KIND_UNSPECIFIED.
func protoKind(k core.Kind) pb.ResultKind {
	switch k {
	case core.Success:
		return pb.ResultKind_RESULT_KIND_SUCCESS
	case core.Failed:
		return pb.ResultKind_RESULT_KIND_FAILED
	case core.TimedOut:
		return pb.ResultKind_RESULT_KIND_TIMED_OUT
	case core.ResourceExceeded:
		return pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED
	case core.InputMissing:
		return pb.ResultKind_RESULT_KIND_INPUT_MISSING
	case core.WorkerLost:
		return pb.ResultKind_RESULT_KIND_WORKER_LOST
	case core.Cancelled:
		return pb.ResultKind_RESULT_KIND_CANCELLED
	}
	return pb.ResultKind_RESULT_KIND_UNSPECIFIED
}

// coreLevel turns a declared file's cache level into the core's.
// UNSPECIFIED (and an unknown level) is workflow, as the wire says.
func coreLevel(l pb.CacheLevel) core.Level {
	switch l {
	case pb.CacheLevel_CACHE_LEVEL_TASK:
		return core.LevelTask
	case pb.CacheLevel_CACHE_LEVEL_WORKER:
		return core.LevelWorker
	case pb.CacheLevel_CACHE_LEVEL_FOREVER:
		return core.LevelForever
	}
	return core.LevelWorkflow
}
