package core_test

import (
	"testing"

	"trellis/internal/core"
)

func inst(n uint64) core.InstanceID { return core.InstanceID(n) }

func callOf(id core.TaskID, lib core.LibID, retries int32) core.Task {
	return core.Task{ID: id, Role: core.Call, Lib: lib, Retries: retries}
}

func start(n uint64, attempt uint32, w core.WorkerID, lib core.LibID) core.Dispatch {
	return core.Dispatch{Instance: inst(n), Attempt: attempt, Worker: w, Lib: lib}
}

func inSlot(id core.TaskID, attempt uint32, w core.WorkerID, n uint64) core.Dispatch {
	return core.Dispatch{Task: id, Attempt: attempt, Worker: w, Instance: inst(n)}
}

func ready(n uint64, w core.WorkerID) core.InstanceReady {
	return core.InstanceReady{Instance: inst(n), Attempt: 1, Worker: w}
}

func TestLibraries(t *testing.T) {
	lib := core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2}
	runScenarios(t, []scenario{
		{
			// Three calls, two slots per instance: two instances start
			// (lazily), and each call runs in a slot as they become ready.
			name: "lazy instances, calls in slots",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{lib, nil},
				{submit(callOf(1, 7, 0), callOf(2, 7, 0), callOf(3, 7, 0)), acts(start(1, 1, 1, 7), start(2, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1), inSlot(2, 1, 1, 1))},
				{ready(2, 1), acts(inSlot(3, 1, 1, 2))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{submit(callOf(4, 7, 0)), acts(inSlot(4, 1, 1, 1))}, // a free slot: no new instance
			},
		},
		{
			// The library process crashes while calls run: they are
			// retried in a new instance (within their retries).
			name: "a crash retries the calls in a new instance",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{lib, nil},
				{submit(callOf(1, 7, 1), callOf(2, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1), inSlot(2, 1, 1, 1))},
				{core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "exit status 2: boom")}, acts(
					core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.Failed, "library crashed: exit status 2: boom")},
					done(2, 1, 1, outcome(core.Failed, "library crashed: exit status 2: boom")),
					start(2, 1, 1, 7),
				)},
				{ready(2, 1), acts(inSlot(1, 2, 1, 2))},
			},
		},
		{
			// A library that cannot start: after StartFailures its calls
			// fail with the reason instead of waiting forever.
			name: "a library that never starts is broken",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2, Max: 1}, nil},
				{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
				{core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "set-up failed: no model")}, acts(start(2, 1, 1, 7))},
				{core.InstanceEnded{Instance: inst(2), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "set-up failed: no model")}, acts(start(3, 1, 1, 7))},
				{core.InstanceEnded{Instance: inst(3), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "set-up failed: no model")}, acts(
					core.LibraryBroken{Lib: 7, Why: "library failed to start 3 times: set-up failed: no model"},
					done(1, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
				)},
				{submit(callOf(2, 7, 0)), acts(done(2, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")))},
			},
			counts: &counts{Finished: 2},
		},
		{
			// The worker holding the instance is lost: calls run again in an
			// instance on another worker.
			name: "worker loss moves the library",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{lib, nil},
				{submit(callOf(1, 7, 1)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{join(2, res(1000, 1000)), nil},
				{core.WorkerLeft{Worker: 1, Reason: "killed"}, acts(
					core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "worker 1 lost: killed")},
					start(2, 1, 2, 7),
				)},
				{ready(2, 2), acts(inSlot(1, 2, 2, 2))},
				{ok(1, 2, 2), acts(success(1, 2, 2))},
			},
		},
		{
			// An idle instance gives its resources back when plain tasks
			// wait for them.
			name: "an idle instance is stopped for waiting tasks",
			steps: func() []step {
				s := []step{
					{join(1, res(1000, 1000)), nil},
					{lib, nil},
					{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
					{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
					{ok(1, 1, 1), acts(success(1, 1, 1))},
					{submit(task(2, res(1000, 10))), nil}, // waits: the instance holds the core
				}
				for range core.IdleTicks - 1 {
					s = append(s, step{core.Tick{}, nil})
				}
				return append(s,
					step{core.Tick{}, acts(core.Stop{Instance: inst(1), Worker: 1})},
					step{core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Success, "stopped")}, acts(dispatch(2, 1, 1))},
				)
			}(),
		},
		{
			// An instance on every worker with room: at install, when a
			// worker joins, and on a tick once a full worker has room.
			name: "an instance on every worker",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{submit(task(1, res(1000, 10))), acts(dispatch(1, 1, 1))}, // worker 1 is full
				{core.LibraryInstalled{Lib: 7, Resources: res(500, 100), Slots: 2, EveryWorker: true}, acts(start(1, 1, 2, 7))},
				{join(3, res(1000, 1000)), acts(start(2, 1, 3, 7))},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{core.Tick{}, acts(start(3, 1, 1, 7))},
				{ready(1, 2), nil},
				{core.Tick{}, nil}, // one each: no more
			},
		},
		{
			// The instance goes where the call's input is, and the call
			// reads it in place.
			name: "a call reads its input where it is",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{temps(10), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 100), Slots: 2, Max: 1}, nil},
				{submit(files(task(1, res(1000, 10)), nil, ids(10)), files(callOf(2, 7, 0), ids(10), nil)), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 300, 10), acts(success(1, 1, 1), start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(2, 1, 1, 1))}, // the file is there already
				{ok(2, 1, 1), acts(success(2, 1, 1))},
			},
		},
		{
			// A call's input on another worker is brought to its
			// instance's worker before the call runs there.
			name: "a call's input on another worker is fetched",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{join(2, res(1000, 1000)), nil},
				{temps(10), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 100), Slots: 2, Max: 1}, nil},
				{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{submit(files(task(2, res(1000, 10)), nil, ids(10)), files(callOf(3, 7, 0), ids(10), nil)), acts(dispatch(2, 1, 2))},
				{kept(2, 1, 2, 300, 10), acts(success(2, 1, 2), fetch(1, 1, 10, peer(2), 300))},
				{fetched(1, 300), acts(inSlot(3, 1, 1, 1))},
			},
		},
		{
			// Other instances fail to start while one serves: the library
			// is not broken, and the waiting call runs in the one that works.
			name: "not broken while an instance serves",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 100), Slots: 1}, nil},
				{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{submit(callOf(2, 7, 0)), acts(start(2, 1, 1, 7))},
				{core.InstanceEnded{Instance: inst(2), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "no GPU here")}, acts(start(3, 1, 1, 7))},
				{core.InstanceEnded{Instance: inst(3), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "no GPU here")}, acts(start(4, 1, 1, 7))},
				{core.InstanceEnded{Instance: inst(4), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "no GPU here")}, acts(start(5, 1, 1, 7))},
				{ok(1, 1, 1), acts(success(1, 1, 1), inSlot(2, 1, 1, 1))},
			},
		},
		{
			// The operator removes a library: its running instance is
			// stopped, its calls fail with the reason (waiting ones at once,
			// the running one when the instance ends, later ones when
			// submitted); installing it again serves calls again.
			name: "a removed library stops and fails its calls",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1, Max: 1}, nil},
				{submit(callOf(1, 7, 2), callOf(2, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{core.LibraryRemoved{Lib: 7, Why: "library lib7 was removed"}, acts(
					core.Stop{Instance: inst(1), Worker: 1},
					done(2, 0, 0, outcome(core.Failed, "library lib7 was removed")),
				)},
				{core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Success, "stopped")}, acts(
					done(1, 1, 1, outcome(core.Failed, "library lib7 was removed")), // not retried, though it may be
				)},
				{submit(callOf(3, 7, 0)), acts(done(3, 0, 0, outcome(core.Failed, "library lib7 was removed")))},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1, Max: 1}, nil},
				{submit(callOf(4, 7, 0)), acts(start(2, 1, 1, 7))},
			},
			counts: &counts{Ready: 1, Running: 1, Finished: 3}, // call 4 waits for instance 2
		},
		{
			// An instance still starting is stopped again once ready: the
			// worker may have missed the first Stop.
			name: "a removed library's starting instance is stopped once ready",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1}, nil},
				{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
				{core.LibraryRemoved{Lib: 7, Why: "library lib7 was removed"}, acts(
					core.Stop{Instance: inst(1), Worker: 1},
					done(1, 0, 0, outcome(core.Failed, "library lib7 was removed")),
				)},
				{ready(1, 1), acts(core.Stop{Instance: inst(1), Worker: 1})},
				{core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Success, "stopped")}, nil},
			},
			counts: &counts{Finished: 1},
		},
		{
			// An instance that waits for a place is dropped with its calls.
			name: "a removed library's unplaced instance ends",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(2000, 10), Slots: 1}, nil}, // fits no worker
				{submit(callOf(1, 7, 0)), nil},
				{core.LibraryRemoved{Lib: 7, Why: "library lib7 was removed"}, acts(done(1, 0, 0, outcome(core.Failed, "library lib7 was removed")))},
				{join(2, res(4000, 4000)), nil}, // room now, but no instance starts
			},
			counts: &counts{Finished: 1},
		},
		{
			name: "removing a library never installed does nothing",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.LibraryRemoved{Lib: 9, Why: "library lib9 was removed"}, nil},
			},
		},
		{
			name: "cancel a waiting call",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(2000, 10), Slots: 1}, nil}, // fits no worker yet
				{submit(callOf(1, 7, 0)), nil},
				{core.CancelTask{Task: 1}, acts(done(1, 0, 0, outcome(core.Cancelled, "cancelled before it ran")))},
			},
		},
	})
}
