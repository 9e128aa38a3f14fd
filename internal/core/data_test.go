package core_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/core"
)

// Helpers for data scenarios: temp files live only in workers.

func temps(ids ...core.FileID) core.FilesDeclared {
	var fs []core.FileSpec
	for _, id := range ids {
		fs = append(fs, core.FileSpec{ID: id, Kind: core.Produced})
	}
	return core.FilesDeclared{Files: fs}
}

func kept(id core.TaskID, attempt uint32, w core.WorkerID, size int64, files ...core.FileID) core.TaskFinished {
	ev := ok(id, attempt, w)
	for _, f := range files {
		ev.Outputs = append(ev.Outputs, core.OutputInfo{File: f, Size: size, Kept: true})
	}
	return ev
}

func fetch(tr uint64, w core.WorkerID, f core.FileID, src core.Source, size int64) core.Fetch {
	return core.Fetch{Transfer: tr, Worker: w, File: f, Source: src, Size: size}
}

func peer(w core.WorkerID) core.Source { return core.Source{Kind: core.FromPeer, Peer: w} }

func fetched(tr uint64, size int64) core.TransferDone {
	return core.TransferDone{Transfer: tr, OK: true, Size: size}
}

func TestTempFiles(t *testing.T) {
	lost := func(w string) core.Outcome { return outcome(core.WorkerLost, w) }
	one := res(1000, 100)
	runScenarios(t, []scenario{
		{
			// The consumer goes where its input is: worker 1 holds the
			// temp file, so no transfer is needed at all.
			name: "a consumer runs where its input is",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{join(2, res(2000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			// Worker 1 is full, so the consumer goes to worker 2 and pulls
			// the file from its peer before it runs.
			name: "a consumer elsewhere pulls from the peer first",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{fetched(1, 5000), acts(dispatch(2, 1, 2))},
			},
			counts: &counts{Running: 2, Finished: 1},
		},
		{
			// The only copy is lost with its worker before the consumer ran:
			// the producer runs again (no second Done), then the consumer.
			name: "lineage: a lost temp file is recreated",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(retries(task(3, one), 1, false), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(
					core.Requeued{Task: 3, Attempt: 1, Reason: lost("worker 1 lost: killed")},
					core.Rerun{Task: 1, File: 10},
					dispatch(1, 2, 2),
				)},
				{fetched(1, 5000), nil}, // stale: the transfer's source left
				{kept(1, 2, 2, 5000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, dispatch(3, 2, 2))}, // 3 was queued first
				{ok(3, 2, 2), acts(success(3, 2, 2), dispatch(2, 1, 2))},
			},
			counts: &counts{Running: 1, Finished: 2},
		},
		{
			// A peer that fails twice is avoided; after FetchTries failures
			// the consumer gives up on that worker and is retried.
			name: "a failing transfer is retried, then the task",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), retries(files(task(2, one), ids(10), nil), 1, false)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 1, SourceFault: true, Why: "connection reset"}, acts(fetch(2, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 2, SourceFault: true, Why: "connection reset"}, nil}, // backing off worker 1
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, acts(fetch(3, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 3, SourceFault: true, Why: "connection reset"}, nil}, // still failing: backed off again
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, acts(fetch(4, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 4, SourceFault: true, Why: "connection reset"}, acts(
					core.Requeued{Task: 2, Attempt: 0, Reason: outcome(core.InputMissing, "fetch from peer: connection reset (after 4 tries)")})},
			},
			counts: &counts{Running: 1, Finished: 1}, // task 2 stages again on worker 2
		},
		{
			// A disk-full worker: the task is retried (not the source). It
			// never ran, so its Done names no worker.
			name: "destination failure fails the staging task over",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), retries(files(task(2, one), ids(10), nil), 0, false)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 1, Why: "disk exhausted"}, acts(done(2, 0, 0, outcome(core.InputMissing, "fetch from peer: disk exhausted")))},
			},
			counts: &counts{Running: 1, Finished: 2},
		},
	})
}

