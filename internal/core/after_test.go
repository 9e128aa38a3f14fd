package core_test

import (
	"testing"

	"trellis/internal/core"
)

func after(t core.Task, ids ...core.TaskID) core.Task { t.After = ids; return t }

func TestAfter(t *testing.T) {
	one := res(1000, 100)
	boom := core.Outcome{Kind: core.Failed, ExitCode: 2, Message: "boom"}
	afterMissing := func(msg string) core.Outcome { return outcome(core.InputMissing, msg) }
	forgotten := "after task 1, which has ended and been forgotten, or was never submitted"
	runScenarios(t, []scenario{
		{
			name: "a task runs after the one it names succeeds",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, one), after(task(2, one), 1)), acts(dispatch(1, 1, 1))},
				{core.Tick{}, nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
		{
			name: "a waiting follower counts as waiting",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, one), after(task(2, one), 1)), acts(dispatch(1, 1, 1))},
			},
			counts: &counts{Waiting: 1, Running: 1},
			states: map[core.TaskID]st{2: {core.Waiting, 0}},
		},
		{
			name: "a batch may list the follower first",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(after(task(2, one), 1), task(1, one)), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			name: "after two tasks and a file: waits for all three",
			steps: []step{
				{join(1, res(3000, 1000)), nil},
				{submit(task(1, one), task(2, one), files(task(3, one), nil, ids(10)), files(after(task(4, one), 1, 2, 1), ids(10), nil)),
					acts(dispatch(1, 1, 1), dispatch(2, 1, 1), dispatch(3, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1))},
				{ok(3, 1, 1), acts(success(3, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1), inline(dispatch(4, 1, 1), 10))},
			},
		},
		{
			name: "a failure ends the followers input missing, transitively",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(
					task(1, one),
					after(task(2, one), 1),
					after(task(3, one), 2),
					files(after(task(4, one), 1), nil, ids(10)),
					files(task(5, one), ids(10), nil),
					task(6, one),
				), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(
					done(1, 1, 1, boom),
					done(2, 0, 0, afterMissing("after task 1, which ended with failed")),
					done(4, 0, 0, afterMissing("after task 1, which ended with failed")),
					done(3, 0, 0, afterMissing("after task 2, which ended with input missing")),
					done(5, 0, 0, outcome(core.InputMissing, "input produced by task 4 is missing: that task ended with input missing")),
					dispatch(6, 1, 1),
				)},
			},
			counts: &counts{Running: 1, Finished: 5},
		},
		{
			name: "a retry of the task named keeps the follower waiting",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, true), after(task(2, one), 1)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(core.Requeued{Task: 1, Attempt: 1, Reason: boom}, dispatch(1, 2, 1))},
				{ok(1, 2, 1), acts(success(1, 2, 1), dispatch(2, 1, 1))},
			},
		},
		{
			name: "a cancelled task ends its followers",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one), after(task(2, one), 1)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 1}, acts(core.Kill{Task: 1, Attempt: 1, Worker: 1})},
				{ok(1, 1, 1), acts(done(1, 1, 1, outcome(core.Cancelled, "cancelled")),
					done(2, 0, 0, afterMissing("after task 1, which ended with cancelled")))},
			},
		},
		{
			name: "a cancelled follower does not run",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one), after(task(2, one), 1)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 2}, acts(done(2, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
			},
			counts: &counts{Finished: 2},
		},
		{
			name: "after a task of an earlier batch that is running",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{submit(after(task(2, one), 1)), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			name: "after a task of an earlier batch that is running and fails",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{submit(after(task(2, one), 1)), nil},
				{finished(1, 1, 1, boom), acts(done(1, 1, 1, boom), done(2, 0, 0, afterMissing("after task 1, which ended with failed")))},
			},
		},
		{
			name: "after a task of an earlier batch that succeeded and is kept: runs at once",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(10))), acts(dispatch(1, 1, 1))},
				// Its output is only on the worker: the core keeps the task (lineage).
				{core.TaskFinished{Task: 1, Attempt: 1, Worker: 1, Outcome: core.Outcome{Kind: core.Success},
					Outputs: []core.OutputInfo{{File: 10, Kept: true}}}, acts(success(1, 1, 1))},
				{submit(after(task(2, one), 1)), acts(dispatch(2, 1, 1))},
			},
		},
		{
			name:   "after a task of an earlier batch that failed and was forgotten",
			strict: true,
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(done(1, 1, 1, boom))}, // not Retained: forgotten
				{submit(after(task(2, one), 1)), acts(done(2, 0, 0, afterMissing(forgotten)))},
			},
		},
		{
			name:   "after a task that was forgotten after it succeeded, or never submitted",
			strict: true,
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))}, // not Retained: forgotten
				{submit(after(task(2, one), 1), after(task(3, one), 9)), acts(
					done(2, 0, 0, afterMissing(forgotten)),
					done(3, 0, 0, afterMissing("after task 9, which has ended and been forgotten, or was never submitted")),
				)},
			},
		},
		{
			name: "after a task of the batch whose claim failed",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(10))), acts(dispatch(1, 1, 1))},
				{submit(files(task(2, one), nil, ids(10)), after(task(3, one), 2)), acts(
					done(2, 0, 0, outcome(core.Failed, "output file 10 is already produced by task 1")),
					done(3, 0, 0, afterMissing("after task 2, which ended with failed")),
				)},
			},
		},
		{
			name: "after a task of the batch that can never run, in either order",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{core.FileMissing{File: 7, Why: "file 7 is not at the manager"}, nil},
				{submit(after(task(1, one), 2), files(task(2, one), ids(7), nil), after(task(3, one), 2)), acts(
					done(2, 0, 0, afterMissing("file 7 is not at the manager")),
					done(1, 0, 0, afterMissing("after task 2, which ended with input missing")),
					done(3, 0, 0, afterMissing("after task 2, which ended with input missing")),
				)},
			},
			counts: &counts{Finished: 3},
		},
		{
			name: "orderings that form a cycle end the tasks on it and behind it",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(after(task(1, one), 2), after(task(2, one), 1), after(task(3, one), 1), task(4, one), after(task(5, one), 5)), acts(
					done(1, 0, 0, afterMissing("task 1: its after orderings form a cycle within its batch")),
					done(2, 0, 0, afterMissing("task 2: its after orderings form a cycle within its batch")),
					done(3, 0, 0, afterMissing("task 3: its after orderings form a cycle within its batch")),
					done(5, 0, 0, afterMissing("task 5: its after orderings form a cycle within its batch")),
					dispatch(4, 1, 1),
				)},
			},
			counts:  &counts{Running: 1, Finished: 4},
			workers: []core.WorkerInfo{{ID: 1, Total: res(2000, 1000), Free: res(1000, 900), Running: []core.TaskID{4}}},
		},
	})
}
