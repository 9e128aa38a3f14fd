package core_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"trellis/internal/core"
)

// TestPruneChainBound drives chains of pruned temp files through the core
// with a seeded fake cluster (workers that run each dispatched task at once
// and complete each fetch) and checks after every step the bound pruning
// promises on a chain: with depth d, at most d+2 files of the chain are
// alive (the input being read, the output being written, d kept behind),
// each on at most two workers (where it was written and where its reader
// fetched it). It also checks that no task is dispatched to a worker that
// lacks an input: a pruned file is never read.
func TestPruneChainBound(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 18))
			workers := 1 + rng.IntN(4)
			depth := int32(rng.IntN(4))
			const steps, size = 60, 1000
			c := core.New()
			var queue []core.Event
			do := func(ev core.Event) []core.Action { return c.Step(ev) }
			var acts []core.Action
			for w := 1; w <= workers; w++ {
				acts = append(acts, do(join(core.WorkerID(w), res(1000*int64(1+rng.IntN(2)), 1000)))...)
			}
			acts = append(acts, do(pruned(depth, fileRange(10, 10+steps)...))...)
			acts = append(acts, do(chain(steps))...)
			holds := map[core.WorkerID]map[core.FileID]bool{}
			for w := 1; w <= workers; w++ {
				holds[core.WorkerID(w)] = map[core.FileID]bool{}
			}
			fetches := map[uint64]core.Fetch{}
			done := 0
			for n := 0; n < 10*steps && done < steps; n++ {
				for _, a := range acts {
					switch a := a.(type) {
					case core.Dispatch:
						for _, f := range inputsOf(a.Task) {
							if !holds[a.Worker][f] {
								t.Fatalf("seed %d: task %d dispatched to worker %d, which lacks input %d (holds %v)", seed, a.Task, a.Worker, f, holds[a.Worker])
							}
						}
						out := core.FileID(9 + a.Task)
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
				alive, copies := map[core.FileID]bool{}, 0
				for _, h := range holds {
					for f := range h {
						alive[f] = true
						copies++
					}
				}
				if max := int(depth) + 2; len(alive) > max || copies > 2*max {
					t.Fatalf("seed %d, depth %d, %d workers: %d files of the chain alive in %d copies, want at most %d in %d", seed, depth, workers, len(alive), copies, max, 2*max)
				}
				if len(queue) == 0 {
					break
				}
				ev := queue[0]
				queue = queue[1:]
				if d, ok := ev.(core.TransferDone); ok {
					f := fetches[d.Transfer]
					holds[f.Worker][f.File] = true
				}
				acts = do(ev)
			}
			if done != steps {
				t.Fatalf("seed %d: %d of %d tasks done", seed, done, steps)
			}
		})
	}
}

func fileRange(from, to core.FileID) []core.FileID {
	var fs []core.FileID
	for f := from; f < to; f++ {
		fs = append(fs, f)
	}
	return fs
}

// inputsOf is the input of task id of chain.
func inputsOf(id core.TaskID) []core.FileID {
	if id == 1 {
		return nil
	}
	return ids(core.FileID(8 + id))
}