func TestOriginAndDerived(t *testing.T) {
	one := res(1000, 100)
	origin := core.Source{Kind: core.FromOrigin}
	runScenarios(t, []scenario{
		{
			// A URL is fetched from its origin, an archive unpacked from
			// it on the same worker, then the task runs.
			name: "url, then unpack, then run",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.Origin}, {ID: 21, Kind: core.Derived, From: 20}}}, nil},
				{submit(files(task(1, one), ids(21), nil)), acts(fetch(1, 1, 20, origin, 0))},
				{fetched(1, 700), acts(fetch(2, 1, 21, core.Source{Kind: core.FromDerive, From: 20}, 0))},
				{fetched(2, 2000), acts(dispatch(1, 1, 1))},
			},
			counts: &counts{Running: 1},
		},
		{
			name: "a url that keeps failing fails the task with the reason",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.Origin}}}, nil},
				{submit(retries(files(task(1, one), ids(20), nil), 0, false)), acts(fetch(1, 1, 20, origin, 0))},
				{core.TransferDone{Transfer: 1, SourceFault: true, Why: "404 Not Found"}, acts(fetch(2, 1, 20, origin, 0))},
				{core.TransferDone{Transfer: 2, SourceFault: true, Why: "404 Not Found"}, acts(fetch(3, 1, 20, origin, 0))},
				{core.TransferDone{Transfer: 3, SourceFault: true, Why: "404 Not Found"}, acts(fetch(4, 1, 20, origin, 0))},
				{core.TransferDone{Transfer: 4, SourceFault: true, Why: "404 Not Found"}, acts(done(1, 0, 0, outcome(core.InputMissing, "fetch from origin: 404 Not Found (after 4 tries)")))},
			},
			counts: &counts{Finished: 1},
		},
	})
}

