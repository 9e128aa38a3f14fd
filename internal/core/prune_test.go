package core_test

import (
	"fmt"
	"slices"
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
				CacheBytes: 70, CacheFiles: 1, Pruned: 110, PeakCache: 130}},
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
				CacheBytes: 80, CacheFiles: 1, Pruned: 180, PeakCache: 210}},
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

// TestCacheFull: an attempt handed back for a full cache is not a failure:
// the task waits until a cache frees space, or fails if its output is
// larger than every connected worker's disk.
func TestCacheFull(t *testing.T) {
	two := core.Resources{MilliCores: 2000, MemoryMB: 1000, DiskMB: 100}
	disk := core.Resources{MilliCores: 1000, MemoryMB: 1000, DiskMB: 100}
	one := res(1000, 100)
	full := func(id core.TaskID, attempt uint32, need int64) core.TaskReturned {
		return core.TaskReturned{Task: id, Attempt: attempt, Worker: 1, CacheFull: true, Need: need}
	}
	waiting := core.Outcome{Kind: core.ResourceExceeded, Message: "handed back by worker 1: its cache is full of files still needed; waiting for space"}
	noRoom := core.Outcome{Kind: core.ResourceExceeded, Message: "the cache of worker 1 has no room for its inputs: it is full of files still needed; waiting for space"}
	outputsWait := core.Outcome{Kind: core.ResourceExceeded, Message: "the cache of worker 1 has no room for its outputs (estimated from those so far) until the tasks running there end and the files they read are pruned; waiting for space"}
	runScenarios(t, []scenario{
		{
			name: "waits until a file is pruned, then runs again",
			steps: []step{
				{join(1, two), nil},
				{pruned(0, 10, 11), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil), files(task(3, one), nil, ids(11))), acts(dispatch(1, 1, 1), dispatch(3, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{full(3, 1, 60<<20), acts(core.Requeued{Task: 3, Attempt: 1, Reason: waiting})},
				{core.Tick{}, nil},
				{ok(2, 1, 1), acts(success(2, 1, 1), unlink(1, 10), dispatch(3, 2, 1))},
				{kept(3, 2, 1, 60, 11), acts(success(3, 2, 1))},
			},
		},
		{
			// Worker 2's cache cannot take the input task 2 stages there:
			// the task waits (not failed), and runs once it can, here on
			// a Tick with nothing running, where its input is.
			name: "an input that does not fit waits too",
			steps: []step{
				{join(1, disk), nil},
				{join(2, disk), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), prio(task(4, one), 1), files(task(2, one), ids(10), nil)),
					acts(dispatch(1, 1, 1), dispatch(3, 1, 2))},
				{kept(1, 1, 1, 50<<20, 10), acts(success(1, 1, 1), dispatch(4, 1, 1))},
				{ok(3, 1, 2), acts(success(3, 1, 2), fetch(1, 2, 10, peer(1), 50<<20))},
				{core.TransferDone{Transfer: 1, CacheFull: true, Why: "cache: disk exhausted"}, acts(core.Requeued{Task: 2, Attempt: 0, Reason: core.Outcome{
					Kind: core.ResourceExceeded, Message: "handed back by worker 2: its cache is full of files still needed; waiting for space"}})},
				{ok(4, 1, 1), acts(success(4, 1, 1))},
				{core.Tick{}, acts(dispatch(2, 1, 1))},
			},
		},
		{
			// Task 3 would write about 60 MiB (the mean output so far)
			// where 40 MiB are free, while task 2, running there, is the
			// last reader of a 60 MiB file: task 3 waits for the prune
			// instead of filling the cache and being handed back.
			name: "a producer waits for the space its output needs while a running task will free it",
			steps: []step{
				{join(1, two), nil},
				{pruned(0, 10, 11), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 60<<20, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{submit(files(task(3, one), nil, ids(11))), acts(core.Requeued{Task: 3, Reason: outputsWait})},
				{ok(2, 1, 1), acts(success(2, 1, 1), unlink(1, 10), dispatch(3, 1, 1))},
				{kept(3, 1, 1, 60<<20, 11), acts(success(3, 1, 1))},
			},
		},
		{
			// The same, but nothing running there will free space: the
			// producer starts (a full cache would hand it back).
			name: "a producer starts when no running task will free space",
			steps: []step{
				{join(1, two), nil},
				{temps(10), nil},
				{pruned(0, 11), nil},
				{submit(files(task(1, one), nil, ids(10)), task(2, one)), acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{kept(1, 1, 1, 60<<20, 10), acts(success(1, 1, 1))},
				{submit(files(task(3, one), nil, ids(11))), acts(dispatch(3, 1, 1))},
			},
		},
		{
			// Nothing runs that could free space: a Tick tries again.
			name: "an idle cluster tries again on a tick",
			steps: []step{
				{join(1, two), nil},
				{submit(files(task(3, one), nil, ids(11))), acts(dispatch(3, 1, 1))},
				{full(3, 1, 60<<20), acts(core.Requeued{Task: 3, Attempt: 1, Reason: waiting})},
				{core.Tick{}, acts(dispatch(3, 2, 1))},
			},
		},
		{
			// Worker 1's 3 MiB cache is full of three outputs, each read
			// by a task that must also fetch a 1 MiB file: none fits, and
			// nothing runs that would free space. On a Tick, a copy that
			// task 4 does not read is unlinked (its producer runs again
			// when its reader needs it): task 4 runs, and so, in turn, do
			// the others.
			name: "a deadlock of full caches is broken by running a producer again",
			steps: []step{
				{join(1, core.Resources{MilliCores: 1000, MemoryMB: 1000, DiskMB: 3}), nil},
				{pruned(0, 10, 11, 12), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.External, Size: 1 << 20}, {ID: 21, Kind: core.External, Size: 1 << 20}, {ID: 22, Kind: core.External, Size: 1 << 20}}}, nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), nil, ids(11)), files(task(3, one), nil, ids(12))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 1<<20, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(2, 1, 1, 1<<20, 11), acts(success(2, 1, 1), dispatch(3, 1, 1))},
				{kept(3, 1, 1, 1<<20, 12), acts(success(3, 1, 1))},
				{submit(files(task(4, one), ids(10, 20), nil), files(task(5, one), ids(11, 21), nil), files(task(6, one), ids(12, 22), nil)), acts(
					core.Requeued{Task: 4, Reason: noRoom}, core.Requeued{Task: 5, Reason: noRoom}, core.Requeued{Task: 6, Reason: noRoom})},
				{core.Tick{}, acts(unlink(1, 11), core.Rerun{Task: 2, File: 11}, fetch(1, 1, 20, core.Source{Kind: core.FromManager}, 1<<20))},
				{fetched(1, 1<<20), acts(dispatch(4, 1, 1))},
				// Task 5 waits for 11 and room (told once); task 6 fits now.
				{ok(4, 1, 1), acts(success(4, 1, 1), unlink(1, 10), fetch(2, 1, 22, core.Source{Kind: core.FromManager}, 1<<20))},
				{fetched(2, 1<<20), acts(dispatch(6, 1, 1))},
				{ok(6, 1, 1), acts(success(6, 1, 1), unlink(1, 12), dispatch(2, 2, 1))},
				{kept(2, 2, 1, 1<<20, 11), acts(core.Recreated{Task: 2, Attempt: 2, Worker: 1}, fetch(3, 1, 21, core.Source{Kind: core.FromManager}, 1<<20))},
				{fetched(3, 1<<20), acts(dispatch(5, 1, 1))},
				{ok(5, 1, 1), acts(success(5, 1, 1), unlink(1, 11))},
			},
			counts: &counts{Finished: 6},
		},
		{
			name: "an output no connected worker could hold fails",
			steps: []step{
				{join(1, two), nil},
				{submit(files(task(3, one), nil, ids(11))), acts(dispatch(3, 1, 1))},
				{full(3, 1, 200<<20), acts(done(3, 1, 1, core.Outcome{Kind: core.ResourceExceeded,
					Message: "output of task 3 needs 200 MiB; the largest cache of a connected worker is 100 MiB: start a worker with a larger --disk"}))},
			},
		},
		{
			// A workflow-level file (kept for the session) fills the
			// cache: pruning will never make room, so waiting would hang.
			name: "an output that files kept for the session leave no room for fails",
			steps: []step{
				{join(1, two), nil},
				{declared("a", core.Produced, core.LevelWorkflow, 10), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(3, one), nil, ids(11))), acts(dispatch(1, 1, 1), dispatch(3, 1, 1))},
				{kept(1, 1, 1, 80<<20, 10), acts(success(1, 1, 1))},
				{full(3, 1, 30<<20), acts(done(3, 1, 1, core.Outcome{Kind: core.ResourceExceeded,
					Message: "output of task 3 needs 30 MiB, but every connected worker's cache is held by files kept for the session (keep: true, or a cache level): keep fewer files, or start a worker with a larger --disk"}))},
			},
		},
	})
}

