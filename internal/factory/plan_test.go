package factory

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis"
)

func TestPlan(t *testing.T) {
	one := trellis.Resources{Cores: 1, MemoryMB: 1000}
	worker := trellis.Resources{Cores: 4, MemoryMB: 8000, DiskMB: 10000}
	lim := Limits{Worker: worker, Min: 0, Max: 10, PerCycle: 3}
	shape := func(r trellis.Resources, waiting, wanted int) trellis.ShapeDemand {
		return trellis.ShapeDemand{Shape: r, Waiting: waiting, InstancesWanted: wanted}
	}
	for _, tc := range []struct {
		name string
		view View
		lim  Limits
		want Decision
	}{
		{"nothing waits: nothing to do", View{}, lim, Decision{}},
		{"the minimum is kept", View{Connected: 1}, Limits{Worker: worker, Min: 2, Max: 10}, Decision{Submit: 1}},
		{"tasks of one core pack four to a worker", View{Demand: []trellis.ShapeDemand{shape(one, 9, 0)}}, Limits{Worker: worker, Max: 10}, Decision{Submit: 3}},
		{"at most PerCycle submissions a cycle", View{Demand: []trellis.ShapeDemand{shape(one, 40, 0)}}, lim, Decision{Submit: 3}},
		{"pending jobs count", View{Demand: []trellis.ShapeDemand{shape(one, 8, 0)}, Pending: 1}, lim, Decision{Submit: 1}},
		{"never past the maximum", View{Demand: []trellis.ShapeDemand{shape(one, 400, 0)}, Connected: 9}, lim, Decision{Submit: 1}},
		{"instances that calls want count as tasks of their shape", View{Demand: []trellis.ShapeDemand{shape(trellis.Resources{Cores: 2}, 0, 3)}}, lim, Decision{Submit: 2}},
		{"memory bounds the packing", View{Demand: []trellis.ShapeDemand{shape(trellis.Resources{Cores: 1, MemoryMB: 5000}, 2, 0)}}, lim, Decision{Submit: 2}},
		{"demand gone: pending jobs are cancelled", View{Connected: 2, Pending: 3}, lim, Decision{Cancel: 3}},
		{"demand shrank: the excess pending is cancelled", View{Demand: []trellis.ShapeDemand{shape(one, 4, 0)}, Pending: 3}, lim, Decision{Cancel: 2}},
		{"a shape no worker can run is not counted", View{Demand: []trellis.ShapeDemand{shape(trellis.Resources{Cores: 64}, 5, 0), shape(one, 1, 0)}}, lim, Decision{Submit: 1}},
		{"GPUs need a worker with GPUs", View{Demand: []trellis.ShapeDemand{shape(trellis.Resources{Cores: 1, GPUs: 1}, 2, 0)}}, lim, Decision{}},
		{"memory left to detection does not bound", View{Demand: []trellis.ShapeDemand{shape(trellis.Resources{Cores: 1, MemoryMB: 5000}, 2, 0)}}, Limits{Worker: trellis.Resources{Cores: 4}, Max: 10}, Decision{Submit: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(tc.view, tc.lim)
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Decision{}, "Why")); diff != "" {
				t.Errorf("Plan(%+v) (-want +got):\n%s\nwhy: %s", tc.view, diff, got.Why)
			}
			if got.Why == "" {
				t.Errorf("Plan(%+v) gives no reason", tc.view)
			}
		})
	}
	d := Plan(View{Demand: []trellis.ShapeDemand{shape(trellis.Resources{Cores: 64}, 5, 0)}}, lim)
	if want := "no worker of this factory can run 5 tasks of 64 cores"; !strings.Contains(d.Why, want) {
		t.Errorf("Why = %q, want it to contain %q", d.Why, want)
	}
}
