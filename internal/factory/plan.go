package factory

import (
	"fmt"
	"math"
	"strings"
	"time"

	"trellis"
)

// Limits bound what a factory asks of its batch system.
type Limits struct {
	Worker   trellis.Resources // what each worker offers
	Min, Max int               // workers, connected or pending
	PerCycle int               // submissions per cycle; 0 means no bound
}

// View is what one cycle sees: the manager's demand, and the factory's own
// workers and jobs.
type View struct {
	Demand    []trellis.ShapeDemand
	Connected int // the factory's workers connected to the manager
	Pending   int // jobs submitted whose workers have not connected yet
}

// Decision is what one cycle does, and why.
type Decision struct {
	Submit int // new jobs
	Cancel int // pending jobs to cancel (the newest first)
	Why    string
}

// Plan decides one cycle. Workers are wanted for the work that waits
// without a place (command tasks of each shape, and the library instances
// that waiting calls need), packed by shape into workers of lim.Worker:
// the connected workers are busy with what is placed, or they would take
// what waits. The total is kept within lim.Min and lim.Max; no more jobs
// pend than the waiting work can use, so a burst of demand that ends does
// not leave a queue of jobs behind it; idle workers retire themselves
// (trellis worker --idle-exit). Shapes no worker of lim.Worker could run
// are not counted, and are named in Why.
func Plan(v View, lim Limits) Decision {
	need, unfit := workersFor(v.Demand, lim.Worker)
	target := min(max(v.Connected+need, lim.Min), lim.Max)
	d := Decision{}
	switch want := target - v.Connected; {
	case want > v.Pending:
		d.Submit = want - v.Pending
		if lim.PerCycle > 0 {
			d.Submit = min(d.Submit, lim.PerCycle)
		}
	case want < v.Pending:
		d.Cancel = v.Pending - max(want, 0)
	}
	var why []string
	why = append(why, fmt.Sprintf("waiting work needs %d more workers; %d connected, %d pending; bounds %d..%d", need, v.Connected, v.Pending, lim.Min, lim.Max))
	if len(unfit) > 0 {
		why = append(why, "no worker of this factory can run "+strings.Join(unfit, ", "))
	}
	d.Why = strings.Join(why, "; ")
	return d
}

// workersFor returns how many workers of shape w the waiting demand needs,
// and the shapes w cannot hold.
func workersFor(demand []trellis.ShapeDemand, w trellis.Resources) (need int, unfit []string) {
	var total float64 // in workers, summed over shapes: each shape's tasks fill whole workers
	for _, d := range demand {
		n := d.Waiting + d.InstancesWanted
		if n == 0 {
			continue
		}
		per := perWorker(d.Shape, w)
		if per == 0 {
			unfit = append(unfit, fmt.Sprintf("%d tasks of %g cores, %d MB memory, %d MB disk, %d GPUs", n, d.Shape.Cores, d.Shape.MemoryMB, d.Shape.DiskMB, d.Shape.GPUs))
			continue
		}
		total += math.Ceil(float64(n) / float64(per))
	}
	return int(total), unfit
}

// perWorker returns how many tasks of shape s fit in one worker of w at
// once (0: none). A resource s does not ask for does not bound it, nor
// memory or disk that w leaves to the worker to detect (0).
func perWorker(s, w trellis.Resources) int {
	n := math.MaxInt
	fit := func(need, have float64) {
		if need > 0 {
			n = min(n, int(math.Floor(have/need+1e-9)))
		}
	}
	fit(s.Cores, w.Cores)
	if w.MemoryMB > 0 {
		fit(float64(s.MemoryMB), float64(w.MemoryMB))
	}
	if w.DiskMB > 0 {
		fit(float64(s.DiskMB), float64(w.DiskMB))
	}
	fit(float64(s.GPUs), float64(w.GPUs))
	if n == math.MaxInt {
		n = max(1, int(w.Cores)) // asks for nothing: one per core
	}
	return n
}

// Overdue returns the pending jobs submitted (since) at least timeout
// before now, oldest first as pending is; timeout 0 gives none. They wait
// in the batch system's queue or started without their worker connecting:
// the factory cancels them and submits others.
func Overdue(pending []string, since map[string]time.Time, now time.Time, timeout time.Duration) []string {
	if timeout <= 0 {
		return nil
	}
	var late []string
	for _, name := range pending {
		if t, ok := since[name]; ok && now.Sub(t) >= timeout {
			late = append(late, name)
		}
	}
	return late
}