// TestDataFaults: cases the seeded simulation found (see TestSimulationData).
func TestDataFaults(t *testing.T) {
	one := res(1000, 100)
	origin := core.Source{Kind: core.FromOrigin}
	derive := func(from core.FileID) core.Source { return core.Source{Kind: core.FromDerive, From: from} }
	failed := outcome(core.Failed, "x")
	runScenarios(t, []scenario{
		{
			// Worker 2 evicts file 10 after it arrived for task 3, which
			// still waits for file 11: 10 is fetched again before 3 runs.
			name: "a dropped input of a staging task is fetched again",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{temps(10, 11), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), nil, ids(11))), acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{submit(task(4, res(2000, 100))), nil},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1))},
				{kept(2, 1, 1, 5000, 11), acts(success(2, 1, 1), dispatch(4, 1, 1))},
				{submit(files(task(3, one), ids(10, 11), nil)), nil},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000), fetch(2, 2, 11, peer(1), 5000))},
				{fetched(1, 5000), nil},
				{core.FilesDropped{Worker: 2, Files: ids(10)}, acts(fetch(3, 2, 10, peer(1), 5000))},
				{fetched(2, 5000), nil},
				{fetched(3, 5000), acts(dispatch(3, 1, 2))},
			},
			counts: &counts{Running: 2, Finished: 2},
		},
		{
			// Task 2 gives up staging on worker 2 (disk full): what it held
			// there goes at once to task 4, queued behind it. (Task 2 ranks
			// higher: of equal rank, worker 2 would run task 4 first and
			// leave task 2 for worker 1, which holds its input.)
			name: "what a task that gave up staging held goes to the queue",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, one), nil, ids(10)), task(3, one)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{submit(prio(retries(files(task(2, one), ids(10), nil), 0, false), 1), task(4, one)), nil},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 1, Why: "disk full"}, acts(
					done(2, 0, 0, outcome(core.InputMissing, "fetch from peer: disk full")),
					dispatch(4, 1, 2),
				)},
			},
			counts: &counts{Running: 2, Finished: 2},
		},
		{
			// File 11 is unpacked from temp file 10: its reader waits for
			// 10's producer, then has 11 unpacked where 10 is.
			name: "a file unpacked from a temp file waits for its producer",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 10, Kind: core.Produced}, {ID: 11, Kind: core.Derived, From: 10}}}, nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(11), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), fetch(1, 1, 11, derive(10), 0))},
				{fetched(1, 9000), acts(dispatch(2, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
		{
			name: "a file unpacked from a temp file that is never made fails its reader",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 10, Kind: core.Produced}, {ID: 11, Kind: core.Derived, From: 10}}}, nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(11), nil)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, failed), acts(
					done(1, 1, 1, failed),
					done(2, 0, 0, outcome(core.InputMissing, "input produced by task 1 is missing: that task ended with failed")),
				)},
				{submit(files(task(3, one), ids(11), nil)), acts(done(3, 0, 0, outcome(core.InputMissing, "input produced by task 1 is missing: that task ended with failed")))},
			},
			counts: &counts{Finished: 3},
		},
		{
			// Task 1 made 10 (kept on worker 1) and 11 (at the manager).
			// 10 is lost and running task 1 again fails: only 10 is lost,
			// and its queued reader fails with that reason (reported once).
			name: "a failed re-run loses only the outputs without a copy",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10, 11), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10, 11)), prio(task(4, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{core.TaskFinished{Task: 1, Attempt: 1, Worker: 1, Outcome: core.Outcome{Kind: core.Success}, Outputs: []core.OutputInfo{
					{File: 10, Size: 5000, Kept: true}, {File: 11, Size: 5000, Manager: true},
				}}, acts(success(1, 1, 1), dispatch(4, 1, 1))},
				{core.FilesDropped{Worker: 1, Files: ids(10)}, acts(core.Rerun{Task: 1, File: 10})},
				{ok(4, 1, 1), acts(success(4, 1, 1), dispatch(1, 2, 1))},
				{finished(1, 2, 1, failed), acts(
					core.FileLost{File: 10, Why: "input produced by task 1 was lost, and running that task again ended with failed: x"},
					done(2, 0, 0, outcome(core.InputMissing, "input produced by task 1 was lost, and running that task again ended with failed: x")),
				)},
				{submit(files(task(5, one), ids(11), nil)), acts(fetch(1, 1, 11, core.Source{Kind: core.FromManager}, 5000))},
				{fetched(1, 5000), acts(dispatch(5, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 3},
		},
		{
			// The client cancels task 1 after its Done, while it runs again
			// to recreate 10: nothing changes, the file is recreated.
			name: "cancelling a task that runs again changes nothing",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(4, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(4, 1, 1))},
				{core.FilesDropped{Worker: 1, Files: ids(10)}, acts(core.Rerun{Task: 1, File: 10})},
				{core.CancelTask{Task: 1}, nil},
				{ok(4, 1, 1), acts(success(4, 1, 1), dispatch(1, 2, 1))},
				{core.CancelTask{Task: 1}, nil},
				{kept(1, 2, 1, 5000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 1}, dispatch(2, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 2},
		},
		{
			// Task 2 stages on worker 2, which starts draining: it goes back
			// to the queue rather than to a worker that takes no new task.
			name: "a draining worker's staging tasks go back to the queue",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{core.WorkerDraining{Worker: 2}, nil},
				{fetched(1, 5000), nil},
				{ok(3, 1, 1), acts(success(3, 1, 1), dispatch(2, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 2},
		},
		{
			// Task 2 stages on worker 2 for file 11, its fetches failing
			// (peer 1 backed off). Task 1 runs again on worker 2 to recreate
			// 10 and makes 11 there too: task 2 runs, nothing is fetched.
			name: "a task staging for a file its worker then makes runs at once",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10, 11), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10, 11)), prio(task(5, one), 1), files(task(2, one), ids(11), nil), files(task(3, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10, 11), acts(success(1, 1, 1), dispatch(5, 1, 1))},
				{join(2, res(3000, 1000)), acts(fetch(1, 2, 11, peer(1), 5000), fetch(2, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 1, SourceFault: true, Why: "reset"}, acts(fetch(3, 2, 11, peer(1), 5000))},
				{core.TransferDone{Transfer: 3, SourceFault: true, Why: "reset"}, nil}, // peer 1 backed off
				{core.FilesDropped{Worker: 1, Files: ids(10)}, acts(core.Rerun{Task: 1, File: 10}, dispatch(1, 2, 2))},
				{core.TransferDone{Transfer: 2, SourceFault: true, Why: "gone"}, nil},
				{kept(1, 2, 2, 5000, 10, 11), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, dispatch(2, 1, 2), dispatch(3, 1, 2))},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
				{core.Tick{}, nil},
			},
			counts: &counts{Running: 3, Finished: 1},
		},
		{
			// Worker 1 evicts the unpacked file 21 and the archive 20 it
			// came from in one event: 20 is fetched again before 21 is
			// unpacked from it, not unpacked from the dropped archive.
			name: "files dropped together are all gone before staging again",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.Origin}, {ID: 21, Kind: core.Derived, From: 20}, {ID: 22, Kind: core.Origin}}}, nil},
				{submit(files(task(1, one), ids(21, 22), nil)), acts(fetch(1, 1, 20, origin, 0), fetch(2, 1, 22, origin, 0))},
				{fetched(1, 700), acts(fetch(3, 1, 21, derive(20), 0))},
				{fetched(3, 2000), nil},
				{core.FilesDropped{Worker: 1, Files: ids(21, 20)}, acts(fetch(4, 1, 20, origin, 700))},
				{fetched(4, 700), acts(fetch(5, 1, 21, derive(20), 2000))},
				{fetched(2, 300), nil},
				{fetched(5, 2000), acts(dispatch(1, 1, 1))},
			},
			counts: &counts{Running: 1},
		},
	})
}

