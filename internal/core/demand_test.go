package core_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/core"
)

func TestDemand(t *testing.T) {
	small, big := res(1000, 100), res(4000, 100)
	lib := core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2}
	tests := []struct {
		name   string
		events []core.Event // their actions are not checked here
		want   []core.ShapeDemand
		tally  core.Tally
	}{
		{name: "nothing", want: nil},
		{
			// Two fit the worker; the third small and the big one wait.
			name: "shapes waiting and running",
			events: []core.Event{
				join(1, res(2000, 1000)),
				submit(task(1, small), task(2, small), task(3, small), task(4, big)),
			},
			want: []core.ShapeDemand{
				{Shape: small, Waiting: 1, Running: 2},
				{Shape: big, Waiting: 1},
			},
			tally: core.Tally{Tasks: core.StateCounts{Ready: 2, Running: 2}},
		},
		{
			// A consumer waiting for its producer's output waits too; a
			// finished task is no demand.
			name: "waiting for inputs",
			events: []core.Event{
				join(1, res(2000, 1000)),
				submit(files(task(1, small), nil, ids(10)), files(task(2, small), ids(10), nil), task(3, small)),
				ok(3, 1, 1),
			},
			want: []core.ShapeDemand{{Shape: small, Waiting: 1, Running: 1}},
			// The consumer reads a file a task produces: a dataflow task.
			tally: core.Tally{Tasks: core.StateCounts{Running: 1, Finished: 1}, Dataflow: core.StateCounts{Waiting: 1}},
		},
		{
			// Five calls, two slots an instance, room for one instance:
			// it starts, and two more are wanted (one made, not placed).
			name: "instances wanted by calls",
			events: []core.Event{
				join(1, res(1000, 1000)),
				lib,
				submit(callOf(1, 7, 0), callOf(2, 7, 0), callOf(3, 7, 0), callOf(4, 7, 0), callOf(5, 7, 0)),
			},
			want:  []core.ShapeDemand{{Shape: res(1000, 500), Instances: 1, InstancesWanted: 2}},
			tally: core.Tally{Calls: core.StateCounts{Ready: 5}, Instances: core.StateCounts{Ready: 1, Running: 1}},
		},
		{
			// Once it is ready, two calls run in it; three wait, which two
			// more instances would serve.
			name: "calls in slots",
			events: []core.Event{
				join(1, res(1000, 1000)),
				lib,
				submit(callOf(1, 7, 0), callOf(2, 7, 0), callOf(3, 7, 0), callOf(4, 7, 0), callOf(5, 7, 0)),
				ready(1, 1),
			},
			want:  []core.ShapeDemand{{Shape: res(1000, 500), Instances: 1, InstancesWanted: 2}},
			tally: core.Tally{Calls: core.StateCounts{Ready: 3, Running: 2}, Instances: core.StateCounts{Ready: 1, Running: 1}},
		},
		{
			// Max caps what is wanted: one instance runs, none more.
			name: "within the library's max",
			events: []core.Event{
				join(1, res(4000, 4000)),
				core.LibraryInstalled{Lib: 7, Resources: res(1000, 500), Slots: 2, Max: 1},
				submit(callOf(1, 7, 0), callOf(2, 7, 0), callOf(3, 7, 0)),
				ready(1, 1),
			},
			want:  []core.ShapeDemand{{Shape: res(1000, 500), Instances: 1}},
			tally: core.Tally{Calls: core.StateCounts{Ready: 1, Running: 2}, Instances: core.StateCounts{Running: 1}},
		},
		{
			// An idle instance is no demand for more; the instance that
			// ended counts as finished.
			name: "idle instance",
			events: []core.Event{
				join(1, res(4000, 4000)),
				lib,
				submit(callOf(1, 7, 0)),
				core.InstanceEnded{Instance: inst(1), Attempt: 1, Worker: 1, Outcome: outcome(core.Failed, "set-up failed")},
				ready(2, 1),
				ok(1, 1, 1),
			},
			want:  []core.ShapeDemand{{Shape: res(1000, 500), Instances: 1}},
			tally: core.Tally{Calls: core.StateCounts{Finished: 1}, Instances: core.StateCounts{Running: 1, Finished: 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := core.New()
			for _, ev := range tc.events {
				c.Step(ev)
			}
			if diff := cmp.Diff(tc.want, c.Demand(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Demand() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.tally, c.Tally()); diff != "" {
				t.Errorf("Tally() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
