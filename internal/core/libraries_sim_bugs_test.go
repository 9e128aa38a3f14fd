package core_test

import (
	"testing"

	"trellis/internal/core"
)

// TestLibrarySimBugs holds the bugs the library simulation
// (TestSimulationLibraries) found, each as the shortest history that shows
// it.
func TestLibrarySimBugs(t *testing.T) {
	lib := core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1}
	runScenarios(t, []scenario{
		{
			// A second InstanceReady for a ready instance (a duplicate
			// report) must not give the instance its slots again while
			// calls run in them: that runs two calls in its one slot.
			name: "a duplicate InstanceReady does not free busy slots",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1, Max: 1}, nil},
				{submit(callOf(1, 7, 0), callOf(2, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{ready(1, 1), acts(core.StaleResult{Instance: inst(1), Attempt: 1, Worker: 1})},
				{ok(1, 1, 1), acts(success(1, 1, 1), inSlot(2, 1, 1, 1))},
			},
		},
		{
			// A draining worker takes no new work (the worker returns any
			// it is sent), but its ready instance still got calls.
			name: "no call goes to an instance on a draining worker",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{join(2, res(2000, 2000)), nil},
				{lib, nil},
				{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{core.WorkerDraining{Worker: 1}, nil},
				{ok(1, 1, 1), acts(success(1, 1, 1))},
				{submit(callOf(2, 7, 0)), acts(start(2, 1, 2, 7))},
			},
		},
		{
			// The same, for a call the draining worker hands back: it went
			// back into the same slot, to be handed back again.
			name: "a call handed back by a draining worker goes elsewhere",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{join(2, res(2000, 2000)), nil},
				{lib, nil},
				{submit(callOf(1, 7, 0)), acts(start(1, 1, 1, 7))},
				{ready(1, 1), acts(inSlot(1, 1, 1, 1))},
				{core.WorkerDraining{Worker: 1}, nil},
				{core.TaskReturned{Task: 1, Attempt: 1, Worker: 1}, acts(
					core.Requeued{Task: 1, Attempt: 1, Reason: outcome(core.WorkerLost, "returned unfinished by worker 1")},
					start(2, 1, 2, 7),
				)},
				{ready(2, 2), acts(inSlot(1, 2, 2, 2))},
			},
		},
		{
			// Eager instances start at install, before any call. They were
			// ended in the same step ("no calls wait"), so none ever ran.
			name: "eager instances start at install",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2, Eager: 2}, acts(start(1, 1, 1, 7), start(2, 1, 1, 7))},
				{ready(1, 1), nil},
				{submit(callOf(1, 7, 0)), acts(inSlot(1, 1, 1, 1))},
			},
			counts: &counts{Running: 3},
		},
		{
			// A library installed again while the instances of its removal
			// still stop counted those as its eager ones: it started only
			// as many more as had ended already (`bench calls --manager`,
			// which installs its library again for the direct route).
			name: "a library installed again starts all its eager instances",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2, Eager: 2}, acts(start(1, 1, 1, 7), start(2, 1, 1, 7))},
				{ready(1, 1), nil},
				{ready(2, 1), nil},
				{core.LibraryRemoved{Lib: 7, Why: "removed"}, acts(core.Stop{Instance: inst(1), Worker: 1}, core.Stop{Instance: inst(2), Worker: 1})},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2, Eager: 2}, acts(start(3, 1, 1, 7), start(4, 1, 1, 7))},
			},
			counts: &counts{Running: 4},
		},
		{
			// An instance made before the library broke, waiting for a
			// place, was still started once there was room: a broken
			// library started again, failed again, and broke again.
			name: "a broken library starts no more instances",
			steps: []step{
				{join(1, res(1000, 1000)), nil}, // room for one instance at a time
				{lib, nil},
				{submit(callOf(1, 7, 0), callOf(2, 7, 0)), acts(start(1, 1, 1, 7))}, // instance 2 waits for room
				{setupFailed(1), acts(start(2, 1, 1, 7))},
				{setupFailed(2), acts(start(3, 1, 1, 7))},
				{setupFailed(3), acts(
					core.LibraryBroken{Lib: 7, Why: "library failed to start 3 times: set-up failed: no model"},
					done(1, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
					done(2, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
				)},
			},
			counts: &counts{Finished: 2},
		},
		{
			// The same for instances that were bringing the library's
			// input to their worker when it broke: they started once it
			// arrived.
			name: "a broken library starts no instance that was staging",
			steps: []step{
				{join(1, res(1000, 1000)), nil},
				{temps(10), nil},
				{submit(files(task(1, res(1000, 10)), nil, ids(10))), acts(dispatch(1, 1, 1))},
				{kept(1, 1, 1, 300, 10), acts(success(1, 1, 1))},
				{join(2, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1, Inputs: ids(10)}, nil},
				// Instance 1 runs where the file is; 2 and 3 bring it to worker 2.
				{submit(callOf(2, 7, 0), callOf(3, 7, 0), callOf(4, 7, 0)), acts(start(1, 1, 1, 7), fetch(1, 2, 10, peer(1), 300))},
				{setupFailed(1), acts(start(4, 1, 1, 7))},
				{setupFailed(4), acts(start(5, 1, 1, 7))},
				{setupFailed(5), acts(
					core.LibraryBroken{Lib: 7, Why: "library failed to start 3 times: set-up failed: no model"},
					done(2, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
					done(3, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
					done(4, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
				)},
				{fetched(1, 300), nil},
			},
			counts: &counts{Finished: 4},
		},
		{
			// Instances that were starting when the library broke, and
			// fail too, do not break it again (with another reason).
			name: "a library breaks once",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 1, Max: 4}, nil},
				{submit(callOf(1, 7, 0), callOf(2, 7, 0), callOf(3, 7, 0), callOf(4, 7, 0)), acts(start(1, 1, 1, 7), start(2, 1, 1, 7), start(3, 1, 1, 7), start(4, 1, 1, 7))},
				{setupFailed(1), acts(start(5, 1, 1, 7))},
				{setupFailed(2), acts(start(6, 1, 1, 7))},
				{setupFailed(3), acts(
					core.LibraryBroken{Lib: 7, Why: "library failed to start 3 times: set-up failed: no model"},
					done(1, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
					done(2, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
					done(3, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
					done(4, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")),
				)},
				{setupFailed(4), nil},
				{setupFailed(5), nil},
				{submit(callOf(5, 7, 0)), acts(done(5, 0, 0, outcome(core.Failed, "library failed to start 3 times: set-up failed: no model")))},
			},
			counts: &counts{Running: 1, Finished: 5}, // instance 6, starting
		},
		{
			// A file the catalog does not know is at the manager (an
			// upload): an EveryWorker library reading one was never
			// deployed, as if its input were not made yet.
			name: "an every-worker library reading an upload is deployed",
			steps: []step{
				{join(1, res(4000, 4000)), nil},
				{join(2, res(4000, 4000)), nil},
				{core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2, Inputs: ids(1 << 40), EveryWorker: true}, acts(start(1, 1, 1, 7), start(2, 1, 2, 7))},
			},
		},
	})
}

func setupFailed(n uint64) core.InstanceEnded {
	return core.InstanceEnded{Instance: inst(n), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "set-up failed: no model")}
}
