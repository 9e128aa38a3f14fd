package core_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/core"
)

// step is one call to Step and the actions it must return, in order.
type step struct {
	ev   core.Event
	want []core.Action
}

// counts is what Core.Counts returns.
type counts struct{ Waiting, Ready, Running, Finished int }

func countsOf(c *core.Core) counts {
	w, r, run, f := c.Counts()
	return counts{w, r, run, f}
}

// runSteps feeds steps to c and compares every result. Forget, Release and
// Unplaceable actions, Done.Retained, Done.Dataflow and Fetch.Task are left
// out unless a step wants one (TestDataflow checks the class, TestFetchTask
// the task), and so is
// Dispatch.Keep unless a step wants a Dispatch with one: TestForget,
// TestKeep and the simulation check them.
func runSteps(t *testing.T, c *core.Core, steps []step) {
	t.Helper()
	compareSteps(t, c, steps, false)
}

// compareSteps is runSteps; strict compares Forget and Retained always.
func compareSteps(t *testing.T, c *core.Core, steps []step, strict bool) {
	t.Helper()
	for i, s := range steps {
		got := c.Step(s.ev)
		if !slices.ContainsFunc(s.want, isUnplaceable) {
			got = slices.DeleteFunc(slices.Clone(got), isUnplaceable)
		}
		if !slices.ContainsFunc(s.want, isRelease) {
			got = slices.DeleteFunc(slices.Clone(got), isRelease)
		}
		if !strict && !slices.ContainsFunc(s.want, isForget) {
			got = slices.DeleteFunc(slices.Clone(got), isForget)
		}
		got = clearDone(got, !strict && !slices.ContainsFunc(s.want, retains), !slices.ContainsFunc(s.want, dataflow))
		if !slices.ContainsFunc(s.want, fetchFor) {
			got = clearFetchTask(got)
		}
		if !slices.ContainsFunc(s.want, keeps) {
			got = slices.Clone(got)
			for i, a := range got {
				if d, ok := a.(core.Dispatch); ok && d.Files != nil {
					inl := d.Inline()
					d.Files = nil
					if len(inl) > 0 {
						d.Files = &core.DispatchFiles{Inline: inl}
					}
					got[i] = d
				}
			}
		}
		if diff := cmp.Diff(s.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("step %d: Step(%#v) mismatch (-want +got):\n%s", i, s.ev, diff)
		}
	}
}

func isForget(a core.Action) bool { _, ok := a.(core.Forget); return ok }

func isUnplaceable(a core.Action) bool { _, ok := a.(core.Unplaceable); return ok }

func isRelease(a core.Action) bool { _, ok := a.(core.Release); return ok }

func retains(a core.Action) bool { d, ok := a.(core.Done); return ok && d.Retained }

func dataflow(a core.Action) bool { d, ok := a.(core.Done); return ok && d.Dataflow }

func fetchFor(a core.Action) bool { f, ok := a.(core.Fetch); return ok && f.Task != 0 }

// clearFetchTask returns acts with Fetch.Task cleared (a copy if any is).
func clearFetchTask(acts []core.Action) []core.Action {
	if !slices.ContainsFunc(acts, fetchFor) {
		return acts
	}
	acts = slices.Clone(acts)
	for i, a := range acts {
		if f, ok := a.(core.Fetch); ok {
			f.Task = 0
			acts[i] = f
		}
	}
	return acts
}

// clearDone returns acts with Done.Retained and Done.Dataflow cleared as
// asked (a copy if any is).
func clearDone(acts []core.Action, retained, dataflow bool) []core.Action {
	if !retained && !dataflow {
		return acts
	}
	acts = slices.Clone(acts)
	for i, a := range acts {
		if d, ok := a.(core.Done); ok {
			d.Retained = d.Retained && !retained
			d.Dataflow = d.Dataflow && !dataflow
			acts[i] = d
		}
	}
	return acts
}

func keeps(a core.Action) bool { d, ok := a.(core.Dispatch); return ok && len(d.Keep()) > 0 }

// scenario is a table entry: steps, then optional checks of the final state.
type scenario struct {
	name    string
	steps   []step
	counts  *counts            // nil: not checked
	tally   *core.Tally        // nil: not checked
	workers []core.WorkerInfo  // nil: not checked
	states  map[core.TaskID]st // task states to check; finished tasks are absent
	strict  bool               // compare Forget actions and Done.Retained in every step
	pruning bool               // compare WorkerInfo.CacheNeeded, Pruned, PeakCache and CacheReleased too
}

// st is what Core.TaskState returns for a task the core still knows.
type st struct {
	State   core.State
	Attempt uint32
}

