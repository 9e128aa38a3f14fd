package core_test

import (
	"fmt"
	"testing"

	"trellis/internal/core"
)

// flow marks d as the Done of a dataflow task.
func flow(d core.Done) core.Done { d.Dataflow = true; return d }

// cuts makes a scenario of each prefix of steps that ends at a key of
// tallies, checking the Tally there: the counts by class after each
// transition of the steps.
func cuts(name string, steps []step, tallies map[int]core.Tally) []scenario {
	var out []scenario
	for n := 1; n <= len(steps); n++ {
		if want, ok := tallies[n]; ok {
			out = append(out, scenario{name: fmt.Sprintf("%s, after step %d", name, n),
				steps: steps[:n], tally: &want})
		}
	}
	return out
}

// TestDataflow checks what the core counts as a dataflow task (a plain
// task that reads a file a task produces or writes a temp file), that its
// class holds through every state, and that its Done says so.
func TestDataflow(t *testing.T) {
	one := res(1000, 100)
	var tests []scenario

	// A temp file's producer (1), a plain task (3), and the consumer (2),
	// which stages on worker 2 from its peer, then runs.
	tests = append(tests, cuts("staging and running", []step{
		{join(1, res(1000, 1000)), nil},
		{temps(10), nil},
		{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(task(3, one), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
		{kept(1, 1, 1, 5000, 10), acts(flow(success(1, 1, 1)), dispatch(3, 1, 1))},
		{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
		{fetched(1, 5000), acts(dispatch(2, 1, 2))},
		{ok(3, 1, 1), acts(success(3, 1, 1))},
		{ok(2, 1, 2), acts(flow(success(2, 1, 2)))},
	}, map[int]core.Tally{
		3: {Tasks: core.StateCounts{Ready: 1}, Dataflow: core.StateCounts{Waiting: 1, Running: 1}},
		4: {Tasks: core.StateCounts{Running: 1}, Dataflow: core.StateCounts{Ready: 1, Finished: 1}},
		5: {Tasks: core.StateCounts{Running: 1}, Dataflow: core.StateCounts{Staging: 1, Finished: 1}},
		6: {Tasks: core.StateCounts{Running: 1}, Dataflow: core.StateCounts{Running: 1, Finished: 1}},
		8: {Tasks: core.StateCounts{Finished: 1}, Dataflow: core.StateCounts{Finished: 2}},
	})...)

	// The only copy is lost with its worker before the consumer ran: the
	// producer runs again, counted once as finished.
	tests = append(tests, cuts("lineage", []step{
		{join(1, res(1000, 1000)), nil},
		{temps(10), nil},
		{submit(files(prio(task(1, one), 1), nil, ids(10)), prio(retries(task(3, one), 1, false), 1), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
		{kept(1, 1, 1, 5000, 10), acts(flow(success(1, 1, 1)), dispatch(3, 1, 1))},
		{join(2, res(1000, 1000)), acts(fetch(1, 2, 10, peer(1), 5000))},
		{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(
			core.Requeued{Task: 3, Attempt: 1, Reason: outcome(core.WorkerLost, "worker 1 lost: killed")},
			core.Rerun{Task: 1, File: 10},
			dispatch(1, 2, 2),
		)},
		{kept(1, 2, 2, 5000, 10), acts(core.Recreated{Task: 1, Attempt: 2, Worker: 2}, dispatch(3, 2, 2))},
		{ok(3, 2, 2), acts(success(3, 2, 2), dispatch(2, 1, 2))},
		{ok(2, 1, 2), acts(flow(success(2, 1, 2)))},
	}, map[int]core.Tally{
		6: {Tasks: core.StateCounts{Ready: 1}, Dataflow: core.StateCounts{Waiting: 1, Running: 1, Finished: 1}},
		7: {Tasks: core.StateCounts{Running: 1}, Dataflow: core.StateCounts{Ready: 1, Finished: 1}},
		9: {Tasks: core.StateCounts{Finished: 1}, Dataflow: core.StateCounts{Finished: 2}},
	})...)

	// Rejected at submission, a task is counted in its class too; a
	// producer's failure ends its consumer, a dataflow task, with it.
	tests = append(tests, cuts("rejected and failed", []step{
		{temps(10), nil},
		{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), ids(11)), files(task(7, one), nil, ids(30))), nil},
		{submit(files(task(5, one), nil, ids(10)), files(task(6, one), nil, ids(30))), acts(
			flow(done(5, 0, 0, outcome(core.Failed, "output file 10 is already produced by task 1"))),
			done(6, 0, 0, outcome(core.Failed, "output file 30 is already produced by task 7")))},
		{core.CancelTask{Task: 1}, acts(
			flow(done(1, 0, 0, outcome(core.Cancelled, "cancelled before it ran"))),
			flow(done(2, 0, 0, outcome(core.InputMissing, "input produced by task 1 is missing: that task ended with cancelled"))))},
	}, map[int]core.Tally{
		2: {Tasks: core.StateCounts{Ready: 1}, Dataflow: core.StateCounts{Ready: 1, Waiting: 1}},
		3: {Tasks: core.StateCounts{Ready: 1, Finished: 1}, Dataflow: core.StateCounts{Ready: 1, Waiting: 1, Finished: 1}},
		4: {Tasks: core.StateCounts{Ready: 1, Finished: 1}, Dataflow: core.StateCounts{Finished: 3}},
	})...)

	// A consumer before its producer in one batch is a dataflow task (the
	// class is decided once the batch's outputs are claimed); a plain
	// output read by no task, a file at the manager and a call reading a
	// temp file make no dataflow task.
	tests = append(tests, cuts("what is dataflow", []step{
		{core.FilesDeclared{Files: []core.FileSpec{{ID: 10, Kind: core.Produced, Upload: true}, {ID: 20, Kind: core.External, Size: 10}, {ID: 40, Kind: core.Produced}}}, nil},
		{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2}, nil},
		{submit(files(task(2, one), ids(30), nil), files(task(1, one), nil, ids(30)), files(task(3, one), nil, ids(10)), files(task(4, one), ids(20), nil),
			files(task(5, one), nil, ids(40)), files(callOf(6, 7, 0), ids(40), nil)), nil},
	}, map[int]core.Tally{
		3: {Tasks: core.StateCounts{Ready: 3}, Dataflow: core.StateCounts{Waiting: 1, Ready: 1}, Calls: core.StateCounts{Waiting: 1}},
	})...)
	runScenarios(t, tests)
}
