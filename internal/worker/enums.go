package worker

import (
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/cache"
)

// The wire's enums and the worker's packages' meet here (and in
// resultKind), converted by explicit switches, never numeric casts, so that
// a value added on one side and not mapped fails enums_test.go.

// level turns the wire's cache level into the cache's (unspecified, or
// unknown: workflow).
func level(l pb.CacheLevel) cache.Level {
	switch l {
	case pb.CacheLevel_CACHE_LEVEL_TASK:
		return cache.LevelTask
	case pb.CacheLevel_CACHE_LEVEL_WORKFLOW:
		return cache.LevelWorkflow
	case pb.CacheLevel_CACHE_LEVEL_WORKER:
		return cache.LevelWorker
	case pb.CacheLevel_CACHE_LEVEL_FOREVER:
		return cache.LevelForever
	}
	return cache.LevelWorkflow
}

// protoLevel turns the cache's level into the wire's; an invalid level is
// CACHE_LEVEL_UNSPECIFIED.
func protoLevel(l cache.Level) pb.CacheLevel {
	switch l {
	case cache.LevelTask:
		return pb.CacheLevel_CACHE_LEVEL_TASK
	case cache.LevelWorkflow:
		return pb.CacheLevel_CACHE_LEVEL_WORKFLOW
	case cache.LevelWorker:
		return pb.CacheLevel_CACHE_LEVEL_WORKER
	case cache.LevelForever:
		return pb.CacheLevel_CACHE_LEVEL_FOREVER
	}
	return pb.CacheLevel_CACHE_LEVEL_UNSPECIFIED
}