func runScenarios(t *testing.T, tests []scenario) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := core.New()
			compareSteps(t, c, tc.steps, tc.strict)
			if tc.counts != nil {
				if diff := cmp.Diff(*tc.counts, countsOf(c)); diff != "" {
					t.Errorf("Counts() mismatch (-want +got):\n%s", diff)
				}
			}
			if tc.tally != nil {
				if diff := cmp.Diff(*tc.tally, c.Tally()); diff != "" {
					t.Errorf("Tally() mismatch (-want +got):\n%s", diff)
				}
			}
			if tc.workers != nil {
				opts := []cmp.Option{cmpopts.EquateEmpty()}
				if !tc.pruning {
					opts = append(opts, cmpopts.IgnoreFields(core.WorkerInfo{}, "CacheNeeded", "Pruned", "PeakCache", "CacheReleased"))
				}
				if diff := cmp.Diff(tc.workers, c.Workers(), opts...); diff != "" {
					t.Errorf("Workers() mismatch (-want +got):\n%s", diff)
				}
			}
			for id, want := range tc.states {
				s, a, ok := c.TaskState(id)
				if !ok {
					t.Errorf("TaskState(%d): task unknown, want %v attempt %d", id, want.State, want.Attempt)
					continue
				}
				if diff := cmp.Diff(want, st{s, a}); diff != "" {
					t.Errorf("TaskState(%d) mismatch (-want +got):\n%s", id, diff)
				}
			}
		})
	}
}

// Fixture builders.

func res(milli, memMB int64) core.Resources {
	return core.Resources{MilliCores: milli, MemoryMB: memMB}
}

func join(id core.WorkerID, r core.Resources, gpus ...int32) core.WorkerJoined {
	r.GPUs = int64(len(gpus))
	return core.WorkerJoined{Worker: id, Resources: r, GPUs: gpus}
}

func submit(tasks ...core.Task) core.TasksSubmitted { return core.TasksSubmitted{Tasks: tasks} }

func task(id core.TaskID, r core.Resources) core.Task { return core.Task{ID: id, Resources: r} }

func prio(t core.Task, p int32) core.Task { t.Priority = p; return t }

func retries(t core.Task, n int32, onError bool) core.Task {
	t.Retries, t.RetryOnError = n, onError
	return t
}

func files(t core.Task, inputs, outputs []core.FileID) core.Task {
	t.Inputs, t.Outputs = inputs, outputs
	return t
}

func ids(fs ...core.FileID) []core.FileID { return fs }

func finished(id core.TaskID, attempt uint32, w core.WorkerID, o core.Outcome) core.TaskFinished {
	return core.TaskFinished{Task: id, Attempt: attempt, Worker: w, Outcome: o}
}

func ok(id core.TaskID, attempt uint32, w core.WorkerID) core.TaskFinished {
	return finished(id, attempt, w, core.Outcome{Kind: core.Success})
}

func dispatch(id core.TaskID, attempt uint32, w core.WorkerID, gpus ...int32) core.Dispatch {
	return core.Dispatch{Task: id, Attempt: attempt, Worker: w, GPUs: gpus}
}

// inline adds the inputs d carries inline from the manager (outputs that a
// report left out are at the manager, inline).
func inline(d core.Dispatch, fs ...core.FileID) core.Dispatch { return withFiles(d, fs, d.Keep()) }

// withFiles sets what d says of files, nil when it says nothing.
func withFiles(d core.Dispatch, inline, keep []core.FileID) core.Dispatch {
	d.Files = nil
	if len(inline) > 0 || len(keep) > 0 {
		d.Files = &core.DispatchFiles{Inline: inline, Keep: keep}
	}
	return d
}

func done(id core.TaskID, attempt uint32, w core.WorkerID, o core.Outcome) core.Done {
	return core.Done{Task: id, Attempt: attempt, Worker: w, Outcome: o}
}

func success(id core.TaskID, attempt uint32, w core.WorkerID) core.Done {
	return done(id, attempt, w, core.Outcome{Kind: core.Success})
}

func outcome(k core.Kind, msg string) core.Outcome { return core.Outcome{Kind: k, Message: msg} }

func acts(as ...core.Action) []core.Action { return as }

