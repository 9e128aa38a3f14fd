package core_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
			do := func(ev core.Event) []core.Action { return c.Step(ev) }
			var acts []core.Action
			for w := 1; w <= workers; w++ {
				acts = append(acts, do(join(core.WorkerID(w), res(1000*int64(1+rng.IntN(2)), 1000)))...)
			}
			acts = append(acts, do(pruned(depth, fileRange(10, 10+steps)...))...)
			acts = append(acts, do(chain(steps))...)
			fc := newFileCluster(workers)
			for n := 0; n < 10*steps && fc.done < steps; n++ {
				fc.apply(t, acts, inputsOf, func(id core.TaskID) core.FileID { return core.FileID(9 + id) }, size)
				alive, copies := fc.alive()
				if max := int(depth) + 2; alive > max || copies > 2*max {
					t.Fatalf("seed %d, depth %d, %d workers: %d files of the chain alive in %d copies, want at most %d in %d", seed, depth, workers, alive, copies, max, 2*max)
				}
				if len(fc.queue) == 0 {
					break
				}
				acts = do(fc.take(0))
			}
			done := fc.done
			if done != steps {
				t.Fatalf("seed %d: %d of %d tasks done", seed, done, steps)
			}
		})
	}
}

// fileCluster is the fake cluster of the pruning bound tests: workers that
// run each dispatched task at once, writing its one output, and complete
// each fetch; it tracks which worker holds which file.
type fileCluster struct {
	holds   map[core.WorkerID]map[core.FileID]bool
	fetches map[uint64]core.Fetch
	queue   []core.Event // what the workers will report, in any order
	done    int          // tasks ended
}

func newFileCluster(workers int) *fileCluster {
	f := &fileCluster{holds: map[core.WorkerID]map[core.FileID]bool{}, fetches: map[uint64]core.Fetch{}}
	for w := 1; w <= workers; w++ {
		f.holds[core.WorkerID(w)] = map[core.FileID]bool{}
	}
	return f
}

// apply carries out the core's actions. A Dispatch must find the task's
// inputs on its worker: a pruned file is never read.
func (f *fileCluster) apply(t *testing.T, acts []core.Action, inputsOf func(core.TaskID) []core.FileID, out func(core.TaskID) core.FileID, size int64) {
	t.Helper()
	for _, a := range acts {
		switch a := a.(type) {
		case core.Dispatch:
			for _, in := range inputsOf(a.Task) {
				if !f.holds[a.Worker][in] {
					t.Fatalf("task %d dispatched to worker %d, which lacks input %d (holds %v)", a.Task, a.Worker, in, f.holds[a.Worker])
				}
			}
			f.holds[a.Worker][out(a.Task)] = true
			f.queue = append(f.queue, kept(a.Task, a.Attempt, a.Worker, size, out(a.Task)))
		case core.Fetch:
			f.fetches[a.Transfer] = a
			f.queue = append(f.queue, fetched(a.Transfer, size))
		case core.Unlink:
			for _, file := range a.Files {
				delete(f.holds[a.Worker], file)
			}
		case core.Done:
			f.done++
		}
	}
}

// alive counts the files held anywhere, and their copies.
func (f *fileCluster) alive() (files, copies int) {
	seen := map[core.FileID]bool{}
	for _, h := range f.holds {
		for file := range h {
			seen[file] = true
			copies++
		}
	}
	return len(seen), copies
}

// take removes the i-th queued report; a fetch's file is then held.
func (f *fileCluster) take(i int) core.Event {
	ev := f.queue[i]
	f.queue = slices.Delete(f.queue, i, i+1)
	if d, ok := ev.(core.TransferDone); ok {
		fe := f.fetches[d.Transfer]
		f.holds[fe.Worker][fe.File] = true
	}
	return ev
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
