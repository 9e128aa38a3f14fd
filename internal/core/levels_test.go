package core_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/core"
)

// declared declares files of one kind and level for session (empty: none).
func declared(session string, kind core.FileKind, level core.Level, fs ...core.FileID) core.FilesDeclared {
	ev := core.FilesDeclared{Session: session}
	for _, f := range fs {
		ev.Files = append(ev.Files, core.FileSpec{ID: f, Kind: kind, Level: level})
	}
	return ev
}

func unlink(w core.WorkerID, fs ...core.FileID) core.Unlink { return core.Unlink{Worker: w, Files: fs} }

func ended(session string) core.SessionEnded { return core.SessionEnded{Session: session} }

// TestUnlink: the core unlinks a file from the workers that hold it once
// its level lets it go and no unfinished task reads it.
func TestUnlink(t *testing.T) {
	one := res(1000, 100)
	manager := core.Source{Kind: core.FromManager}
	origin := core.Source{Kind: core.FromOrigin}
	runScenarios(t, []scenario{
		{
			// Two readers of a task-level temp file: it goes when the
			// second ends. A later reader has it made again (lineage).
			name: "a task-level file goes with its last reader",
			steps: []step{
				{join(1, res(3000, 1000)), nil},
				{declared("a", core.Produced, core.LevelTask, 10), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil), files(task(3, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), dispatch(2, 1, 1), dispatch(3, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1))},
				{ok(3, 1, 1), acts(success(3, 1, 1), unlink(1, 10))},
				{submit(files(task(4, one), ids(10), nil)), acts(core.Rerun{Task: 1, File: 10}, dispatch(1, 2, 1))},
				{kept(1, 2, 1, 50, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 1}, dispatch(4, 1, 1))},
				{ok(4, 1, 1), acts(success(4, 1, 1), unlink(1, 10))},
			},
			workers: []core.WorkerInfo{{ID: 1, Total: res(3000, 1000), Free: res(3000, 1000), TasksDone: 4}},
		},
		{
			// An upload at the manager, declared with its level first
			// (Kind 0) and told with its size when a task reads it: the
			// reader's worker drops it, and the next reader fetches it again.
			name: "a task-level upload is fetched again after it went",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{declared("a", 0, core.LevelTask, 20), nil},
				{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.External, Size: 100}}}, nil},
				{submit(files(task(1, one), ids(20), nil)), acts(fetch(1, 1, 20, manager, 100))},
				{fetched(1, 100), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1), unlink(1, 20))},
				{submit(files(task(2, one), ids(20), nil)), acts(fetch(2, 1, 20, manager, 100))},
			},
		},
		{
			// Declared by two sessions: it stays until both ended, and
			// while a task reads it.
			name: "a workflow-level file goes when its sessions ended and its readers too",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{declared("a", core.Origin, core.LevelWorkflow, 30), nil},
				{declared("b", core.Origin, core.LevelWorkflow, 30), nil},
				{submit(files(task(1, one), ids(30), nil)), acts(fetch(1, 1, 30, origin, 0))},
				{fetched(1, 700), acts(dispatch(1, 1, 1))},
				{ended("a"), nil},
				{ended("b"), nil},
				{ended("b"), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), unlink(1, 30))},
			},
			workers: []core.WorkerInfo{{ID: 1, Total: res(1000, 1000), Free: res(1000, 1000), TasksDone: 1}},
		},
		{
			name: "a workflow-level file no task reads goes when its session ends",
			steps: []step{
				{join(1, res(1000, 500)), nil}, // too small for task 2
				{join(2, res(1000, 1000)), nil},
				{declared("a", core.Produced, core.LevelWorkflow, 10, 11), nil},
				{declared("b", core.Produced, core.LevelWorkflow, 11), nil},
				{submit(files(task(1, one), nil, ids(10, 11))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10, 11), acts(success(1, 1, 1))},
				{submit(files(task(2, res(1000, 1000)), ids(10), nil)), acts(fetch(1, 2, 10, peer(1), 50))},
				{fetched(1, 50), acts(dispatch(2, 1, 2))},
				{ok(2, 1, 2), acts(success(2, 1, 2))},
				// 11 is declared by b too.
				{ended("a"), acts(unlink(1, 10), unlink(2, 10))},
				{ended("b"), acts(unlink(1, 11))},
			},
			workers: []core.WorkerInfo{
				{ID: 1, Total: res(1000, 500), Free: res(1000, 500), TasksDone: 1},
				{ID: 2, Total: res(1000, 1000), Free: res(1000, 1000), TasksDone: 1},
			},
		},
		{
			// A copy that lands after its file went is unlinked at once;
			// so is one a worker rejoins with.
			name: "a copy of a file that went is unlinked when it lands",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{core.FilesDeclared{Session: "a", Files: []core.FileSpec{{ID: 10, Kind: core.Produced, Replicas: 2, Level: core.LevelTask}}}, nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 50, 10), acts(success(1, 1, 1), fetch(1, 2, 10, peer(1), 50), dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), unlink(1, 10))},
				{fetched(1, 50), acts(unlink(2, 10))},
				{core.WorkerJoined{Worker: 3, Resources: res(1000, 1000), Cached: []core.CachedFile{{File: 10, Size: 50}}}, acts(unlink(3, 10))},
			},
			workers: []core.WorkerInfo{
				{ID: 1, Total: res(1000, 1000), Free: res(1000, 1000), TasksDone: 2},
				{ID: 2, Total: res(1000, 1000), Free: res(1000, 1000)},
				{ID: 3, Total: res(1000, 1000), Free: res(1000, 1000)},
			},
		},
		{
			name: "worker and forever levels, and files without a level, stay",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{declared("a", core.Origin, core.LevelWorker, 30), nil},
				{declared("a", core.Origin, core.LevelForever, 31), nil},
				{declared("a", core.Origin, 0, 32), nil},
				{submit(files(task(1, one), ids(30, 31, 32), nil)), acts(fetch(1, 1, 30, origin, 0), fetch(2, 1, 31, origin, 0), fetch(3, 1, 32, origin, 0))},
				{fetched(1, 10), nil},
				{fetched(2, 10), nil},
				{fetched(3, 10), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{ended("a"), nil},
			},
			workers: []core.WorkerInfo{{ID: 1, Total: res(1000, 1000), Free: res(1000, 1000), CacheBytes: 30, CacheFiles: 3, TasksDone: 1}},
		},
	})
}