func TestPlacement(t *testing.T) {
	one := res(1000, 100)
	runScenarios(t, []scenario{
		{
			// One slot, a batch listing the low-priority tasks first: the
			// order of the batch does not decide who runs first.
			name: "a batch is placed by priority, not by order",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one), task(2, res(500, 100)), prio(task(3, one), 9)), acts(dispatch(3, 1, 1))},
				{ok(3, 1, 1), acts(success(3, 1, 1), dispatch(1, 1, 1))},
			},
			counts: &counts{Ready: 1, Running: 1, Finished: 1},
		},
		{
			name: "priority then FIFO",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{submit(task(2, one), prio(task(3, one), 5), task(4, one), prio(task(5, one), 5)), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{ok(3, 1, 1), acts(success(3, 1, 1), dispatch(5, 1, 1))},
				{ok(5, 1, 1), acts(success(5, 1, 1), dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), dispatch(4, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 4},
		},
		{
			name: "priority across shapes",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(task(1, res(2000, 100))), acts(dispatch(1, 1, 1))},
				{submit(task(2, one), prio(task(3, res(2000, 100)), 1), task(4, one), task(5, res(500, 100))), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{ok(3, 1, 1), acts(success(3, 1, 1), dispatch(2, 1, 1), dispatch(4, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), dispatch(5, 1, 1))},
			},
			counts: &counts{Running: 2, Finished: 3},
		},
		{
			// The consumer of task 1 becomes ready as task 1 frees the
			// worker, but task 2 has waited with a higher priority.
			name: "freed capacity goes to the queue by priority, not to a released consumer",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1))), acts(dispatch(1, 1, 1))},
				{submit(prio(task(2, res(1000, 200)), 5), files(task(3, one), ids(1), nil)), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), inline(dispatch(3, 1, 1), 1))},
			},
		},
		{
			name: "freed capacity goes to the queue by priority, not to the retried task",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, true)), acts(dispatch(1, 1, 1))},
				{submit(prio(task(2, res(1000, 200)), 5)), nil},
				{finished(1, 1, 1, outcome(core.Failed, "x")), acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.Failed, "x")}, dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), dispatch(1, 2, 1))},
			},
		},
		{
			name: "a released consumer still goes to another worker at once",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1)), files(task(2, one), ids(1), nil)), acts(dispatch(1, 1, 1))},
				{core.WorkerDraining{Worker: 2}, nil},
				{join(3, res(500, 1000)), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), inline(dispatch(2, 1, 1), 1))},
			},
		},
		{
			name: "spreads to the worker with the most free cores, ties by ID",
			steps: []step{
				{join(1, res(4000, 1000)), nil},
				{join(2, res(8000, 1000)), nil},
				{submit(task(1, one), task(2, one), task(3, one), task(4, one), task(5, one)),
					acts(dispatch(1, 1, 2), dispatch(2, 1, 2), dispatch(3, 1, 2), dispatch(4, 1, 2), dispatch(5, 1, 1))},
			},
		},
		{
			name: "fractional cores",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, res(500, 10)), task(2, res(500, 10)), task(3, res(500, 10))), acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{submit(task(4, res(250, 10))), nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), dispatch(3, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1), dispatch(4, 1, 1))},
				{submit(task(5, res(250, 10)), task(6, res(1, 10))), acts(dispatch(5, 1, 1))},
			},
			counts: &counts{Ready: 1, Running: 3, Finished: 2},
			workers: []core.WorkerInfo{{
				ID: 1, Total: res(1000, 1000), Free: res(0, 970), Running: []core.TaskID{3, 4, 5}, TasksDone: 2,
			}},
			states: map[core.TaskID]st{3: {core.Running, 1}, 6: {core.Ready, 0}},
		},
		{
			name: "memory, disk and GPUs must fit; GPU devices are distinct and come back",
			steps: []step{
				{join(1, core.Resources{MilliCores: 4000, MemoryMB: 1000, DiskMB: 1000}), nil},
				{join(2, core.Resources{MilliCores: 2000, MemoryMB: 8000, DiskMB: 1000}), nil},
				{join(3, core.Resources{MilliCores: 4000, MemoryMB: 1000, DiskMB: 10000}, 3, 1), nil},
				// Cores fit the top worker (1), memory only worker 2: the scan finds it.
				{submit(task(1, res(1000, 4000))), acts(dispatch(1, 1, 2))},
				{submit(task(2, core.Resources{MilliCores: 1000, MemoryMB: 100, DiskMB: 5000})), acts(dispatch(2, 1, 3))},
				{submit(task(3, core.Resources{MilliCores: 1000, MemoryMB: 100, GPUs: 1})), acts(dispatch(3, 1, 3, 1))},
				{submit(task(4, core.Resources{MilliCores: 500, MemoryMB: 100, GPUs: 1})), acts(dispatch(4, 1, 3, 3))},
				{submit(task(5, core.Resources{MilliCores: 500, MemoryMB: 100, GPUs: 1})), nil},
				{submit(task(6, core.Resources{MilliCores: 1000, MemoryMB: 100, GPUs: 2})), nil},
				{ok(3, 1, 3), acts(success(3, 1, 3), dispatch(5, 1, 3, 1))},
				{ok(4, 1, 3), acts(success(4, 1, 3))},
				{ok(5, 1, 3), acts(success(5, 1, 3), dispatch(6, 1, 3, 1, 3))},
			},
			counts: &counts{Running: 3, Finished: 3},
			workers: []core.WorkerInfo{
				{ID: 1, Total: core.Resources{MilliCores: 4000, MemoryMB: 1000, DiskMB: 1000}, Free: core.Resources{MilliCores: 4000, MemoryMB: 1000, DiskMB: 1000}},
				{ID: 2, Total: core.Resources{MilliCores: 2000, MemoryMB: 8000, DiskMB: 1000}, Free: core.Resources{MilliCores: 1000, MemoryMB: 4000, DiskMB: 1000}, Running: []core.TaskID{1}},
				{ID: 3, Total: core.Resources{MilliCores: 4000, MemoryMB: 1000, DiskMB: 10000, GPUs: 2}, Free: core.Resources{MilliCores: 2000, MemoryMB: 800, DiskMB: 5000}, Running: []core.TaskID{2, 6}, TasksDone: 3},
			},
		},
		{
			name: "no dispatch to a draining worker",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{core.WorkerDraining{Worker: 1}, nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 2))},
				{submit(task(2, one), task(3, one)), nil},
				{core.Tick{}, nil},
				{ok(1, 1, 2), acts(success(1, 1, 2), dispatch(2, 1, 2))},
				{core.WorkerDraining{Worker: 2}, nil},
				{ok(2, 1, 2), acts(success(2, 1, 2))},
				{core.Tick{}, nil},
				{join(3, res(1000, 1000)), acts(dispatch(3, 1, 3))},
			},
			workers: []core.WorkerInfo{
				{ID: 1, Total: res(2000, 1000), Free: res(2000, 1000), Draining: true},
				{ID: 2, Total: res(1000, 1000), Free: res(1000, 1000), Draining: true, TasksDone: 2},
				{ID: 3, Total: res(1000, 1000), Free: res(0, 900), Running: []core.TaskID{3}},
			},
		},
		{
			name: "a task larger than every worker waits for one that fits",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, res(2000, 100))), nil},
				{core.Tick{}, nil},
				{join(2, res(4000, 1000)), acts(dispatch(1, 1, 2))},
			},
			counts: &counts{Running: 1},
		},
		{
			name: "duplicate join and events for unknown workers change nothing",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(1, res(8000, 8000)), nil},
				{core.WorkerDraining{Worker: 9}, nil},
				{core.WorkerLeft{Worker: 9, Reason: "gone"}, nil},
				{submit(task(1, one), task(2, one)), acts(dispatch(1, 1, 1))},
				{submit(task(1, one)), nil}, // a live task submitted again
			},
			counts:  &counts{Ready: 1, Running: 1},
			workers: []core.WorkerInfo{{ID: 1, Total: res(1000, 1000), Free: res(0, 900), Running: []core.TaskID{1}}},
		},
	})
}

