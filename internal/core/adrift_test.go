package core_test

import (
	"testing"
	"time"

	"trellis/internal/core"
)

func adriftOn(id core.TaskID, attempt uint32, where string, until time.Duration) core.TaskAdrift {
	return core.TaskAdrift{Task: id, Attempt: attempt, Where: where, Until: until}
}

// rejoin is a worker of incarnation inc joining with the attempts it runs.
func rejoin(id core.WorkerID, r core.Resources, inc string, running ...core.AttemptRef) core.WorkerJoined {
	j := join(id, r)
	j.Incarnation, j.Running = inc, running
	return j
}

func attempt(id core.TaskID, n uint32) core.AttemptRef { return core.AttemptRef{Task: id, Attempt: n} }

func requeuedAdrift(id core.TaskID, attempt uint32, why string) core.Requeued {
	return core.Requeued{Task: id, Attempt: attempt, Reason: core.Outcome{Kind: core.WorkerLost, Message: why}}
}

// TestTaskAdrift replays attempts dispatched before a restart whose end
// the journal lacks: they are adopted when their worker comes back with
// them, and run again (with a new attempt number) when it comes back
// without them, or not in time. A task is never placed while its old
// attempt may run.
func TestTaskAdrift(t *testing.T) {
	r := res(1000, 100)
	const window = 30 * time.Second
	runScenarios(t, []scenario{{
		name: "the worker comes back with the attempt: adopted, its report counts",
		steps: []step{
			{submit(task(1, r)), nil},
			{adriftOn(1, 2, "A", window), nil},
			{join(2, res(2000, 200)), nil}, // another worker: the task is not placed
			{rejoin(3, r, "A", attempt(1, 2)), acts(core.Adopted{Task: 1, Attempt: 2, Worker: 3})},
			{ok(1, 2, 3), acts(success(1, 2, 3))},
		},
		counts: &counts{Finished: 1},
	}, {
		name: "the worker comes back without it: the task runs again as attempt 3",
		steps: []step{
			{submit(task(1, r)), nil},
			{adriftOn(1, 2, "A", window), nil},
			{rejoin(1, r, "A"), acts(requeuedAdrift(1, 2, "attempt 2: its worker came back after the manager restarted, and it no longer ran there"), dispatch(1, 3, 1))},
			{ok(1, 2, 1), acts(core.StaleResult{Task: 1, Attempt: 2, Worker: 1})},
			{ok(1, 3, 1), acts(success(1, 3, 1))},
		},
		counts: &counts{Finished: 1},
	}, {
		name: "the worker does not come back in time: the task runs elsewhere",
		steps: []step{
			{submit(task(1, r)), nil},
			{adriftOn(1, 1, "A", window), nil},
			{join(1, r), nil},
			{core.Tick{Now: window - 1}, nil},
			{core.Tick{Now: window}, acts(requeuedAdrift(1, 1, "attempt 1: its worker did not come back after the manager restarted"), dispatch(1, 2, 1))},
			// It comes back later with the old attempt: killed, and its report is stale.
			{rejoin(2, r, "A", attempt(1, 1)), acts(core.Kill{Task: 1, Attempt: 1, Worker: 2})},
			{ok(1, 1, 2), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 2})},
		},
		counts: &counts{Running: 1},
	}, {
		name: "another incarnation, an older attempt, or a task unknown: killed, not adopted",
		steps: []step{
			{submit(task(1, r), task(2, r)), nil},
			{adriftOn(1, 1, "A", window), nil},
			{adriftOn(1, 2, "B", window), nil}, // dispatched again in a second life
			{adriftOn(2, 1, "A", window), nil},
			{rejoin(1, res(3000, 300), "A", attempt(1, 1), attempt(2, 1), attempt(9, 1)), acts(
				core.Kill{Task: 1, Attempt: 1, Worker: 1},
				core.Adopted{Task: 2, Attempt: 1, Worker: 1},
				core.Kill{Task: 9, Attempt: 1, Worker: 1},
			)},
			{rejoin(2, r, "B"), acts(requeuedAdrift(1, 2, "attempt 2: its worker came back after the manager restarted, and it no longer ran there"), dispatch(1, 3, 2))},
		},
		counts: &counts{Running: 2},
	}, {
		name: "a task that ended in the journal, or was cancelled, is not waited for",
		steps: []step{
			{submit(task(1, r), task(2, r)), nil},
			{adriftOn(1, 1, "A", window), nil},
			{adriftOn(2, 1, "A", window), nil},
			{recovered(1, 1, core.Outcome{Kind: core.Success}), acts(success(1, 1, 0))},
			{core.CancelTask{Task: 2}, acts(done(2, 1, 0, outcome(core.Cancelled, "cancelled before it ran")))},
			{rejoin(1, r, "A", attempt(2, 1)), acts(core.Kill{Task: 2, Attempt: 1, Worker: 1})},
			{core.Tick{Now: window}, nil},
		},
		counts: &counts{Finished: 2},
	}, {
		name: "an adopted attempt that the worker loses runs again",
		steps: []step{
			{submit(retries(task(1, r), 1, false)), nil},
			{adriftOn(1, 1, "A", window), nil},
			{rejoin(1, r, "A", attempt(1, 1)), acts(core.Adopted{Task: 1, Attempt: 1, Worker: 1})},
			{join(2, r), nil},
			{core.WorkerLeft{Worker: 1, Reason: "gone"}, acts(requeuedAdrift(1, 1, "worker 1 lost: gone"), dispatch(1, 2, 2))},
		},
		counts: &counts{Running: 1},
	}})
}

