package core_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"trellis/internal/core"
)

// TestPruneTreeBound drives a binary reduction tree of pruned temp files
// (64 leaves, each inner task reading its two children's outputs) through
// the core with a seeded fake cluster that completes events in random
// order, and checks after every step the bound that pruning with branch-
// first order promises on a tree: with P cores in all and depth D, at most
// P·(D+2) files of the tree are alive (each slot holds at most one partial
// result per level, and the file it writes), against 2·64-1 kept without
// pruning. No task is dispatched to a worker that lacks an input.
func TestPruneTreeBound(t *testing.T) {
	const leaves, depth, size = 64, 6, 1000
	// Tasks 1..64 are the leaves; each level's tasks follow, task k of a
	// level reading the outputs of tasks 2k and 2k+1 of the level below.
	// Task i writes file 100+i.
	var tasks []core.Task
	inputs := map[core.TaskID][]core.FileID{}
	below, next := []core.TaskID{}, core.TaskID(1)
	for range leaves {
		tasks = append(tasks, files(task(next, res(1000, 100)), nil, ids(core.FileID(100+next))))
		below = append(below, next)
		next++
	}
	for len(below) > 1 {
		var level []core.TaskID
		for k := 0; k < len(below); k += 2 {
			in := ids(core.FileID(100+below[k]), core.FileID(100+below[k+1]))
			inputs[next] = in
			tasks = append(tasks, files(task(next, res(1000, 100)), in, ids(core.FileID(100+next))))
			level = append(level, next)
			next++
		}
		below = level
	}
	all := fileRange(101, core.FileID(100+next))
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 181))
			workers, cores := 1+rng.IntN(3), 0
			c := core.New()
			var acts []core.Action
			for w := 1; w <= workers; w++ {
				n := 1 + rng.IntN(2)
				cores += n
				acts = append(acts, c.Step(join(core.WorkerID(w), res(1000*int64(n), 1000)))...)
			}
			acts = append(acts, c.Step(pruned(0, all...))...)
			acts = append(acts, c.Step(core.TasksSubmitted{Tasks: slices.Clone(tasks)})...)
			fc := newFileCluster(workers)
			bound := cores * (depth + 2)
			in := func(id core.TaskID) []core.FileID { return inputs[id] }
			out := func(id core.TaskID) core.FileID { return core.FileID(100 + id) }
			for n := 0; n < 100*len(tasks) && fc.done < len(tasks); n++ {
				fc.apply(t, acts, in, out, size)
				if alive, _ := fc.alive(); alive > bound {
					t.Fatalf("%d workers, %d cores: %d files of the tree alive, want at most %d", workers, cores, alive, bound)
				}
				if len(fc.queue) == 0 {
					break
				}
				acts = c.Step(fc.take(rng.IntN(len(fc.queue))))
			}
			done := fc.done
			if done != len(tasks) {
				t.Fatalf("%d of %d tasks done", done, len(tasks))
			}
		})
	}
}