func TestWorkerLoss(t *testing.T) {
	one := res(1000, 100)
	lost := func(w string) core.Outcome { return outcome(core.WorkerLost, w) }
	runScenarios(t, []scenario{
		{
			name: "requeued with a new attempt until retries run out",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 2, false)), acts(dispatch(1, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(core.Requeued{Task: 1, Attempt: 1, Reason: lost("worker 1 lost: crash")})},
				{join(2, res(1000, 1000)), acts(dispatch(1, 2, 2))},
				{core.WorkerLeft{Worker: 2, Reason: "crash"}, acts(core.Requeued{Task: 1, Attempt: 2, Reason: lost("worker 2 lost: crash")})},
				{join(3, res(1000, 1000)), acts(dispatch(1, 3, 3))},
				{core.WorkerLeft{Worker: 3, Reason: "crash"}, acts(done(1, 3, 3, lost("worker 3 lost: crash (after 3 attempts)")))},
			},
			counts:  &counts{Finished: 1},
			workers: []core.WorkerInfo{},
		},
		{
			name: "requeued task goes to another worker at once",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{join(2, res(2000, 1000)), nil},
				{submit(retries(task(1, one), 1, false)), acts(dispatch(1, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(core.Requeued{Task: 1, Attempt: 1, Reason: lost("worker 1 lost: crash")}, dispatch(1, 2, 2))},
			},
			states: map[core.TaskID]st{1: {core.Running, 2}},
		},
		{
			name: "lost tasks are handled in ID order; no retries means done",
			steps: []step{
				{join(1, res(3000, 1000)), nil},
				{submit(task(3, one), retries(task(1, one), 1, false), retries(task(2, one), 1, false)),
					acts(dispatch(3, 1, 1), dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{join(2, res(1000, 1000)), nil},
				{core.WorkerLeft{Worker: 1, Reason: "shutdown"}, acts(
					core.Requeued{Task: 1, Attempt: 1, Reason: lost("worker 1 lost: shutdown")},
					core.Requeued{Task: 2, Attempt: 1, Reason: lost("worker 1 lost: shutdown")},
					done(3, 1, 1, lost("worker 1 lost: shutdown")),
					dispatch(1, 2, 2), // placed at the end of the step, by priority then submission
				)},
				{ok(1, 2, 2), acts(success(1, 2, 2), dispatch(2, 2, 2))},
			},
			counts: &counts{Running: 1, Finished: 2},
		},
		{
			name: "a worker that reports WorkerLost counts as a retry",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, false)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, lost("gave up")), acts(core.Requeued{Task: 1, Attempt: 1, Reason: lost("gave up")}, dispatch(1, 2, 1))},
				{finished(1, 2, 1, lost("gave up")), acts(done(1, 2, 1, lost("gave up (after 2 attempts)")))},
			},
		},
	})
}

