package core_test

import (
	"testing"

	"trellis/internal/core"
)

// pruned declares task-level temp files kept depth levels down.
func pruned(depth int32, fs ...core.FileID) core.FilesDeclared {
	ev := core.FilesDeclared{Session: "a"}
	for _, f := range fs {
		ev.Files = append(ev.Files, core.FileSpec{ID: f, Kind: core.Produced, Level: core.LevelTask, Depth: depth})
	}
	return ev
}

// chain submits tasks 1..n, task i writing file 9+i and reading file 8+i.
func chain(n int) core.TasksSubmitted {
	var ev core.TasksSubmitted
	for i := 1; i <= n; i++ {
		t := task(core.TaskID(i), res(1000, 100))
		t.Outputs = ids(core.FileID(9 + i))
		if i > 1 {
			t.Inputs = ids(core.FileID(8 + i))
		}
		ev.Tasks = append(ev.Tasks, t)
	}
	return ev
}

// TestPrune: a pruned temp file goes once no unfinished task reads it, or
// with a depth once the readers of its readers are done; a file lost later
// re-runs its producers back to the files that exist.
func TestPrune(t *testing.T) {
	one := res(1000, 1000)
	lost := func(w string) core.Outcome { return outcome(core.WorkerLost, w) }
	runScenarios(t, []scenario{
		{
			name: "depth 0: each file goes with its reader",
			steps: []step{
				{join(1, one), nil},
				{pruned(0, 10, 11, 12), nil},
				{chain(3), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(2, 1, 1, 60, 11), acts(success(2, 1, 1), unlink(1, 10), dispatch(3, 1, 1))},
				{kept(3, 1, 1, 70, 12), acts(success(3, 1, 1), unlink(1, 11))},
			},
			pruning: true,
			workers: []core.WorkerInfo{{ID: 1, Total: one, Free: one, TasksDone: 3,
				CacheBytes: 70, CacheFiles: 1, Pruned: 110}},
		},
		{
			name: "depth 1: a file stays until its readers' readers are done",
			steps: []step{
				{join(1, one), nil},
				{pruned(1, 10, 11, 12), nil},
				{chain(4), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(2, 1, 1, 60, 11), acts(success(2, 1, 1), dispatch(3, 1, 1))},
				{kept(3, 1, 1, 70, 12), acts(success(3, 1, 1), unlink(1, 10), dispatch(4, 1, 1))},
				{kept(4, 1, 1, 80, 13), acts(success(4, 1, 1), unlink(1, 12, 11))},
			},
			pruning: true,
			workers: []core.WorkerInfo{{ID: 1, Total: one, Free: one, TasksDone: 4,
				CacheBytes: 80, CacheFiles: 1, Pruned: 180}},
		},
		{
			// Task 4 reads file 12; its worker is lost before it runs, with
			// 12 the only file left of the chain: tasks 3, 2 and 1 run again.
			name: "a lost file re-runs its producers back to files that exist",
			steps: []step{
				{join(1, one), nil},
				{pruned(0, 10, 11, 12), nil},
				{chain(3), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(2, 1, 1, 60, 11), acts(success(2, 1, 1), unlink(1, 10), dispatch(3, 1, 1))},
				{kept(3, 1, 1, 70, 12), acts(success(3, 1, 1), unlink(1, 11))},
				{submit(files(retries(task(4, one), 1, false), ids(12), nil)), acts(dispatch(4, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(core.Requeued{Task: 4, Attempt: 1, Reason: lost("worker 1 lost: crash")}, core.Rerun{Task: 3, File: 12})},
				{join(2, one), acts(core.Rerun{Task: 2, File: 11}, core.Rerun{Task: 1, File: 10}, dispatch(1, 2, 2))},
				{kept(1, 2, 2, 50, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, dispatch(2, 2, 2))},
				{kept(2, 2, 2, 60, 11), acts(core.Recreated{Task: 2, Attempt: 2, Worker: 2}, unlink(2, 10), dispatch(3, 2, 2))},
				{kept(3, 2, 2, 70, 12), acts(core.Recreated{Task: 3, Attempt: 2, Worker: 2}, unlink(2, 11), dispatch(4, 2, 2))},
				{ok(4, 2, 2), acts(success(4, 2, 2), unlink(2, 12))},
			},
		},
	})
}
