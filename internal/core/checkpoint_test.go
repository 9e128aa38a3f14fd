package core_test

import (
	"testing"

	"trellis/internal/core"
)

// keep gives t a Keep (and, for KeepReplicate, n replicas).
func keep(t core.Task, k core.Keep, n int32) core.Task { t.Keep, t.Replicas = k, n; return t }

// nondet marks t nondeterministic.
func nondet(t core.Task) core.Task { t.Nondeterministic = true; return t }

// effectful marks t idempotent (an effect beyond its outputs).
func effectful(t core.Task) core.Task { t.Effectful = true; return t }

func ckpt(f core.FileID, w core.WorkerID) core.Checkpoint {
	return core.Checkpoint{File: f, Worker: w}
}

func committed(f core.FileID, w core.WorkerID, size int64) core.CheckpointCommitted {
	return core.CheckpointCommitted{File: f, Worker: w, Size: size}
}

func barred(id core.TaskID, f core.FileID) core.Barred { return core.Barred{Task: id, File: f} }

func fromManager() core.Source { return core.Source{Kind: core.FromManager} }

func TestCheckpoints(t *testing.T) {
	one := res(1000, 100)
	lost := func(w string) core.Outcome { return outcome(core.WorkerLost, w) }
	runScenarios(t, []scenario{
		{
			// Checkpoint{Async}: the core asks for the copy once the
			// producer is done; the consumer does not wait for it.
			name: "async: checkpoint asked after done",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(files(task(1, one), nil, ids(10)), core.KeepCheckpointAsync, 0), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), ckpt(10, 1), dispatch(2, 1, 1))},
				{committed(10, 1, 5000), nil},
			},
		},
		{
			// Every worker is lost after the commit: the consumer fetches
			// the checkpoint from the manager; the producer never runs again.
			name: "a checkpointed file survives the loss of every worker",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(files(prio(task(1, one), 1), nil, ids(10)), core.KeepCheckpointAsync, 0), prio(task(3, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), ckpt(10, 1), dispatch(3, 1, 1))},
				{committed(10, 1, 5000), nil},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(done(3, 1, 1, lost("worker 1 lost: killed")))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, fromManager(), 5000))},
				{fetched(1, 5000), acts(dispatch(2, 1, 2))},
			},
			counts: &counts{Running: 1, Finished: 2},
		},
		{
			// The only copy of an async-kept output goes with its worker
			// before the commit, and no task needs it: the Tick's retry
			// finds no copy and gives up. When a worker comes back holding
			// it, the core asks for the checkpoint from there (before, it
			// never asked again: the simulation's seed 188).
			name: "async: a copy that comes back is checkpointed",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(files(task(1, one), nil, ids(10)), core.KeepCheckpointAsync, 0)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), ckpt(10, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, nil},
				{core.Tick{Now: 1}, nil},
				{core.WorkerJoined{Worker: 2, Resources: res(1000, 1000), Cached: []core.CachedFile{{File: 10, Size: 5000}}}, acts(ckpt(10, 2))},
				{committed(10, 1, 5000), nil}, // the lost worker's: stale
				{committed(10, 2, 5000), nil},
				// Checkpointed: it outlives worker 2, and a consumer reads it
				// from the manager.
				{core.WorkerLeft{Worker: 2, Reason: "killed"}, nil},
				{join(3, res(1000, 1000)), nil},
				{submit(files(task(2, one), ids(10), nil)), acts(fetch(1, 3, 10, fromManager(), 5000))},
			},
		},
		{
			// Without a checkpoint the same loss re-runs the producer.
			name: "lineage: the producer runs again",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(done(3, 1, 1, lost("worker 1 lost: killed")), core.Rerun{Task: 1, File: 10})},
				{join(2, res(1000, 1000)), acts(dispatch(1, 2, 2))},
			},
		},
		{
			// Rule 3: a nondeterministic output read by an effectful
			// consumer: the core asks for its checkpoint, and the consumer
			// waits for the commit.
			name: "barrier: an effectful consumer waits for the commit",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(nondet(files(task(1, one), nil, ids(10))), effectful(files(task(2, one), ids(10), nil))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), barred(2, 10), ckpt(10, 1))},
				{committed(10, 1, 5000), acts(dispatch(2, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
		{
			// The barrier also holds a consumer submitted after the
			// producer ended, and an at-most-once one.
			name: "barrier: a consumer submitted later",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{temps(10), nil},
				{submit(nondet(files(task(1, one), nil, ids(10))), files(task(3, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{submit(core.Task{ID: 2, Resources: one, Inputs: ids(10), AtMostOnce: true}), acts(barred(2, 10), ckpt(10, 1))},
				{committed(10, 1, 5000), acts(dispatch(2, 1, 1))},
			},
		},
		{
			// An effectful call waits for the commit as a task does.
			name: "barrier: an effectful call",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2}, nil},
				{temps(10), nil},
				{submit(nondet(files(task(1, one), nil, ids(10))), effectful(files(callOf(2, 7, 0), ids(10), nil))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), barred(2, 10), ckpt(10, 1))},
				{committed(10, 1, 5000), acts(start(1, 1, 1, 7))},
			},
		},
		{
			// A deterministic output needs no barrier: a replay gives the
			// same bytes.
			name: "no barrier for a deterministic producer",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, one), nil, ids(10)), effectful(files(task(2, one), ids(10), nil))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			// RECOVERY.md scenario 3: the producer's worker is lost before
			// the commit. The producer runs again (lineage), the consumer
			// still waits, and reads only the new value once committed.
			name: "barrier: producer lost before the commit",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(nondet(files(task(1, one), nil, ids(10))), core.KeepCheckpointAsync, 0), effectful(files(task(2, one), ids(10), nil))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), barred(2, 10), ckpt(10, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(core.Rerun{Task: 1, File: 10})},
				{committed(10, 1, 5000), nil}, // late: the file is being made again
				{join(2, res(1000, 1000)), acts(dispatch(1, 2, 2))},
				{kept(1, 2, 2, 6000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, barred(2, 10), ckpt(10, 2))},
				{committed(10, 1, 5000), nil}, // stale: asked of the lost worker
				{committed(10, 2, 6000), acts(dispatch(2, 1, 2))},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
		{
			// A failed checkpoint is asked again at the next Tick.
			name: "a failed checkpoint is retried",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(nondet(files(task(1, one), nil, ids(10))), effectful(files(task(2, one), ids(10), nil))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), barred(2, 10), ckpt(10, 1))},
				{core.CheckpointFailed{File: 10, Worker: 1, Why: "upload refused"}, nil},
				{core.Tick{Now: 1}, acts(ckpt(10, 1))},
				{committed(10, 1, 5000), acts(dispatch(2, 1, 1))},
			},
		},
		{
			// Checkpoint{Sync}: the output goes to the manager with the
			// report, so the effectful consumer runs at once.
			name: "sync: committed with the report",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(nondet(files(task(1, one), nil, ids(10))), core.KeepCheckpointSync, 0), effectful(files(task(2, one), ids(10), nil))),
					acts(withFiles(dispatch(1, 1, 1), nil, ids(10)))},
				{core.TaskFinished{Task: 1, Attempt: 1, Worker: 1, Outcome: core.Outcome{Kind: core.Success},
					Outputs: []core.OutputInfo{{File: 10, Size: 5000, Kept: true, Manager: true}}}, acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			// Rule 6: a checkpointed file is a frontier. When every worker
			// is lost, the last file of the chain 1 -> 10 -> 2 -> 11 -> 3
			// -> 12 -> 4 is made again by 3 alone: its input 11 is
			// checkpointed, so 1 and 2 never run again.
			name: "lineage stops at a checkpoint",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{temps(10, 11, 12), nil},
				{submit(files(task(1, one), nil, ids(10)), keep(files(task(2, one), ids(10), ids(11)), core.KeepCheckpointAsync, 0),
					files(task(3, one), ids(11), ids(12)), retries(task(5, one), 1, false), files(after(task(4, one), 5), ids(12), nil)), acts(dispatch(1, 1, 1), dispatch(5, 1, 1))},
				{kept(1, 1, 1, 100, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{kept(2, 1, 1, 100, 11), acts(success(2, 1, 1), ckpt(11, 1), dispatch(3, 1, 1))},
				{committed(11, 1, 100), nil},
				{kept(3, 1, 1, 100, 12), acts(success(3, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(core.Requeued{Task: 5, Attempt: 1, Reason: lost("worker 1 lost: killed")}, core.Rerun{Task: 3, File: 12})},
				{join(2, res(2000, 1000)), acts(fetch(1, 2, 11, fromManager(), 100), dispatch(5, 2, 2))},
				{fetched(1, 100), acts(dispatch(3, 2, 2))},
				{kept(3, 2, 2, 100, 12), acts(core.Recreated{Task: 3, Attempt: 2, Worker: 2})},
			},
		},
		{
			// A replay: the journal holds the producer's end and its
			// checkpoint (no worker: Worker 0). The barred consumer runs
			// from the checkpoint, and the producer never runs again.
			name: "replay: a checkpoint recorded before the restart",
			steps: []step{
				{temps(10), nil},
				{submit(keep(nondet(files(task(1, one), nil, ids(10))), core.KeepCheckpointAsync, 0), effectful(files(task(2, one), ids(10), nil))), nil},
				{core.TaskRecovered{Task: 1, Attempt: 1, Outcome: core.Outcome{Kind: core.Success}}, acts(success(1, 1, 0), barred(2, 10))},
				{core.CheckpointCommitted{File: 10, Size: 5000}, nil},
				{join(1, res(1000, 1000)), acts(fetch(1, 1, 10, fromManager(), 5000))},
				{fetched(1, 5000), acts(dispatch(2, 1, 1))},
			},
		},
		{
			// The same replay without the checkpoint's record: the file
			// is gone with the workers, so the producer runs again.
			name: "replay: no checkpoint recorded",
			steps: []step{
				{temps(10), nil},
				{submit(keep(nondet(files(task(1, one), nil, ids(10))), core.KeepCheckpointAsync, 0), effectful(files(task(2, one), ids(10), nil))), nil},
				{core.TaskRecovered{Task: 1, Attempt: 1, Outcome: core.Outcome{Kind: core.Success}}, acts(success(1, 1, 0), barred(2, 10))},
				{join(1, res(1000, 1000)), nil},
				{core.Tick{Now: 1}, acts(core.Rerun{Task: 1, File: 10}, dispatch(1, 2, 1))},
				{kept(1, 2, 1, 6000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 1}, barred(2, 10), ckpt(10, 1))},
				{committed(10, 1, 6000), acts(dispatch(2, 1, 1))},
			},
		},
		{
			// Replicate(2): the core places a second copy on another worker.
			name: "replicate: a second copy",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(files(task(1, one), nil, ids(10)), core.KeepReplicate, 2)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), fetch(1, 2, 10, peer(1), 5000))},
			},
		},
		{
			// With one worker only, the second copy is placed when a
			// second worker joins.
			name: "replicate: a copy placed when a worker joins",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(keep(files(task(1, one), nil, ids(10)), core.KeepReplicate, 2), task(2, one)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{fetched(1, 5000), nil},
				{join(3, res(1000, 1000)), nil},
			},
		},
	})
}