func TestRetryOnError(t *testing.T) {
	one := res(1000, 100)
	boom := core.Outcome{Kind: core.Failed, ExitCode: 1, Message: "boom"}
	runScenarios(t, []scenario{
		{
			name: "off: a failure is final",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 3, false)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(done(1, 1, 1, boom))},
			},
			counts: &counts{Finished: 1},
		},
		{
			name: "off: timeouts and resource limits are final too",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(retries(task(1, one), 3, false), retries(task(2, one), 3, false)), acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{finished(1, 1, 1, outcome(core.TimedOut, "10s")), acts(done(1, 1, 1, outcome(core.TimedOut, "10s")))},
				{finished(2, 1, 1, outcome(core.ResourceExceeded, "memory")), acts(done(2, 1, 1, outcome(core.ResourceExceeded, "memory")))},
			},
		},
		{
			name: "on: retried until retries run out",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, true)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(core.Requeued{Task: 1, Attempt: 1, Reason: boom}, dispatch(1, 2, 1))},
				{finished(1, 2, 1, boom), acts(done(1, 2, 1, core.Outcome{Kind: core.Failed, ExitCode: 1, Message: "boom (after 2 attempts)"}))},
			},
		},
		{
			name: "on: success after a retry",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 3, true)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, outcome(core.TimedOut, "")), acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.TimedOut, "")}, dispatch(1, 2, 1))},
				{ok(1, 2, 1), acts(success(1, 2, 1))},
			},
		},
		{
			name: "on with no retries: a failure is final",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 0, true)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(done(1, 1, 1, boom))},
			},
		},
		{
			name: "off: input missing on the worker is retried",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, false)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, outcome(core.InputMissing, "fetch")), acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.InputMissing, "fetch")}, dispatch(1, 2, 1))},
			},
		},
		{
			name: "off: cancelled by the worker, not the client, is retried",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, false)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, outcome(core.Cancelled, "shutdown")), acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.Cancelled, "shutdown")}, dispatch(1, 2, 1))},
				{finished(1, 2, 1, outcome(core.Cancelled, "shutdown")), acts(done(1, 2, 1, outcome(core.Cancelled, "shutdown (after 2 attempts)")))},
			},
		},
		{
			name: "a retried task keeps its place: it runs before later tasks",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, true), task(2, one)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(core.Requeued{Task: 1, Attempt: 1, Reason: boom}, dispatch(1, 2, 1))},
			},
			states: map[core.TaskID]st{1: {core.Running, 2}, 2: {core.Ready, 0}},
		},
	})
}

func TestTaskReturned(t *testing.T) {
	one := res(1000, 100)
	runScenarios(t, []scenario{
		{
			name: "requeued without counting a retry",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, false)), acts(dispatch(1, 1, 1))},
				{core.WorkerDraining{Worker: 1}, nil},
				{core.TaskReturned{Task: 1, Attempt: 1, Worker: 1}, acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "returned unfinished by worker 1")})},
				{join(2, res(1000, 1000)), acts(dispatch(1, 2, 2))},
				// The one retry is still there.
				{core.WorkerLeft{Worker: 2, Reason: "crash"}, acts(core.Requeued{Task: 1, Attempt: 2, Reason: outcome(core.WorkerLost, "worker 2 lost: crash")})},
				{join(3, res(1000, 1000)), acts(dispatch(1, 3, 3))},
				{core.WorkerLeft{Worker: 3, Reason: "crash"}, acts(done(1, 3, 3, outcome(core.WorkerLost, "worker 3 lost: crash (after 3 attempts)")))},
			},
			workers: []core.WorkerInfo{{ID: 1, Total: res(1000, 1000), Free: res(1000, 1000), Draining: true}},
		},
		{
			name: "returned to another open worker at once",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{join(2, res(1000, 1000)), nil},
				{core.WorkerDraining{Worker: 1}, nil},
				{core.TaskReturned{Task: 1, Attempt: 1, Worker: 1}, acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "returned unfinished by worker 1")}, dispatch(1, 2, 2))},
			},
		},
	})
}