// TestKeep: a dispatch names the outputs its worker keeps: temp files
// always, outputs sent to the manager only while a task reads them, and
// outputs never declared never.
func TestKeep(t *testing.T) {
	one := res(1000, 100)
	outs := core.FilesDeclared{Files: []core.FileSpec{
		{ID: 10, Kind: core.Produced},
		{ID: 11, Kind: core.Produced, Upload: true},
		{ID: 12, Kind: core.Produced, Upload: true},
	}}
	keep := func(d core.Dispatch, fs ...core.FileID) core.Dispatch { return withFiles(d, d.Inline(), fs) }
	runScenarios(t, []scenario{
		{
			name: "temp files, and outputs a task reads",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{outs, nil},
				{submit(files(task(1, one), nil, ids(10, 11, 12, 13)), files(task(2, one), ids(12), nil)), acts(keep(dispatch(1, 1, 1), 10, 12))},
			},
		},
		{
			name: "an output read by no unfinished task is not kept",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{outs, nil},
				{submit(files(task(2, one), ids(12), nil)), nil},
				{core.CancelTask{Task: 2}, acts(done(2, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
				{submit(files(task(1, one), nil, ids(11, 12))), acts(keep(dispatch(1, 1, 1)))},
			},
		},
	})
}

// TestMoved: the core counts the bytes fetches bring to workers, by route.
func TestMoved(t *testing.T) {
	one := res(1000, 100)
	c := core.New()
	runSteps(t, c, []step{
		{join(1, res(1000, 1000)), nil},
		{join(2, res(1000, 1000)), nil},
		{core.FilesDeclared{Files: []core.FileSpec{{ID: 20, Kind: core.External, Size: 100}, {ID: 10, Kind: core.Produced}}}, nil},
		{submit(files(task(1, one), ids(20), ids(10))), acts(fetch(1, 1, 20, core.Source{Kind: core.FromManager}, 100))},
		{fetched(1, 100), acts(dispatch(1, 1, 1))},
		{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1))},
		{submit(prio(task(2, one), 1), files(task(3, one), ids(10), nil)), acts(dispatch(2, 1, 1), fetch(2, 2, 10, peer(1), 5000))},
		{core.TransferDone{Transfer: 2, SourceFault: true, Why: "reset"}, acts(fetch(3, 2, 10, peer(1), 5000))},
		{fetched(3, 5000), acts(dispatch(3, 1, 2))},
	})
	var want core.Stats
	want.Moved[core.FromManager], want.Moved[core.FromPeer] = 100, 5000
	if diff := cmp.Diff(want, c.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
}