// TestCheckpointsNotAsked: cases where the core must not ask for a
// checkpoint (found by coretest's simulation).
func TestCheckpointsNotAsked(t *testing.T) {
	one := res(1000, 100)
	twoCopies := core.FilesDeclared{Session: "a", Files: []core.FileSpec{{ID: 10, Kind: core.Produced, Level: core.LevelTask, Replicas: 2}}}
	runScenarios(t, []scenario{
		{
			// A task with effects that reads an uncommitted file and its
			// own output fails at submission: it is not told it waits for
			// a checkpoint, and none is asked for.
			name: "no Barred for a task that fails at submission",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(nondet(files(task(1, one), nil, ids(10)))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1))},
				{submit(effectful(files(task(2, one), ids(10, 20), ids(20)))), acts(
					done(2, 0, 0, outcome(core.InputMissing, "task 2 reads its own output file 20")))},
			},
		},
		{
			// A task-level file kept by an async checkpoint goes with its
			// last reader before the commit: each copy is unlinked, and
			// no other holder is asked for the checkpoint as the first
			// goes.
			name: "no checkpoint of an expired file",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{twoCopies, nil},
				{submit(keep(files(task(1, one), nil, ids(10)), core.KeepCheckpointAsync, 0), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), fetch(1, 2, 10, peer(1), 5000), ckpt(10, 1), dispatch(2, 1, 1))},
				{fetched(1, 5000), nil},
				{ok(2, 1, 1), acts(success(2, 1, 1), unlink(1, 10), unlink(2, 10))},
			},
		},
	})
}