// Once nobody needs a temp file, losing its copies (the client's session
// ended and the workers dropped it) neither copies nor recreates it.
func TestDroppedAfterUseIsLeftAlone(t *testing.T) {
	one := res(1000, 100)
	replicated := core.FilesDeclared{Files: []core.FileSpec{{ID: 10, Kind: core.Produced, Replicas: 2}}}
	runScenarios(t, []scenario{{
		name: "no copy, no rerun",
		steps: []step{
			{join(1, res(1000, 1000)), nil},
			{join(2, res(1000, 1000)), nil},
			{replicated, nil},
			{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
			{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), fetch(1, 2, 10, peer(1), 50), dispatch(2, 1, 1))},
			{fetched(1, 50), nil},
			{ok(2, 1, 1), acts(success(2, 1, 1))},
			{core.FilesDropped{Worker: 1, Files: ids(10)}, nil},
			{core.FilesDropped{Worker: 2, Files: ids(10)}, nil},
		},
		counts: &counts{Finished: 2},
	}})
}

// TestForget: the core lets the caller forget a task once it has ended and
// cannot run again (its Done is not Retained); a producer of files kept only
// in workers is retained for lineage instead, and forgotten (Forget) when it
// ends without being retained again.
func TestForget(t *testing.T) {
	one := res(1000, 100)
	forget := func(id core.TaskID) core.Forget { return core.Forget{Task: id} }
	retained := func(d core.Done) core.Done { d.Retained = true; return d }
	runScenarios(t, []scenario{
		{
			name:   "a task without kept outputs is forgotten with its Done",
			strict: true,
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
			},
		},
		{
			name:   "a task cancelled before it ran",
			strict: true,
			steps: []step{
				{submit(task(1, one)), nil},
				{core.CancelTask{Task: 1}, acts(done(1, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
			},
		},
		{
			name:   "a producer of a temp file is kept until its run again fails",
			strict: true,
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, one), nil, ids(10)), retries(files(task(2, one), ids(10), nil), 2, false)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(retained(success(1, 1, 1)), dispatch(2, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(
					core.Requeued{Task: 2, Attempt: 1, Reason: outcome(core.WorkerLost, "worker 1 lost: killed")},
					core.Rerun{Task: 1, File: 10})},
				{join(2, res(2000, 1000)), acts(dispatch(1, 2, 2))},
				{kept(1, 2, 2, 5000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, dispatch(2, 2, 2))}, // retained again: no Forget
				{core.WorkerLeft{Worker: 2, Reason: "killed"}, acts(
					core.Requeued{Task: 2, Attempt: 2, Reason: outcome(core.WorkerLost, "worker 2 lost: killed")},
					core.Rerun{Task: 1, File: 10})},
				{join(3, res(2000, 1000)), acts(dispatch(1, 3, 3))},
				{finished(1, 3, 3, outcome(core.Failed, "exit 1")), acts(
					forget(1),
					core.FileLost{File: 10, Why: "input produced by task 1 was lost, and running that task again ended with failed: exit 1"},
					done(2, 2, 2, outcome(core.InputMissing, "input produced by task 1 was lost, and running that task again ended with failed: exit 1")))},
			},
		},
	})
}