func TestCancel(t *testing.T) {
	one := res(1000, 100)
	cancelled := outcome(core.Cancelled, "cancelled")
	before := outcome(core.Cancelled, "cancelled before it ran")
	runScenarios(t, []scenario{
		{
			name: "waiting",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 2}, acts(done(2, 0, 0, before))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
			},
			counts: &counts{Finished: 2},
		},
		{
			name: "ready",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one), task(2, one)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 2}, acts(done(2, 0, 0, before))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
			},
			counts: &counts{Finished: 2},
		},
		{
			name: "ready again after a lost worker names the last attempt",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 1, false)), acts(dispatch(1, 1, 1))},
				{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "worker 1 lost: crash")})},
				{core.CancelTask{Task: 1}, acts(done(1, 1, 1, before))},
				{join(2, res(1000, 1000)), nil},
			},
			counts: &counts{Finished: 1},
		},
		{
			name: "running: kill, then done when the worker reports",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 3, true), task(2, one)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 1}, acts(core.Kill{Task: 1, Attempt: 1, Worker: 1})},
				{core.CancelTask{Task: 1}, nil},
				{core.Tick{}, nil}, // resources stay reserved until the worker reports
				{finished(1, 1, 1, core.Outcome{Kind: core.Failed, ExitCode: 137, Message: "killed"}),
					acts(done(1, 1, 1, core.Outcome{Kind: core.Cancelled, ExitCode: 137, Message: "cancelled"}), dispatch(2, 1, 1))},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
		{
			name: "running: a success reported after the kill is still cancelled",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 1}, acts(core.Kill{Task: 1, Attempt: 1, Worker: 1})},
				{ok(1, 1, 1), acts(done(1, 1, 1, cancelled))},
			},
		},
		{
			name: "running: the worker is lost before it reports",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(retries(task(1, one), 3, false)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 1}, acts(core.Kill{Task: 1, Attempt: 1, Worker: 1})},
				{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(done(1, 1, 1, cancelled))},
				{ok(1, 1, 1), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 1})},
			},
			counts: &counts{Finished: 1},
		},
		{
			name: "running: the draining worker returns it",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{core.WorkerDraining{Worker: 1}, nil},
				{core.CancelTask{Task: 1}, acts(core.Kill{Task: 1, Attempt: 1, Worker: 1})},
				{core.TaskReturned{Task: 1, Attempt: 1, Worker: 1}, acts(done(1, 1, 1, cancelled))},
			},
		},
		{
			name: "unknown and finished tasks",
			steps: []step{
				{core.CancelTask{Task: 99}, nil},
				{join(1, res(1000, 1000)), nil},
				{submit(task(1, one)), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{core.CancelTask{Task: 1}, nil},
			},
			counts: &counts{Finished: 1},
		},
	})
}

func TestStaleResults(t *testing.T) {
	one := res(1000, 100)
	boom := core.Outcome{Kind: core.Failed, ExitCode: 1, Message: "boom"}
	// Task 1 ran as attempt 1 on worker 1, failed, and runs again as attempt
	// 2 on worker 1. Worker 2 is open and idle; task 2 is queued.
	setup := []step{
		{join(1, res(1000, 1000)), nil},
		{submit(retries(task(1, one), 1, true)), acts(dispatch(1, 1, 1))},
		{finished(1, 1, 1, boom), acts(core.Requeued{Task: 1, Attempt: 1, Reason: boom}, dispatch(1, 2, 1))},
		{submit(task(2, res(2000, 100))), nil},
		{join(2, res(1000, 1000)), nil},
	}
	tests := []struct {
		name  string
		extra []step // after setup, before the stale event
		stale core.Event
		then  []step // after the stale event
	}{
		{
			name:  "old attempt",
			stale: ok(1, 1, 1),
			then:  []step{{ok(1, 2, 1), acts(success(1, 2, 1))}},
		},
		{
			name:  "wrong worker",
			stale: ok(1, 2, 2),
			then:  []step{{ok(1, 2, 1), acts(success(1, 2, 1))}},
		},
		{
			name:  "future attempt",
			stale: ok(1, 3, 1),
			then:  []step{{ok(1, 2, 1), acts(success(1, 2, 1))}},
		},
		{
			name:  "unknown task",
			stale: ok(99, 1, 1),
		},
		{
			name:  "queued task",
			stale: ok(2, 1, 1),
		},
		{
			name:  "duplicate completion",
			extra: []step{{ok(1, 2, 1), acts(success(1, 2, 1))}},
			stale: ok(1, 2, 1),
		},
		{
			name:  "duplicate failure after success",
			extra: []step{{ok(1, 2, 1), acts(success(1, 2, 1))}},
			stale: finished(1, 2, 1, boom),
		},
		{
			name:  "returned old attempt",
			stale: core.TaskReturned{Task: 1, Attempt: 1, Worker: 1},
			then:  []step{{ok(1, 2, 1), acts(success(1, 2, 1))}},
		},
		{
			name:  "returned by the wrong worker",
			stale: core.TaskReturned{Task: 1, Attempt: 2, Worker: 2},
		},
		{
			name:  "attempt of a lost worker",
			extra: []step{{core.WorkerLeft{Worker: 1, Reason: "crash"}, acts(done(1, 2, 1, outcome(core.WorkerLost, "worker 1 lost: crash (after 2 attempts)")))}},
			stale: ok(1, 2, 1),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := core.New()
			runSteps(t, c, setup)
			runSteps(t, c, tc.extra)
			type snapshot struct {
				Counts  counts
				Workers []core.WorkerInfo
				States  []st
			}
			snap := func() snapshot {
				s := snapshot{Counts: countsOf(c), Workers: c.Workers()}
				for _, id := range []core.TaskID{1, 2, 99} {
					state, attempt, _ := c.TaskState(id)
					s.States = append(s.States, st{state, attempt})
				}
				return s
			}
			before := snap()
			var want core.Action
			switch ev := tc.stale.(type) {
			case core.TaskFinished:
				want = core.StaleResult{Task: ev.Task, Attempt: ev.Attempt, Worker: ev.Worker}
			case core.TaskReturned:
				want = core.StaleResult{Task: ev.Task, Attempt: ev.Attempt, Worker: ev.Worker}
			}
			runSteps(t, c, []step{{tc.stale, acts(want)}})
			if diff := cmp.Diff(before, snap()); diff != "" {
				t.Errorf("state after stale %#v mismatch (-want +got):\n%s", tc.stale, diff)
			}
			runSteps(t, c, tc.then)
		})
	}
}