func atMostOnce(t core.Task) core.Task { t.AtMostOnce = true; return t }

func unknown(id core.TaskID, attempt uint32, why string) core.Unknown {
	return core.Unknown{Task: id, Attempt: attempt, Why: why}
}

// TestAtMostOnce: an at-most-once task is never dispatched twice. Where an
// attempt's fate is unknown it waits for the operator's Reconcile; a
// failure it reported itself is final; inputs missing before it started
// are retried.
func TestAtMostOnce(t *testing.T) {
	r := res(1000, 100)
	const window = 30 * time.Second
	runScenarios(t, []scenario{{
		name: "its worker is lost: unknown, then rerun by the operator",
		steps: []step{
			{join(1, r), nil},
			{submit(retries(atMostOnce(task(1, r)), 3, true)), acts(dispatch(1, 1, 1))},
			{join(2, r), nil},
			{core.WorkerLeft{Worker: 1, Reason: "gone"}, acts(unknown(1, 1, "attempt 1: worker lost: worker 1 lost: gone"))},
			{core.Tick{Now: time.Hour}, nil}, // waits for ever
			{core.Reconcile{Task: 1, Verdict: core.VerdictRerun}, acts(requeuedAdrift(1, 1, "reconciled: the operator asks to run it again"), dispatch(1, 2, 2))},
			{ok(1, 2, 2), acts(success(1, 2, 2))},
		},
		counts: &counts{Finished: 1},
	}, {
		name: "a failure is final, even with RetryOnError; missing inputs are retried",
		steps: []step{
			{join(1, r), nil},
			{submit(retries(atMostOnce(task(1, r)), 3, true)), acts(dispatch(1, 1, 1))},
			{finished(1, 1, 1, outcome(core.InputMissing, "fetch failed")), acts(core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.InputMissing, "fetch failed")}, dispatch(1, 2, 1))},
			{finished(1, 2, 1, outcome(core.Failed, "exit status 1")), acts(done(1, 2, 1, outcome(core.Failed, "exit status 1")))},
		},
		counts: &counts{Finished: 1},
	}, {
		name: "handed back: unknown; reconciled done, or failed",
		steps: []step{
			{join(1, res(2000, 200)), nil},
			{submit(atMostOnce(task(1, r)), atMostOnce(task(2, r))), acts(dispatch(1, 1, 1), dispatch(2, 1, 1))},
			{core.TaskReturned{Task: 1, Attempt: 1, Worker: 1}, acts(unknown(1, 1, "attempt 1 was handed back by worker 1, maybe after it ran"))},
			{finished(2, 1, 1, outcome(core.WorkerLost, "gave up")), acts(unknown(2, 1, "attempt 1: worker lost: gave up"))},
			{core.Reconcile{Task: 1, Verdict: core.VerdictDone}, acts(done(1, 1, 1, outcome(core.Success, "reconciled: the operator says it took effect")))},
			{core.Reconcile{Task: 2, Verdict: core.VerdictFailed}, acts(done(2, 1, 1, outcome(core.Failed, "reconciled: the operator says it failed")))},
			{core.Reconcile{Task: 2, Verdict: core.VerdictRerun}, nil}, // ended: nothing
		},
		counts: &counts{Finished: 2},
	}, {
		name: "dispatched before a restart and not adopted: unknown, never run again by itself",
		steps: []step{
			{submit(atMostOnce(task(1, r)), atMostOnce(task(2, r))), nil},
			{adriftOn(1, 1, "A", window), nil},
			{adriftOn(2, 1, "B", window), nil},
			{rejoin(1, res(2000, 200), "A"), acts(unknown(1, 1, "attempt 1: its worker came back after the manager restarted, and it no longer ran there"))},
			{core.Tick{Now: window}, acts(unknown(2, 1, "attempt 1: its worker did not come back after the manager restarted"))},
			{core.CancelTask{Task: 2}, acts(done(2, 1, 0, outcome(core.Cancelled, "cancelled before it ran")))},
		},
		counts: &counts{Waiting: 1, Finished: 1},
	}})
}