// TestManagerFiles: files the client uploaded to the manager (External) are
// staged like any other, from the manager or a peer that holds one, unless
// small enough to travel inline inside the dispatch.
func TestManagerFiles(t *testing.T) {
	one := res(1000, 100)
	manager := core.Source{Kind: core.FromManager}
	uploaded := func(specs ...core.FileSpec) core.FilesDeclared {
		for i := range specs {
			specs[i].Kind = core.External
		}
		return core.FilesDeclared{Files: specs}
	}
	half := int64(core.MaxInlinePerDispatch/2 + 1)
	runScenarios(t, []scenario{
		{
			name: "a large upload is fetched from the manager, then the task runs",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: 5000}), nil},
				{submit(files(task(1, one), ids(20), nil)), acts(fetch(1, 1, 20, manager, 5000))},
				{fetched(1, 5000), acts(dispatch(1, 1, 1))},
			},
			counts: &counts{Running: 1},
		},
		{
			name: "a small upload travels inline: no fetch",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: 10, Inline: true}), nil},
				{submit(files(task(1, one), ids(20, 20), nil)), acts(inline(dispatch(1, 1, 1), 20))},
			},
		},
		{
			name: "the second reader on the worker finds it there",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: 5000}), nil},
				{submit(files(task(1, one), ids(20), nil), files(task(2, one), ids(20), nil)), acts(fetch(1, 1, 20, manager, 5000))},
				{fetched(1, 5000), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			// Worker 1 holds it; worker 2 gets it from there, not the manager.
			name: "a peer that holds an upload is its source",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: 5000}), nil},
				{submit(files(task(1, one), ids(20), nil)), acts(fetch(1, 1, 20, manager, 5000))},
				{fetched(1, 5000), acts(dispatch(1, 1, 1))},
				{join(2, res(1000, 1000)), nil},
				{submit(files(task(2, one), ids(20), nil)), acts(fetch(2, 2, 20, peer(1), 5000))},
				{fetched(2, 5000), acts(dispatch(2, 1, 2))},
			},
		},
		{
			name: "inline inputs past the budget are staged",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: half, Inline: true}, core.FileSpec{ID: 21, Size: half, Inline: true}), nil},
				{submit(files(task(1, one), ids(20, 21), nil)), acts(fetch(1, 1, 21, manager, half))},
				{fetched(1, half), acts(inline(dispatch(1, 1, 1), 20))},
			},
		},
		{
			name: "an inline file the worker holds is not sent",
			steps: []step{
				{core.WorkerJoined{Worker: 1, Resources: res(1000, 1000), Cached: []core.CachedFile{{File: 20, Size: 10}}}, nil},
				{uploaded(core.FileSpec{ID: 20, Size: 10, Inline: true}), nil},
				{submit(files(task(1, one), ids(20), nil)), acts(dispatch(1, 1, 1))},
			},
		},
		{
			// Even a small archive is staged: it is unpacked before the task runs.
			name: "an uploaded archive is fetched, then unpacked",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: 10, Inline: true}), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 21, Kind: core.Derived, From: 20}}}, nil},
				{submit(files(task(1, one), ids(21), nil)), acts(fetch(1, 1, 20, manager, 10))},
				{fetched(1, 10), acts(fetch(2, 1, 21, core.Source{Kind: core.FromDerive, From: 20}, 0))},
				{fetched(2, 2000), acts(dispatch(1, 1, 1))},
			},
		},
		{
			name: "a missing upload fails its readers",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.FileMissing{File: 20, Why: "not at the manager"}, nil},
				{submit(files(task(1, one), ids(20), nil)), acts(done(1, 0, 0, outcome(core.InputMissing, "not at the manager")))},
			},
		},
		{
			// Its copies are known: the caller unlinks them from those workers.
			name: "the core knows which workers hold an upload",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{uploaded(core.FileSpec{ID: 20, Size: 5000}), nil},
				{submit(files(task(1, one), ids(20), nil)), acts(fetch(1, 1, 20, manager, 5000))},
				{fetched(1, 5000), acts(dispatch(1, 1, 1))},
			},
			workers: []core.WorkerInfo{
				{ID: 1, Total: res(1000, 1000), Free: res(0, 900), Running: []core.TaskID{1}, CacheBytes: 5000, CacheFiles: 1},
				{ID: 2, Total: res(1000, 1000), Free: res(1000, 1000)},
			},
		},
	})
}

