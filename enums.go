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