// TestPruneDepthBoundsReruns: a chain of 8 on one worker whose last temp
// file is dropped while its reader still runs. With depth 0 every file
// behind it was pruned, and the whole chain runs again; with depth 1 or 2
// the file before it is still held, and one producer runs again.
func TestPruneDepthBoundsReruns(t *testing.T) {
	for _, tc := range []struct {
		depth int32
		want  uint64
	}{{0, 8}, {1, 1}, {2, 1}} {
		t.Run(fmt.Sprintf("depth=%d", tc.depth), func(t *testing.T) {
			c := core.New()
			const n = 8
			c.Step(join(1, res(2000, 1000))) // room for a re-run beside the reader
			c.Step(pruned(tc.depth, fileRange(10, 10+n)...))
			reader := files(retries(task(n+1, res(1000, 100)), 1, false), ids(9+n), nil)
			c.Step(core.TasksSubmitted{Tasks: append(chain(n).Tasks, reader)})
			for i := core.TaskID(1); i <= n; i++ {
				c.Step(kept(i, 1, 1, 100, core.FileID(9+i)))
			}
			// The reader is running; the file it reads goes.
			c.Step(core.FilesDropped{Worker: 1, Files: ids(9 + n)})
			if got := c.Stats().Recreated; got != tc.want {
				t.Errorf("depth %d: %d tasks re-run, want %d", tc.depth, got, tc.want)
			}
		})
	}
}