func TestDependencies(t *testing.T) {
	one := res(1000, 100)
	boom := core.Outcome{Kind: core.Failed, ExitCode: 2, Message: "boom"}
	missing := func(producer string, kind string) core.Outcome {
		return outcome(core.InputMissing, "input produced by task "+producer+" is missing: that task ended with "+kind)
	}
	runScenarios(t, []scenario{
		{
			name: "consumer waits for the producer's output",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{core.Tick{}, nil},
				{ok(1, 1, 1), acts(success(1, 1, 1), inline(dispatch(2, 1, 1), 10))},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
		{
			name: "waiting task counts as waiting",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), ids(10, 11), nil)), acts(dispatch(1, 1, 1))},
			},
			counts: &counts{Waiting: 1, Running: 1},
			states: map[core.TaskID]st{2: {core.Waiting, 0}},
		},
		{
			name: "external inputs are available",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), ids(77, 78), nil)), acts(dispatch(1, 1, 1))},
			},
		},
		{
			name: "a batch may list the consumer before its producer",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(2, one), ids(10), nil), files(task(1, one), nil, ids(10))), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1), inline(dispatch(2, 1, 1), 10))},
			},
		},
		{
			name: "consumer of two producers waits for both",
			steps: []step{
				{join(1, res(3000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(10)), files(task(2, one), nil, ids(11)), files(task(3, one), ids(10, 11), nil)),
					acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
				{ok(2, 1, 1), acts(success(2, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1), inline(dispatch(3, 1, 1), 10, 11))},
			},
		},
		{
			name: "a producer's retry keeps the consumer waiting",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(retries(task(1, one), 1, true), nil, ids(10)), files(task(2, one), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(core.Requeued{Task: 1, Attempt: 1, Reason: boom}, dispatch(1, 2, 1))},
				{ok(1, 2, 1), acts(success(1, 2, 1), inline(dispatch(2, 1, 1), 10))},
			},
		},
		{
			name: "consumers of a failed producer fail, transitively",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(
					files(task(1, one), nil, ids(1)),
					files(task(2, one), ids(1), ids(2)),
					files(task(3, one), ids(2), nil),
					files(task(4, one), ids(1, 99), nil),
					files(task(5, one), ids(99), nil),
				), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(
					done(1, 1, 1, boom),
					done(2, 0, 0, missing("1", "failed")),
					done(4, 0, 0, missing("1", "failed")),
					done(3, 0, 0, missing("2", "input missing")),
					dispatch(5, 1, 1),
				)},
				// Later consumers of the failed file fail at once.
				{submit(files(task(6, one), ids(2), nil)), acts(done(6, 0, 0, missing("2", "input missing")))},
			},
			counts: &counts{Running: 1, Finished: 5},
		},
		{
			name: "two inputs from one failed producer: one done",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1, 2)), files(task(2, one), ids(1, 2), nil)), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(done(1, 1, 1, boom), done(2, 0, 0, missing("1", "failed")))},
			},
			counts: &counts{Finished: 2},
		},
		{
			name: "diamond: the join fails once",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(
					files(task(1, one), nil, ids(1)),
					files(task(2, one), ids(1), ids(2)),
					files(task(3, one), ids(1), ids(3)),
					files(task(4, one), ids(2, 3), nil),
				), acts(dispatch(1, 1, 1))},
				{finished(1, 1, 1, boom), acts(
					done(1, 1, 1, boom),
					done(2, 0, 0, missing("1", "failed")),
					done(3, 0, 0, missing("1", "failed")),
					done(4, 0, 0, missing("2", "input missing")),
				)},
			},
			counts: &counts{Finished: 4},
		},
		{
			name: "cancelled producer",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1)), files(task(2, one), ids(1), nil)), acts(dispatch(1, 1, 1))},
				{core.CancelTask{Task: 1}, acts(core.Kill{Task: 1, Attempt: 1, Worker: 1})},
				{ok(1, 1, 1), acts(done(1, 1, 1, outcome(core.Cancelled, "cancelled")), done(2, 0, 0, missing("1", "cancelled")))},
			},
		},
		{
			name: "consumer of an already produced file runs",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1))), acts(dispatch(1, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{submit(files(task(2, one), ids(1), nil)), acts(inline(dispatch(2, 1, 1), 1))},
			},
		},
		{
			name: "a task reading its own output fails, and so do its consumers",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{submit(files(task(1, one), ids(1), ids(1)), files(task(2, one), ids(1), nil)), acts(
					done(1, 0, 0, outcome(core.InputMissing, "task 1 reads its own output file 1")),
					done(2, 0, 0, missing("1", "input missing")),
				)},
			},
			counts:  &counts{Finished: 2},
			workers: []core.WorkerInfo{{ID: 1, Total: res(1000, 1000), Free: res(1000, 1000)}},
		},
		{
			name: "a second producer of a file fails",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1))), acts(dispatch(1, 1, 1))},
				{submit(files(task(2, one), nil, ids(5, 1))), acts(done(2, 0, 0, outcome(core.Failed, "output file 1 is already produced by task 1")))},
				// File 5 was not claimed: it counts as external.
				{submit(files(task(3, one), ids(5), nil)), acts(dispatch(3, 1, 1))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{submit(files(task(4, one), nil, ids(1))), acts(done(4, 0, 0, outcome(core.Failed, "output file 1 is already produced by task 1")))},
			},
			counts: &counts{Running: 1, Finished: 3},
		},
		{
			name: "a second producer in the same batch fails",
			steps: []step{
				{join(1, res(2000, 1000)), nil},
				{submit(files(task(1, one), nil, ids(1)), files(task(2, one), nil, ids(1))), acts(
					done(2, 0, 0, outcome(core.Failed, "output file 1 is already produced by task 1")),
					dispatch(1, 1, 1),
				)},
			},
			counts: &counts{Running: 1, Finished: 1},
		},
	})
}

