package core_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"trellis/internal/core"
)

// TestMapReduceInSmallCaches drives the map/reduce of issue #18 through
// the core with a seeded fake cluster whose caches are as small as the
// e2e test's (2 workers of 2 cores and 10 MiB; 64 maps of 1 MiB into 16
// reduces of 4 and a gather), events answered in random order. The fake
// caches evict only released copies, to make room for a fetch or an
// output, and report it as the next event; an output that does not fit
// is handed back, a fetch that does not fit fails CacheFull, so the fake
// caches never hold more than 10 MiB. Checked: no task is dispatched
// without its inputs on its worker; every task succeeds, and the run never
// stalls (10 Ticks with nothing to do): without breakDeadlock, some seeds
// do.
func TestMapReduceInSmallCaches(t *testing.T) {
	const maps, reduces, mib = 64, 16, 1 << 20
	var broke uint64
	for seed := uint64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 18))
			c := core.New()
			type held struct {
				size  int64
				loose bool
			}
			cache := map[core.WorkerID]map[core.FileID]*held{1: {}, 2: {}}
			inputs := map[core.TaskID][]core.FileID{}
			output := map[core.TaskID]core.FileID{}
			var tasks []core.Task
			for i := range maps {
				id := core.TaskID(1 + i)
				output[id] = core.FileID(1000 + i)
				tasks = append(tasks, files(task(id, res(1000, 10)), nil, ids(output[id])))
			}
			for r := range reduces {
				id := core.TaskID(100 + r)
				inputs[id] = fileRange(core.FileID(1000+4*r), core.FileID(1000+4*r+4))
				output[id] = core.FileID(2000 + r)
				tasks = append(tasks, files(task(id, res(1000, 10)), inputs[id], ids(output[id])))
			}
			inputs[200] = fileRange(2000, 2000+reduces)
			tasks = append(tasks, files(task(200, res(1000, 10)), inputs[200], nil))
			sizeOf := func(f core.FileID) int64 {
				if f < 2000 {
					return mib
				}
				return 1 << 10
			}
			var queue, urgent []core.Event
			// room makes size bytes of room in w's cache, evicting
			// released copies (reported next); it reports whether they fit.
			room := func(w core.WorkerID, size int64) bool {
				var used int64
				var loose []core.FileID
				for f, h := range cache[w] {
					used += h.size
					if h.loose {
						loose = append(loose, f)
					}
				}
				slices.Sort(loose)
				var gone []core.FileID
				for _, f := range loose {
					if used+size <= 10*mib {
						break
					}
					used -= cache[w][f].size
					gone = append(gone, f)
				}
				if used+size > 10*mib {
					return false
				}
				for _, f := range gone {
					delete(cache[w], f)
				}
				if len(gone) > 0 {
					urgent = append(urgent, core.FilesDropped{Worker: w, Files: gone})
				}
				return true
			}
			var do func(core.Event)
			do = func(ev core.Event) {
				for _, a := range c.Step(ev) {
					switch a := a.(type) {
					case core.Dispatch:
						for _, f := range inputs[a.Task] {
							if cache[a.Worker][f] == nil {
								t.Fatalf("seed %d: task %d dispatched to worker %d without input %d", seed, a.Task, a.Worker, f)
							}
						}
						out := output[a.Task]
						if out == 0 {
							queue = append(queue, ok(a.Task, a.Attempt, a.Worker))
						} else if !room(a.Worker, sizeOf(out)) {
							queue = append(queue, core.TaskReturned{Task: a.Task, Attempt: a.Attempt, Worker: a.Worker, CacheFull: true, Need: sizeOf(out)})
						} else {
							cache[a.Worker][out] = &held{size: sizeOf(out)}
							queue = append(queue, kept(a.Task, a.Attempt, a.Worker, sizeOf(out), out))
						}
					case core.Fetch:
						h := cache[a.Worker][a.File]
						switch {
						case a.Source.Kind == core.FromCache && h == nil:
							queue = append(queue, core.TransferDone{Transfer: a.Transfer, SourceFault: true, Why: "evicted"})
						case a.Source.Kind == core.FromCache:
							h.loose = false
							queue = append(queue, fetched(a.Transfer, h.size))
						case room(a.Worker, sizeOf(a.File)):
							cache[a.Worker][a.File] = &held{size: sizeOf(a.File)}
							queue = append(queue, fetched(a.Transfer, sizeOf(a.File)))
						default:
							queue = append(queue, core.TransferDone{Transfer: a.Transfer, CacheFull: true, Why: "disk full"})
						}
					case core.Release:
						for _, f := range a.Files {
							if h := cache[a.Worker][f]; h != nil {
								h.loose = true
							}
						}
					case core.Unlink:
						for _, f := range a.Files {
							delete(cache[a.Worker], f)
						}
					case core.Done:
						if a.Outcome.Kind != core.Success {
							t.Fatalf("seed %d: task %d ended %v: %s", seed, a.Task, a.Outcome.Kind, a.Outcome.Message)
						}
					}
				}
			}
			for w := core.WorkerID(1); w <= 2; w++ {
				do(join(w, core.Resources{MilliCores: 2000, MemoryMB: 1000, DiskMB: 10}))
			}
			do(pruned(0, append(fileRange(1000, 1000+maps), fileRange(2000, 2000+reduces)...)...))
			do(core.TasksSubmitted{Tasks: tasks})
			idle := 0
			for n := 0; n < 100_000; n++ {
				if _, _, running, finished := c.Counts(); finished == len(tasks) && running == 0 {
					break
				}
				var ev core.Event
				switch {
				case len(urgent) > 0: // evictions are reported before anything else
					ev, urgent = urgent[0], urgent[1:]
				case len(queue) > 0:
					i := rng.IntN(len(queue))
					ev = queue[i]
					queue = slices.Delete(queue, i, i+1)
				default:
					if idle++; idle > 10 {
						t.Fatalf("seed %d: nothing happens for 10 ticks: %v", seed, c.Workers())
					}
					ev = core.Tick{}
				}
				if _, tick := ev.(core.Tick); !tick {
					idle = 0
				}
				do(ev)
			}
			if _, _, _, finished := c.Counts(); finished != len(tasks) {
				t.Fatalf("seed %d: %d of %d tasks finished", seed, finished, len(tasks))
			}
			broke += c.Stats().EvictedForSpace
		})
	}
	t.Logf("copies unlinked to break deadlocks over every seed: %d", broke)
}
