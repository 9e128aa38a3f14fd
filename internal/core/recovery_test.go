package core_test

import (
	"testing"

	"trellis/internal/core"
)

func recovered(id core.TaskID, attempt uint32, o core.Outcome, outs ...core.OutputInfo) core.TaskRecovered {
	return core.TaskRecovered{Task: id, Attempt: attempt, Outcome: o, Outputs: outs}
}

// TestTaskRecovered replays what a journal holds after a restart: tasks
// submitted (no worker yet), then those that had ended.
func TestTaskRecovered(t *testing.T) {
	r := res(1000, 100)
	okOutcome := core.Outcome{Kind: core.Success}
	atManager := core.OutputInfo{File: 10, Size: 5, Manager: true, Inline: true}
	runScenarios(t, []scenario{{
		name: "a success releases its consumer and follower; the output is at the manager",
		steps: []step{
			{submit(files(task(1, r), nil, ids(10)), files(task(2, r), ids(10), nil), after(task(3, r), 1)), nil},
			{recovered(1, 2, okOutcome, atManager), acts(success(1, 2, 0))},
			{join(1, res(2000, 200)), acts(inline(dispatch(2, 1, 1), 10), dispatch(3, 1, 1))},
		},
		counts: &counts{Running: 2, Finished: 1},
	}, {
		name: "a failure fails its consumer and follower as it did the first time",
		steps: []step{
			{submit(files(task(1, r), nil, ids(10)), files(task(2, r), ids(10), nil), after(task(3, r), 1)), nil},
			{recovered(1, 1, outcome(core.Failed, "exit status 1")), acts(
				done(1, 1, 0, outcome(core.Failed, "exit status 1")),
				done(2, 0, 0, outcome(core.InputMissing, "input produced by task 1 is missing: that task ended with failed")),
				done(3, 0, 0, outcome(core.InputMissing, "after task 1, which ended with failed")),
			)},
			{join(1, r), nil},
		},
		counts: &counts{Finished: 3},
	}, {
		name: "an output that lived only in workers is recreated when a task needs it",
		steps: []step{
			{submit(files(task(1, r), nil, ids(10)), files(task(2, r), ids(10), nil)), nil},
			{recovered(1, 1, okOutcome), acts(core.Done{Task: 1, Attempt: 1, Outcome: okOutcome, Retained: true})},
			{join(1, res(2000, 200)), acts(core.Rerun{Task: 1, File: 10}, dispatch(1, 2, 1))},
			{core.TaskFinished{Task: 1, Attempt: 2, Worker: 1, Outcome: okOutcome, Outputs: []core.OutputInfo{{File: 10, Size: 5, Kept: true}}},
				acts(core.Recreated{Task: 1, Attempt: 2, Worker: 1}, dispatch(2, 1, 1))},
		},
		counts: &counts{Running: 1, Finished: 1},
	}, {
		name: "a queued call leaves its library's line",
		steps: []step{
			{core.LibraryInstalled{Lib: 1, Resources: r, Slots: 1}, nil},
			{submit(core.Task{ID: 1, Lib: 1, Role: core.Call}), nil},
			{recovered(1, 1, okOutcome), acts(success(1, 1, 0))},
			// The instance the call asked for was queued already; it
			// starts, and is stopped once idle, as after a CancelTask.
			{join(1, res(2000, 200)), acts(core.Dispatch{Worker: 1, Instance: 1, Attempt: 1, Lib: 1})},
		},
	}, {
		name: "a task that ended, runs, or was never submitted is left alone",
		steps: []step{
			{join(1, r), nil},
			{submit(task(1, r), task(2, r)), acts(dispatch(1, 1, 1))},
			{recovered(1, 1, okOutcome), nil},
			{recovered(99, 1, okOutcome), nil},
			{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			{recovered(1, 1, outcome(core.Failed, "exit status 1")), nil},
		},
		counts: &counts{Running: 1, Finished: 1},
	}})
}