// TestFetchTask: a Fetch names the task staging on its worker that it is
// for (the first, if several wait), through an unpacked file too, and no
// task for a replica nobody waits for.
func TestFetchTask(t *testing.T) {
	one := res(1000, 100)
	origin := core.Source{Kind: core.FromOrigin}
	forTask := func(f core.Fetch, id core.TaskID) core.Fetch { f.Task = id; return f }
	runScenarios(t, []scenario{
		{
			name: "from a peer, for the consumer staging there",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil), files(task(4, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(2000, 1000)), acts(forTask(fetch(1, 2, 10, peer(1), 5000), 2))}, // 4 waits for it too
				{fetched(1, 5000), acts(dispatch(2, 1, 2), dispatch(4, 1, 2))},
			},
		},
		{
			name: "a url, then the file unpacked from it",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.Origin}, {ID: 21, Kind: core.Derived, From: 20}}}, nil},
				{submit(files(task(1, one), ids(21), nil)), acts(forTask(fetch(1, 1, 20, origin, 0), 1))},
				{fetched(1, 700), acts(forTask(fetch(2, 1, 21, core.Source{Kind: core.FromDerive, From: 20}, 0), 1))},
				{fetched(2, 2000), acts(dispatch(1, 1, 1))},
			},
		},
	})
	// A replica no task waits for names none (runSteps would not see a
	// Task there: it compares Fetch.Task only in steps that want one).
	c := core.New()
	for _, ev := range []core.Event{join(1, res(1000, 1000)), join(2, res(1000, 1000)),
		core.FilesDeclared{Files: []core.FileSpec{{ID: 10, Kind: core.Produced, Replicas: 2}}},
		submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil))} {
		c.Step(ev)
	}
	got := c.Step(kept(1, 1, 1, 50, 10))
	want := acts(success(1, 1, 1), fetch(1, 2, 10, peer(1), 50), dispatch(2, 1, 1))
	if diff := cmp.Diff(want, clearDone(got, true, true), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("a replica's fetch: Step mismatch (-want +got):\n%s", diff)
	}
}

// A core that observes placements lists each placement of a task that
// waits there for inputs, in the step that made it, once, in order; one
// that does not lists none.
func TestPlacements(t *testing.T) {
	one := res(1000, 100)
	steps := []struct {
		ev   core.Event
		want []core.Placed
	}{
		{join(1, res(1000, 1000)), nil},
		{temps(10), nil},
		// Tasks 1 and 3 need nothing brought: they run at once, unlisted.
		{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil), files(task(4, one), ids(10), nil)), nil},
		{kept(1, 1, 1, 5000, 10), nil},
		// Placed on worker 2 while their input travels there.
		{join(2, res(2000, 1000)), []core.Placed{{Task: 2, Worker: 2}, {Task: 4, Worker: 2}}},
		{fetched(1, 5000), nil}, // they run where they were placed
	}
	observed, plain := core.New(), core.New()
	observed.ObservePlacements()
	for i, s := range steps {
		observed.Step(s.ev)
		if diff := cmp.Diff(s.want, observed.Placements(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("step %d: placements mismatch (-want +got):\n%s", i+1, diff)
		}
		plain.Step(s.ev)
		if got := plain.Placements(); len(got) != 0 {
			t.Errorf("step %d: a core not observing placements listed %v", i+1, got)
		}
	}
}