// rejoinLibs is rejoin with the library instances the worker kept.
func rejoinLibs(id core.WorkerID, r core.Resources, inc string, insts []core.KeptInstance, running ...core.AttemptRef) core.WorkerJoined {
	j := rejoin(id, r, inc, running...)
	j.Instances = insts
	return j
}

func keptInst(n uint64, attempt uint32, lib core.LibID) core.KeptInstance {
	return core.KeptInstance{Instance: inst(n), Attempt: attempt, Lib: lib}
}

func callIn(id core.TaskID, attempt uint32, n uint64) core.AttemptRef {
	return core.AttemptRef{Task: id, Attempt: attempt, Instance: inst(n)}
}

func instAdopted(n uint64, attempt uint32, lib core.LibID, w core.WorkerID) core.InstanceAdopted {
	return core.InstanceAdopted{Instance: inst(n), Attempt: attempt, Lib: lib, Worker: w}
}

// TestCallAdrift: a call dispatched before the manager restarted, in an
// instance the worker keeps across the restart, is adopted with that
// instance when the worker comes back with both: its report counts, and it
// is not run again. A call whose instance or worker does not come back
// runs again (idempotent or effect-free), or waits in unknown
// (at-most-once), as a task does. Instance 1 is the one the replay makes
// for the queued call; the kept instance is 100 (an earlier life's).
func TestCallAdrift(t *testing.T) {
	r := res(1000, 100)
	wr := res(4000, 400)
	lib := core.LibraryInstalled{Lib: 7, Resources: r, Slots: 2}
	const window = 30 * time.Second
	kept100 := []core.KeptInstance{keptInst(100, 1, 7)}
	runScenarios(t, []scenario{{
		name: "the worker comes back with the instance and the call: both adopted, the call's report counts",
		steps: []step{
			{lib, nil},
			{submit(callOf(1, 7, 0)), nil},
			{adriftOn(1, 3, "A", window), nil},
			{rejoinLibs(1, wr, "A", kept100, callIn(1, 3, 100)), acts(instAdopted(100, 1, 7, 1), core.Adopted{Task: 1, Attempt: 3, Worker: 1})},
			{ok(1, 3, 1), acts(success(1, 3, 1))},
			{submit(callOf(2, 7, 0)), acts(inSlot(2, 1, 1, 100))}, // the adopted instance serves: no new one
			{core.InstanceEnded{Instance: inst(100), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "killed")}, acts(
				done(2, 1, 1, outcome(core.Failed, "library crashed: killed")), // no retries
			)},
		},
		counts: &counts{Finished: 2},
	}, {
		name: "the instance comes back without the call: the call runs again in it",
		steps: []step{
			{lib, nil},
			{submit(callOf(1, 7, 0)), nil},
			{adriftOn(1, 1, "A", window), nil},
			{rejoinLibs(1, wr, "A", kept100), acts(instAdopted(100, 1, 7, 1),
				requeuedAdrift(1, 1, "attempt 1: its worker came back after the manager restarted, and it no longer ran there"),
				inSlot(1, 2, 1, 100))},
			{ok(1, 1, 1), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 1})},
			{ok(1, 2, 1), acts(success(1, 2, 1))},
		},
		counts: &counts{Running: 1, Finished: 1}, // the instance
	}, {
		name: "the worker does not come back: the call runs again in a new instance",
		steps: []step{
			{lib, nil},
			{submit(callOf(1, 7, 0)), nil},
			{adriftOn(1, 1, "A", window), nil},
			{join(1, wr), nil},
			{core.Tick{Now: window}, acts(requeuedAdrift(1, 1, "attempt 1: its worker did not come back after the manager restarted"), start(2, 1, 1, 7))},
			{ready(2, 1), acts(inSlot(1, 2, 1, 2))},
			// It comes back later with both: the instance is stopped, the call killed.
			{rejoinLibs(2, wr, "A", []core.KeptInstance{keptInst(100, 1, 8)}, callIn(1, 1, 100)), acts(
				core.Stop{Instance: inst(100), Worker: 2}, core.Kill{Task: 1, Attempt: 1, Worker: 2})},
			{ok(1, 2, 1), acts(success(1, 2, 1))},
		},
		counts: &counts{Running: 1, Finished: 1}, // the instance
	}, {
		name: "a kept instance of a library not installed, with an ID in use, or of another incarnation: stopped, its calls killed",
		steps: []step{
			{lib, nil},
			{submit(callOf(1, 7, 0), callOf(2, 7, 0), callOf(3, 7, 0)), nil}, // (instance 1 waits for a place, for call 3)
			{adriftOn(1, 1, "A", window), nil},
			{adriftOn(2, 1, "B", window), nil},
			{rejoinLibs(1, wr, "A", []core.KeptInstance{keptInst(100, 1, 9), keptInst(1, 1, 7)}, callIn(1, 1, 100)), acts(
				core.Stop{Instance: inst(100), Worker: 1}, core.Stop{Instance: inst(1), Worker: 1},
				core.Kill{Task: 1, Attempt: 1, Worker: 1},
				requeuedAdrift(1, 1, "attempt 1: its worker came back after the manager restarted, and it no longer ran there"),
				start(1, 1, 1, 7))},
			{rejoinLibs(2, wr, "", kept100, callIn(2, 1, 100)), acts(
				core.Stop{Instance: inst(100), Worker: 2}, core.Kill{Task: 2, Attempt: 1, Worker: 2})},
		},
		counts: &counts{Waiting: 1, Ready: 2, Running: 1}, // calls 2; 1 and 3; instance 1
	}, {
		name: "a new instance never takes an adopted one's ID",
		steps: []step{
			{core.LibraryInstalled{Lib: 7, Resources: r, Slots: 1}, nil},
			{rejoinLibs(1, wr, "A", []core.KeptInstance{keptInst(1, 1, 7)}), acts(instAdopted(1, 1, 7, 1))},
			{submit(callOf(1, 7, 0), callOf(2, 7, 0)), acts(inSlot(1, 1, 1, 1), start(2, 1, 1, 7))},
		},
		counts: &counts{Ready: 1, Running: 3},
	}, {
		name: "at-most-once calls: adopted with their instance, else unknown",
		steps: []step{
			{lib, nil},
			{submit(atMostOnce(callOf(1, 7, 0)), atMostOnce(callOf(2, 7, 0))), nil},
			{adriftOn(1, 1, "A", window), nil},
			{adriftOn(2, 1, "A", window), nil},
			{rejoinLibs(1, wr, "A", kept100, callIn(1, 1, 100)), acts(instAdopted(100, 1, 7, 1), core.Adopted{Task: 1, Attempt: 1, Worker: 1},
				unknown(2, 1, "attempt 1: its worker came back after the manager restarted, and it no longer ran there"))},
			{ok(1, 1, 1), acts(success(1, 1, 1))},
			{core.Reconcile{Task: 2, Verdict: core.VerdictRerun}, acts(requeuedAdrift(2, 1, "reconciled: the operator asks to run it again"), inSlot(2, 2, 1, 100))},
		},
		counts: &counts{Running: 2, Finished: 1}, // call 2 and the instance
	}})
}