func TestTick(t *testing.T) {
	big := res(1000, 8000)
	runScenarios(t, []scenario{
		{
			name:  "nothing to do",
			steps: []step{{core.Tick{}, nil}, {join(1, res(1000, 1000)), nil}, {core.Tick{}, nil}},
		},
		{
			// Worker 1 has the most free cores but too little memory; only
			// worker 2 fits the big tasks. A task that worker 2 hands back
			// is placed again at once, before the queued one of its shape
			// (it was submitted first), so Tick finds nothing left to do.
			name: "a returned task is placed at once; Tick has nothing left",
			steps: []step{
				{join(1, res(8000, 1000)), nil},
				{join(2, res(2000, 16000)), nil},
				{submit(task(1, big)), acts(dispatch(1, 1, 2))},
				{submit(task(2, big)), acts(dispatch(2, 1, 2))},
				{submit(task(3, big)), nil},
				{core.TaskReturned{Task: 1, Attempt: 1, Worker: 2}, acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "returned unfinished by worker 2")}, dispatch(1, 2, 2))},
				{core.Tick{}, nil},
				{ok(2, 1, 2), acts(success(2, 1, 2), dispatch(3, 1, 2))},
			},
			counts: &counts{Running: 2, Finished: 1},
		},
	})
}

// TestAccepts: the shell commits a report's outputs only for an attempt
// whose success the core will count.
func TestAccepts(t *testing.T) {
	c := core.New()
	one := res(1000, 100)
	c.Step(join(1, res(2000, 1000)))
	c.Step(submit(task(1, one), task(2, one)))
	c.Step(core.CancelTask{Task: 2})
	for _, tc := range []struct {
		task    core.TaskID
		attempt uint32
		worker  core.WorkerID
		want    bool
	}{
		{1, 1, 1, true},
		{1, 2, 1, false}, // never dispatched
		{1, 1, 2, false}, // another worker
		{2, 1, 1, false}, // cancelled
		{3, 1, 1, false}, // unknown
	} {
		if got := c.Accepts(tc.task, tc.attempt, tc.worker); got != tc.want {
			t.Errorf("Accepts(%d, %d, %d) = %v, want %v", tc.task, tc.attempt, tc.worker, got, tc.want)
		}
	}
	c.Step(ok(1, 1, 1))
	if c.Accepts(1, 1, 1) {
		t.Error("Accepts a report of a task that finished")
	}
}
