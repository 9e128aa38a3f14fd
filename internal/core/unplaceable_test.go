package core_test

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/core"
)

func stuck(id core.TaskID, why string) core.Unplaceable {
	return core.Unplaceable{Tasks: []core.TaskID{id}, Why: why}
}

// told is one Unplaceable of several tasks.
func told(why string, ids ...core.TaskID) core.Unplaceable {
	return core.Unplaceable{Tasks: ids, Why: why}
}

func tick(s int) core.Tick { return core.Tick{Now: time.Duration(s) * time.Second} }

func limit(t core.Task, d time.Duration) core.Task { t.UnplaceableTimeout = d; return t }

func gpuRes(milli, memMB int64, gpus ...int32) core.Resources {
	r := res(milli, memMB)
	r.GPUs = int64(len(gpus))
	return r
}

// TestUnplaceable runs its steps with every action compared, Unplaceable
// actions included (the other tables leave them out).
func TestUnplaceable(t *testing.T) {
	big := res(64000, 1000)
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "told at submission; told again as the reason changes; cleared before it is placed",
			steps: []step{
				{join(1, res(2000, 4000)), nil},
				{submit(task(1, big), task(2, res(1000, 100))), acts(
					stuck(1, "no connected worker has 64 cores (largest: 2)"),
					dispatch(2, 1, 1),
				)},
				{tick(1), nil}, // not told again
				{join(2, res(4000, 4000)), acts(stuck(1, "no connected worker has 64 cores (largest: 4)"))},
				{join(3, res(1000, 4000)), nil}, // the largest is the same: nothing to tell
				{join(4, res(64000, 8000)), acts(stuck(1, ""), dispatch(1, 1, 4))},
				{tick(2), nil},
			},
		},
		{
			// One action tells a batch, and every task of a shape when
			// workers change: not one per task.
			name: "told once per batch and per shape",
			steps: []step{
				{submit(task(1, res(1000, 100)), task(2, res(1000, 100)), task(3, big), task(4, res(1000, 100))), acts(
					told("no worker is connected", 1, 2, 3, 4),
				)},
				{join(1, res(500, 4000)), acts(
					told("no connected worker has 1 core (largest: 0.5)", 1, 2, 4),
					told("no connected worker has 64 cores (largest: 0.5)", 3),
				)},
				{submit(task(5, big), task(6, big)), acts(told("no connected worker has 64 cores (largest: 0.5)", 5, 6))},
				{join(2, res(2000, 4000)), acts(told("", 1, 2, 4), told("no connected worker has 64 cores (largest: 2)", 3, 5, 6),
					dispatch(1, 1, 2), dispatch(2, 1, 2))},
				{join(3, big), acts(told("", 3, 5, 6), dispatch(3, 1, 3))},
			},
		},
		{
			name: "no worker yet, then one too small",
			steps: []step{
				{submit(task(1, res(1000, 100))), acts(stuck(1, "no worker is connected"))},
				{join(1, res(500, 4000)), acts(stuck(1, "no connected worker has 1 core (largest: 0.5)"))},
				{join(2, res(1000, 4000)), acts(stuck(1, ""), dispatch(1, 1, 2))},
			},
		},
		{
			name: "each resource short is named",
			steps: []step{
				{join(1, res(2000, 4096), 0), nil},
				{submit(task(1, core.Resources{MilliCores: 8000, MemoryMB: 8192, DiskMB: 100, GPUs: 2})), acts(
					stuck(1, "no connected worker has 8 cores (largest: 2) or 8192 MB of memory (largest: 4096 MB) or 100 MB of disk (largest: 0 MB) or 2 GPUs (largest: 1)"),
				)},
			},
		},
		{
			// Each resource is had by some worker, not all by one.
			name: "what no single worker has together",
			steps: []step{
				{join(1, res(8000, 1000)), nil},
				{join(2, res(1000, 1000), 0), nil},
				{submit(task(1, gpuRes(4000, 1000, 0))), acts(stuck(1, "no connected worker has 4 cores, 1000 MB of memory and 1 GPU together"))},
			},
		},
		{
			// Busy is not unplaceable: the task waits for room, silently.
			name: "a worker that fits but is busy",
			steps: []step{
				{join(1, res(2000, 4000)), nil},
				{submit(task(1, res(2000, 100)), task(2, res(2000, 100))), acts(dispatch(1, 1, 1))},
				{tick(1), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
			},
		},
		{
			// The only worker that fits leaves with the task: it is queued
			// again, and told why it cannot be placed.
			name: "the only worker that fits leaves",
			steps: []step{
				{join(1, res(1000, 4000)), nil},
				{join(2, big), nil},
				{submit(retries(task(1, big), 1, false), task(2, big)), acts(dispatch(1, 1, 2))},
				{core.WorkerLeft{Worker: 2, Reason: "lost"}, acts(
					stuck(2, "no connected worker has 64 cores (largest: 1)"),
					core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "worker 2 lost: lost")},
					stuck(1, "no connected worker has 64 cores (largest: 1)"),
				)},
			},
		},
		{
			name: "every worker draining",
			steps: []step{
				{join(1, res(1000, 4000)), nil},
				{core.WorkerDraining{Worker: 1}, nil},
				{submit(task(1, res(1000, 100))), acts(stuck(1, "every connected worker is draining"))},
				{core.WorkerLeft{Worker: 1, Reason: "drained"}, acts(stuck(1, "no worker is connected"))},
			},
		},
		{
			// The limit counts from the first Tick after the task was
			// told, so that it waits at least that long; its reader fails
			// with it, and the other tasks run.
			name: "ends after its unplaceable timeout",
			steps: []step{
				{tick(10), nil},
				{join(1, res(2000, 4000)), nil},
				{submit(files(limit(task(1, big), 2*time.Second), nil, ids(5)), files(task(2, res(1000, 100)), ids(5), nil), task(3, res(1000, 100))), acts(
					stuck(1, "no connected worker has 64 cores (largest: 2)"),
					dispatch(3, 1, 1),
				)},
				{tick(11), nil}, // from now
				{tick(12), nil},
				{tick(13), acts(
					done(1, 0, 0, outcome(core.ResourceExceeded, "waited 2s (its unplaceable timeout) for a worker that could run it: no connected worker has 64 cores (largest: 2); connect a worker that has what it asks for, or ask for less")),
					done(2, 0, 0, outcome(core.InputMissing, "input produced by task 1 is missing: that task ended with resource exceeded")),
				)},
				{ok(3, 1, 1), acts(success(3, 1, 1))},
			},
		},
		{
			// A worker that fits came and went: the clock starts again.
			name: "a cleared reason restarts the clock",
			steps: []step{
				{join(1, res(2000, 4000)), nil},
				{join(2, res(2000, 4000)), nil},
				{submit(task(9, res(2000, 100)), limit(retries(task(1, res(4000, 100)), 1, false), 2*time.Second)), acts(
					stuck(1, "no connected worker has 4 cores (largest: 2)"),
					dispatch(9, 1, 1),
				)},
				{tick(1), nil},
				{tick(2), nil},
				{join(3, res(4000, 4000)), acts(stuck(1, ""), dispatch(1, 1, 3))},
				{core.TaskReturned{Task: 1, Attempt: 1, Worker: 3}, acts(
					core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "returned unfinished by worker 3")},
					dispatch(1, 2, 3),
				)},
				{core.WorkerLeft{Worker: 3, Reason: "lost"}, acts(
					core.Requeued{Task: 1, Attempt: 2, Reason: outcome(core.WorkerLost, "worker 3 lost: lost")},
					stuck(1, "no connected worker has 4 cores (largest: 2)"),
				)},
				{tick(3), nil},
				{tick(4), nil},
				{tick(5), acts(done(1, 2, 3, outcome(core.ResourceExceeded, "waited 2s (its unplaceable timeout) for a worker that could run it: no connected worker has 4 cores (largest: 2); connect a worker that has what it asks for, or ask for less")))},
			},
		},
		{
			name: "a cancelled task has its Done, no clearing",
			steps: []step{
				{join(1, res(1000, 4000)), nil},
				{submit(task(1, big)), acts(stuck(1, "no connected worker has 64 cores (largest: 1)"))},
				{core.CancelTask{Task: 1}, acts(done(1, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
				{join(2, big), nil},
			},
		},
		{
			// Calls wait for an instance of their library, which no
			// worker has room for.
			name: "calls of a library larger than every worker",
			steps: []step{
				{join(1, res(2000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(8000, 500), Slots: 2}, nil},
				{submit(callOf(1, 7, 0), limit(callOf(2, 7, 0), time.Second)), acts(
					told("its library's instances cannot be placed: no connected worker has 8 cores (largest: 2)", 1, 2),
				)},
				{tick(1), nil},
				{tick(2), acts(done(2, 0, 0, outcome(core.ResourceExceeded, "waited 1s (its unplaceable timeout) for a worker that could run it: its library's instances cannot be placed: no connected worker has 8 cores (largest: 2); connect a worker that has what it asks for, or ask for less")))},
				{join(2, res(8000, 4000)), acts(start(1, 1, 2, 7), stuck(1, ""))},
				{submit(callOf(3, 7, 0)), nil}, // an instance is placed: it waits for its slot
				{ready(1, 2), acts(inSlot(1, 1, 2, 1), inSlot(3, 1, 2, 1))},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := core.New()
			for i, s := range tc.steps {
				got := clearFetchTask(clearDone(c.Step(s.ev), false, !slices.ContainsFunc(s.want, dataflow)))
				if diff := cmp.Diff(s.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("step %d: Step(%#v) mismatch (-want +got):\n%s", i, s.ev, diff)
				}
			}
		})
	}
}

// TestUnplaceableTasks lists what status shows: how many tasks and calls
// are unplaceable, and some of them with their reasons.
func TestUnplaceableTasks(t *testing.T) {
	c := core.New()
	c.Step(join(1, res(2000, 4000)))
	c.Step(core.LibraryInstalled{Lib: 7, Resources: res(8000, 500)})
	c.Step(submit(task(1, res(64000, 100)), task(2, res(1000, 100)), task(3, res(64000, 100)), task(4, res(4000, 100)), callOf(5, 7, 0)))
	c.Step(tick(3))
	n, some := c.UnplaceableTasks(10)
	want := []core.UnplaceableTask{
		{Task: 1, Why: "no connected worker has 64 cores (largest: 2)", Since: 3 * time.Second},
		{Task: 3, Why: "no connected worker has 64 cores (largest: 2)", Since: 3 * time.Second},
		{Task: 4, Why: "no connected worker has 4 cores (largest: 2)", Since: 3 * time.Second},
		{Task: 5, Why: "its library's instances cannot be placed: no connected worker has 8 cores (largest: 2)", Since: 3 * time.Second},
	}
	if diff := cmp.Diff(want, some); n != 4 || diff != "" {
		t.Errorf("UnplaceableTasks(10) = %d, mismatch (-want +got):\n%s\nwant 4", n, diff)
	}
	if n, some := c.UnplaceableTasks(2); n != 4 || len(some) != 2 {
		t.Errorf("UnplaceableTasks(2) = %d, %v; want 4 and two of them", n, some)
	}
	c.Step(join(2, res(64000, 4000)))
	if n, some := c.UnplaceableTasks(10); n != 0 || len(some) != 0 {
		t.Errorf("after a worker that fits every task joined: UnplaceableTasks(10) = %d, %v; want none", n, some)
	}
}
