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
			holds := map[core.WorkerID]map[core.FileID]bool{}
			for w := 1; w <= workers; w++ {
				n := 1 + rng.IntN(2)
				cores += n
				acts = append(acts, c.Step(join(core.WorkerID(w), res(1000*int64(n), 1000)))...)
				holds[core.WorkerID(w)] = map[core.FileID]bool{}
			}
			acts = append(acts, c.Step(pruned(0, all...))...)
			acts = append(acts, c.Step(core.TasksSubmitted{Tasks: slices.Clone(tasks)})...)
			var queue []core.Event
			fetches := map[uint64]core.Fetch{}
			done := 0
			bound := cores * (depth + 2)
			for n := 0; n < 100*len(tasks) && done < len(tasks); n++ {
				for _, a := range acts {
					switch a := a.(type) {
					case core.Dispatch:
						for _, f := range inputs[a.Task] {
							if !holds[a.Worker][f] {
								t.Fatalf("task %d dispatched to worker %d, which lacks input %d", a.Task, a.Worker, f)
							}
						}
						out := core.FileID(100 + a.Task)
						holds[a.Worker][out] = true
						queue = append(queue, kept(a.Task, a.Attempt, a.Worker, size, out))
					case core.Fetch:
						fetches[a.Transfer] = a
						queue = append(queue, fetched(a.Transfer, size))
					case core.Unlink:
						for _, f := range a.Files {
							delete(holds[a.Worker], f)
						}
					case core.Done:
						done++
					}
				}
				alive := map[core.FileID]bool{}
				for _, h := range holds {
					for f := range h {
						alive[f] = true
					}
				}
				if len(alive) > bound {
					t.Fatalf("%d workers, %d cores: %d files of the tree alive, want at most %d", workers, cores, len(alive), bound)
				}
				if len(queue) == 0 {
					break
				}
				i := rng.IntN(len(queue))
				ev := queue[i]
				queue = slices.Delete(queue, i, i+1)
				if d, ok := ev.(core.TransferDone); ok {
					f := fetches[d.Transfer]
					holds[f.Worker][f.File] = true
				}
				acts = c.Step(ev)
			}
			if done != len(tasks) {
				t.Fatalf("%d of %d tasks done", done, len(tasks))
			}
		})
	}
}
