package core_test

import (
	"slices"
	"testing"

	"trellis/internal/core"
)

func release(w core.WorkerID, fs ...core.FileID) core.Release {
	return core.Release{Worker: w, Files: fs}
}

// TestPins: a worker may evict only the copies the core released, and a
// task placed on a worker claims a released copy before it runs (pins.go),
// so that no task is sent to run with an input its worker evicted.
func TestPins(t *testing.T) {
	one := res(1000, 100)
	origin := core.Source{Kind: core.FromOrigin}
	cache := core.Source{Kind: core.FromCache}
	evicted := core.TransferDone{Transfer: 2, SourceFault: true, Why: "evicted before the claim"}
	// A URL fetched for task 1 is held while task 1 stays, and released
	// when it ends (its level keeps it on the worker).
	released := []step{
		{join(1, res(1000, 1000)), nil},
		{declared("a", core.Origin, core.LevelWorker, 30), nil},
		{submit(files(task(1, one), ids(30), nil)), acts(fetch(1, 1, 30, origin, 0))},
		{fetched(1, 100), acts(dispatch(1, 1, 1))},
		{ok(1, 1, 1), acts(success(1, 1, 1), release(1, 30))},
	}
	runScenarios(t, []scenario{
		{
			name:  "a copy fetched for a task is released when the task ends",
			steps: released,
			workers: []core.WorkerInfo{{ID: 1, Total: res(1000, 1000), Free: res(1000, 1000), CacheBytes: 100, CacheFiles: 1,
				CacheReleased: 100, PeakCache: 100, TasksDone: 1}},
			pruning: true,
		},
		{
			// Task 2 reads the released copy: it is claimed (a Fetch from
			// the worker's own cache, which holds it again) before task 2
			// runs; placement still prefers the worker that has it.
			name: "a released copy is claimed before a task runs with it",
			steps: slices.Concat(released, []step{
				{join(2, res(2000, 1000)), nil},
				{submit(files(task(2, one), ids(30), nil)), acts(fetch(2, 1, 30, cache, 100))},
				{fetched(2, 100), acts(dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), release(1, 30))},
			}),
		},
		{
			// The worker evicted the released copy before the claim came:
			// the claim fails, and the file is fetched from its origin
			// again. The task never runs without it.
			name: "a claim of an evicted copy stages the file anew",
			steps: slices.Concat(released, []step{
				{submit(files(task(2, one), ids(30), nil)), acts(fetch(2, 1, 30, cache, 100))},
				{evicted, acts(fetch(3, 1, 30, origin, 100))},
				{core.FilesDropped{Worker: 1, Files: ids(30)}, nil}, // its report, after the claim's: nothing to do
				{fetched(3, 100), acts(dispatch(2, 1, 1))},
			}),
		},
		{
			// The eviction is reported first (as workers do): the claim's
			// failure then only starts the new fetch.
			name: "a claim of an evicted copy reported dropped first",
			steps: slices.Concat(released, []step{
				{submit(files(task(2, one), ids(30), nil)), acts(fetch(2, 1, 30, cache, 100))},
				{core.FilesDropped{Worker: 1, Files: ids(30)}, nil},
				{evicted, acts(fetch(3, 1, 30, origin, 100))},
				{fetched(3, 100), acts(dispatch(2, 1, 1))},
			}),
		},
		{
			// Two tasks on one worker read 30: it is released only when
			// the second ends.
			name: "no Release while a task placed there reads the copy",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{declared("a", core.Origin, core.LevelWorker, 30), nil},
				{submit(files(task(1, one), ids(30), nil), files(task(2, one), ids(30), nil)), acts(fetch(1, 1, 30, origin, 0))},
				{fetched(1, 100), acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), release(1, 30))},
			},
		},
		{
			// Task 1 is cancelled while its input comes: the copy that
			// lands is released at once.
			name: "a copy that lands for no task is released",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{declared("a", core.Origin, core.LevelWorker, 30), nil},
				{submit(files(task(1, one), ids(30), nil)), acts(fetch(1, 1, 30, origin, 0))},
				{core.CancelTask{Task: 1}, acts(done(1, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
				{fetched(1, 100), acts(release(1, 30))},
			},
		},
		{
			// A task's output stays where it was written until the core
			// unlinks it: the worker never evicts it, so a reader there
			// runs at once, and nothing is released.
			name: "an output is never released",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1))},
				{submit(files(task(3, one), ids(10), nil)), acts(dispatch(3, 1, 1))},
			},
		},
		{
			// Worker 2's copy of temp file 10 is the last one once worker
			// 1 drops its own; released after its reader, it was evicted
			// when task 4 claims it: the producer runs again.
			name: "a claim of the evicted last copy re-runs the producer",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{fetched(1, 5000), acts(dispatch(2, 1, 2))},
				{ok(2, 1, 2), acts(success(2, 1, 2), release(2, 10))},
				{core.FilesDropped{Worker: 1, Files: ids(10)}, nil},
				{ok(3, 1, 1), acts(success(3, 1, 1))},
				{submit(files(task(4, one), ids(10), nil)), acts(fetch(2, 2, 10, cache, 5000))},
				{evicted, acts(core.Rerun{Task: 1, File: 10}, dispatch(1, 2, 2))},
				{kept(1, 2, 2, 5000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, dispatch(4, 1, 2))},
			},
		},
	})
}
