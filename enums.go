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