// TestUnlinkFound: cases the seeded simulation found (TestSimulationData,
// "levels and sessions"), one per bug fixed in commit 69dfb1e.
func TestUnlinkFound(t *testing.T) {
	one := res(1000, 100)
	origin := core.Source{Kind: core.FromOrigin}
	cache := core.Source{Kind: core.FromCache} // files a worker joins with are claimed before use (pins.go)
	derive := func(from core.FileID) core.Source { return core.Source{Kind: core.FromDerive, From: from} }
	lost := outcome(core.WorkerLost, "worker 1 lost: crash")
	runScenarios(t, []scenario{
		{
			// Task 1, the last reader of 30, ends as its worker leaves:
			// the worker's copy goes with it, and only the copy that
			// stays is unlinked.
			name: "no Unlink to a worker that left",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{declared("a", core.Origin, core.LevelTask, 30), nil},
				{submit(files(task(1, one), ids(30), nil)), acts(fetch(1, 1, 30, origin, 0))},
				{fetched(1, 100), acts(dispatch(1, 1, 1))},
				{core.WorkerJoined{Worker: 2, Resources: res(1000, 1000), Cached: []core.CachedFile{{File: 30, Size: 100}}}, nil},
				{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(done(1, 1, 1, lost), unlink(2, 30))},
			},
			workers: []core.WorkerInfo{{ID: 2, Total: res(1000, 1000), Free: res(1000, 1000)}},
		},
		{
			// Task 1 ends at submit (7 is missing); task 2, later in
			// the batch, reads 30 too: 30 stays on worker 1 for it.
			name: "a task ended at submit leaves its inputs to the batch's other readers",
			steps: []step{
				{core.WorkerJoined{Worker: 1, Resources: res(1000, 1000), Cached: []core.CachedFile{{File: 30, Size: 100}}}, nil},
				{declared("a", core.Origin, core.LevelTask, 30), nil},
				{core.FileMissing{File: 7, Why: "file 7 is not at the manager"}, nil},
				{submit(files(task(1, one), ids(30, 7), nil), files(task(2, one), ids(30), nil)),
					acts(done(1, 0, 0, outcome(core.InputMissing, "file 7 is not at the manager")), fetch(1, 1, 30, cache, 100))},
				{fetched(1, 100), acts(dispatch(2, 1, 1))}, // the claim of the cached copy
				{ok(2, 1, 1), acts(success(2, 1, 1), unlink(1, 30))},
			},
		},
		{
			// Task 1 fails for good; task 2, which reads its output,
			// ends with it. 30, which only task 1 read, is unlinked after
			// both Dones.
			name: "an Unlink follows the Done of every task that ended",
			steps: []step{
				{core.WorkerJoined{Worker: 1, Resources: res(1000, 1000), Cached: []core.CachedFile{{File: 30, Size: 100}}}, nil},
				{declared("a", core.Origin, core.LevelTask, 30), nil},
				{submit(files(task(1, one), ids(30), ids(10)), files(task(2, one), ids(10), nil)), acts(fetch(1, 1, 30, cache, 100))},
				{fetched(1, 100), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, outcome(core.Failed, "exit 1")), acts(
					done(1, 1, 1, outcome(core.Failed, "exit 1")),
					done(2, 0, 0, outcome(core.InputMissing, "input produced by task 1 is missing: that task ended with failed")),
					unlink(1, 30))},
			},
		},
		{
			// Task 1 is cancelled while archive 20 comes for it: 20 is
			// unlinked as it lands, and 21 is not unpacked from it. A
			// later reader brings both again.
			name: "nothing is unpacked from an archive unlinked as it landed",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.FilesDeclared{Session: "a", Files: []core.FileSpec{{ID: 20, Kind: core.Origin, Level: core.LevelTask}, {ID: 21, Kind: core.Derived, From: 20}}}, nil},
				{submit(files(task(1, one), ids(21), nil)), acts(fetch(1, 1, 20, origin, 0))},
				{core.CancelTask{Task: 1}, acts(done(1, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
				{fetched(1, 700), acts(unlink(1, 20))},
				{submit(files(task(2, one), ids(21), nil)), acts(fetch(2, 1, 20, origin, 700))},
				{fetched(2, 700), acts(fetch(3, 1, 21, derive(20), 0))},
				{fetched(3, 2000), acts(dispatch(2, 1, 1))},
			},
		},
	})
}