// TestLostUnderLastAttempt: a temp file whose only copy is dropped while
// its one reader runs its last attempt is not made again then (the reader
// has its copy, and its end prunes the file), but when a later task stages
// it.
func TestLostUnderLastAttempt(t *testing.T) {
	c := core.New()
	c.Step(join(1, res(2000, 1000)))
	c.Step(pruned(1, 10, 11))
	producer := files(task(1, res(1000, 100)), nil, ids(10))
	reader := files(retries(task(2, res(1000, 100)), 0, false), ids(10), ids(11))
	c.Step(core.TasksSubmitted{Tasks: []core.Task{producer, reader}})
	c.Step(kept(1, 1, 1, 100, 10))
	c.Step(core.FilesDropped{Worker: 1, Files: ids(10)}) // the reader changed it
	if got := c.Stats().Recreated; got != 0 {
		t.Errorf("dropped under its reader's last attempt: %d tasks re-run, want 0", got)
	}
	c.Step(kept(2, 1, 1, 100, 11))
	later := files(task(3, res(1000, 100)), ids(10), nil)
	got := c.Step(core.TasksSubmitted{Tasks: []core.Task{later}})
	if n := c.Stats().Recreated; n != 1 || !slices.ContainsFunc(got, func(a core.Action) bool { r, ok := a.(core.Rerun); return ok && r.Task == 1 }) {
		t.Errorf("a later reader: %d tasks re-run, actions %v; want the producer run again", n, got)
	}
}

// TestBranchFirst: among ready tasks of equal priority, one that reads a
// produced file (continuing a started branch, and letting that file be
// pruned) runs before one that starts a new branch, whatever the order of
// submission; priority still comes first.
func TestBranchFirst(t *testing.T) {
	one := res(1000, 100)
	runScenarios(t, []scenario{
		{
			name: "the reader of a produced file before new producers",
			steps: []step{
				{join(1, one), nil},
				{pruned(0, 10, 11, 12), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), nil, ids(11)), files(task(3, one), nil, ids(12)), files(task(4, one), ids(10), nil)),
					acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(4, 1, 1))},
				{ok(4, 1, 1), acts(success(4, 1, 1), unlink(1, 10), dispatch(2, 1, 1))},
			},
		},
		{
			// Tasks 3 and 4 each read a temp file as its last reader:
			// 4, whose file is larger, runs first, though submitted later.
			name: "the last reader of a larger file first",
			steps: []step{
				{join(1, one), nil},
				{pruned(0, 10, 11), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), nil, ids(11))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 1<<10, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{submit(files(task(3, one), ids(10), nil), files(task(4, one), ids(11), nil)), nil},
				{kept(2, 1, 1, 1<<20, 11), acts(success(2, 1, 1), dispatch(4, 1, 1))},
				{ok(4, 1, 1), acts(success(4, 1, 1), unlink(1, 11), dispatch(3, 1, 1))},
			},
		},
		{
			name: "priority before branches",
			steps: []step{
				{join(1, one), nil},
				{pruned(0, 10, 11), nil},
				{submit(files(task(1, one), nil, ids(10)), files(prio(task(2, one), 1), nil, ids(11)), files(task(4, one), ids(10), nil)),
					acts(dispatch(2, 1, 1))},
				{kept(2, 1, 1, 50, 11), acts(success(2, 1, 1), dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(4, 1, 1))},
			},
		},
	})
}