// TestAtMostOnceLineage: a lost output of an at-most-once producer is not
// made again by running the producer: it is lost for good.
func TestAtMostOnceLineage(t *testing.T) {
	r := res(1000, 100)
	okOutcome := core.Outcome{Kind: core.Success}
	why := "file 10 is lost, and its producer, task 1, is at-most-once: it is not run again"
	runScenarios(t, []scenario{{
		name: "recovered after a restart, its output only in workers",
		steps: []step{
			{submit(atMostOnce(files(task(1, r), nil, ids(10))), files(task(2, r), ids(10), nil)), nil},
			{recovered(1, 1, okOutcome), acts(core.Done{Task: 1, Attempt: 1, Outcome: okOutcome, Retained: true})},
			{join(1, res(2000, 200)), acts(core.FileLost{File: 10, Why: why}, done(2, 0, 0, outcome(core.InputMissing, why)))},
		},
		counts: &counts{Finished: 2},
	}})
}

// TestPartitionedWorker (RECOVERY.md scenario 6): a worker is cut off
// (lost for the core), its attempt runs again elsewhere, and the worker
// comes back with the old attempt still running or finished: the old
// attempt is killed, and its completion, before or after the new one's,
// is stale; a duplicate of the accepted completion is stale too. Exactly
// one completion is accepted, and nothing changes on a stale one.
func TestPartitionedWorker(t *testing.T) {
	r := res(1000, 100)
	lib := core.LibraryInstalled{Lib: 7, Resources: r, Slots: 2}
	lost := core.WorkerLeft{Worker: 1, Reason: "no heartbeat for 2s"}
	runScenarios(t, []scenario{{
		name: "the old attempt's completion comes after the new one's",
		steps: []step{
			{join(1, r), nil},
			{join(2, r), nil},
			{submit(retries(task(1, r), 1, false)), acts(dispatch(1, 1, 1))},
			{lost, acts(requeuedAdrift(1, 1, "worker 1 lost: no heartbeat for 2s"), dispatch(1, 2, 2))},
			{ok(1, 2, 2), acts(success(1, 2, 2))},
			{rejoin(3, r, "A", attempt(1, 1)), acts(core.Kill{Task: 1, Attempt: 1, Worker: 3})},
			{ok(1, 1, 3), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 3})},
			{ok(1, 2, 2), acts(core.StaleResult{Task: 1, Attempt: 2, Worker: 2})}, // a duplicate
		},
		counts: &counts{Finished: 1},
	}, {
		name: "the old attempt's completion comes first",
		steps: []step{
			{join(1, r), nil},
			{join(2, r), nil},
			{submit(retries(task(1, r), 1, false)), acts(dispatch(1, 1, 1))},
			{lost, acts(requeuedAdrift(1, 1, "worker 1 lost: no heartbeat for 2s"), dispatch(1, 2, 2))},
			{rejoin(3, r, "A", attempt(1, 1)), acts(core.Kill{Task: 1, Attempt: 1, Worker: 3})},
			{ok(1, 1, 3), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 3})},
			{ok(1, 1, 1), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 1})}, // on its old connection
			{ok(1, 2, 2), acts(success(1, 2, 2))},
		},
		counts: &counts{Running: 0, Finished: 1},
	}, {
		name: "a call: it runs again in a new instance; the old instance comes back and serves, the old call is killed",
		steps: []step{
			{join(1, res(2000, 200)), nil},
			{lib, nil},
			{submit(callOf(1, 7, 1)), acts(start(1, 1, 1, 7))},
			{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
			{lost, acts(requeuedAdrift(1, 1, "worker 1 lost: no heartbeat for 2s"))},
			{join(2, res(2000, 200)), acts(start(2, 1, 2, 7))},
			{ready(2, 2), acts(inSlot(1, 2, 2, 2))},
			{rejoinLibs(3, res(2000, 200), "A", []core.KeptInstance{keptInst(1, 1, 7)}, callIn(1, 1, 1)), acts(
				instAdopted(1, 1, 7, 3), core.Kill{Task: 1, Attempt: 1, Worker: 3})},
			{ok(1, 1, 3), acts(core.StaleResult{Task: 1, Attempt: 1, Worker: 3})},
			{ok(1, 2, 2), acts(success(1, 2, 2))},
			{ok(1, 2, 2), acts(core.StaleResult{Task: 1, Attempt: 2, Worker: 2})},
		},
		counts: &counts{Running: 2, Finished: 1}, // the two instances
	}})
}
