package core_test

import (
	"testing"

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
				{submit(files(task(1, one), nil, ids(10)), task(3, one), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
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
				{submit(files(task(1, one), nil, ids(10)), retries(task(3, one), 1, false), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
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
				{submit(files(task(1, one), nil, ids(10)), task(3, one), retries(files(task(2, one), ids(10), nil), 1, false)), acts(dispatch(1, 1, 1))},
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
					core.Requeued{Task: 2, Attempt: 0, Reason: outcome(core.InputMissing, "fetch file 10 from peer: connection reset (after 4 tries)")})},
			},
			counts: &counts{Running: 1, Finished: 1}, // task 2 stages again on worker 2
		},
		{
			// A disk-full worker: the task is retried (not the source).
			name: "destination failure fails the staging task over",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, one), nil, ids(10)), task(3, one), retries(files(task(2, one), ids(10), nil), 0, false)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 5000, 10), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
				{core.TransferDone{Transfer: 1, Why: "disk exhausted"}, acts(done(2, 0, 2, outcome(core.InputMissing, "fetch file 10 from peer: disk exhausted")))},
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
				{core.TransferDone{Transfer: 4, SourceFault: true, Why: "404 Not Found"}, acts(done(1, 0, 1, outcome(core.InputMissing, "fetch file 20 from origin: 404 Not Found (after 4 tries)")))},
			},
			counts: &counts{Finished: 1},
		},
	})
}
