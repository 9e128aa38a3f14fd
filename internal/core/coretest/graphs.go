package coretest

// Graphs: the bytes a placement policy moves. RunGraph plays one task graph
// (map/reduce, layered, tree reduction, all-to-all) on a fixed set of
// workers with no faults, on a simulated clock where tasks take seeded
// durations and a transfer takes time in proportion to its size, so that
// two policies can be compared on the same graph: the only difference
// between two runs of one GraphConfig is the policy.

import (
	"container/heap"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"trellis/internal/core"
)

// GraphKinds lists the graphs RunGraph makes.
var GraphKinds = []string{"dag", "mapreduce", "layered", "tree", "alltoall"}

// GraphConfig describes one graph and the workers it runs on.
type GraphConfig struct {
	Seed    int64
	Kind    string // one of GraphKinds
	Workers int    // workers; 0 picks 2..5 from the seed
	Cores   int    // cores per worker; 0 picks 1..4 from the seed
	// Batches submits the graph one layer per TasksSubmitted, each once
	// the one before has been placed, as a client that builds its graph
	// as it goes; otherwise in one batch.
	Batches bool
	// EqualSizes gives the outputs of one layer one size (map outputs
	// of one job are alike); otherwise each output's size is drawn.
	EqualSizes bool
	// NoPrefetch turns the core's prefetch of consumers' inputs off (see
	// core.SetPrefetch), to compare.
	NoPrefetch bool
	// Ahead: tasks each worker may hold beyond its cores (core.SetAhead).
	// The workers hold them as real ones do, and start the first as soon
	// as a core frees.
	Ahead int
	Trace io.Writer // if set, receives each event and its actions
}

// GraphResult is what one run moved and how long it took.
type GraphResult struct {
	Tasks      int
	Workers    int
	Cores      int
	BytesMoved int64 // between workers (FromPeer fetches that succeeded)
	BytesMade  int64 // by every task's outputs
	Makespan   int64 // simulated milliseconds from the submit to the last Done
	// Prefetched counts the bytes fetched to a worker for no task staging
	// there (the core's prefetch: these graphs ask for no replicas), and
	// PrefetchUnread those of them that no task then ran on that worker
	// with as an input: the bytes a prefetch moved in vain.
	Prefetched, PrefetchUnread int64
}

func (r GraphResult) String() string {
	return fmt.Sprintf("%d tasks on %d×%d cores: moved %d MiB of %d MiB made, makespan %d ms",
		r.Tasks, r.Workers, r.Cores, r.BytesMoved>>20, r.BytesMade>>20, r.Makespan)
}

type graphTask struct {
	spec  core.Task
	dur   int64
	layer int
}

// makeGraph makes the tasks of cfg's graph, with their durations and
// output sizes; both depend on the seed alone.
func makeGraph(cfg GraphConfig, r *rand.Rand) (tasks []graphTask, sizes map[core.FileID]int64) {
	sizes = make(map[core.FileID]int64)
	var nextFile core.FileID
	sizesMiB := []int64{1, 4, 16, 16, 64}
	layerSize := make(map[int]int64)
	add := func(layer int, inputs []core.FileID, small bool) core.FileID {
		nextFile++
		size := pick(r, sizesMiB) << 20
		if cfg.EqualSizes {
			if layerSize[layer] == 0 {
				layerSize[layer] = size
			}
			size = layerSize[layer]
		}
		if small {
			size = 4 << 10
		}
		sizes[nextFile] = size
		tasks = append(tasks, graphTask{
			spec:  core.Task{ID: core.TaskID(len(tasks) + 1), Resources: core.Resources{MilliCores: 1000, MemoryMB: 100}, Inputs: inputs, Outputs: []core.FileID{nextFile}},
			dur:   50 + r.Int64N(150),
			layer: layer,
		})
		return nextFile
	}
	switch cfg.Kind {
	case "mapreduce": // maps, reduces of k maps each, one gather
		reduces, k := 1+r.IntN(8), 2+r.IntN(7)
		var outs []core.FileID
		for range reduces * k {
			outs = append(outs, add(0, nil, false))
		}
		var sums []core.FileID
		for i := range reduces {
			sums = append(sums, add(1, slices.Clone(outs[i*k:(i+1)*k]), r.IntN(2) == 0))
		}
		add(2, sums, true)
	case "dag": // the graph of trellis bench dag: maps of one size, reduces of k with small outputs, one gather
		reduces, k := 1+r.IntN(8), 2+r.IntN(7)
		size := pick(r, sizesMiB) << 20
		var outs []core.FileID
		for range reduces * k {
			f := add(0, nil, false)
			sizes[f] = size
			outs = append(outs, f)
		}
		var sums []core.FileID
		for i := range reduces {
			sums = append(sums, add(1, slices.Clone(outs[i*k:(i+1)*k]), true))
		}
		add(2, sums, true)
	case "layered": // each task reads 1..4 outputs of the layer before
		layers, width := 2+r.IntN(4), 4+r.IntN(29)
		var prev []core.FileID
		for l := range layers {
			var cur []core.FileID
			for range width {
				var in []core.FileID
				if l > 0 {
					for range 1 + r.IntN(4) {
						if f := pick(r, prev); !slices.Contains(in, f) {
							in = append(in, f)
						}
					}
				}
				cur = append(cur, add(l, in, false))
			}
			prev = cur
		}
	case "tree": // a binary reduction of 8..64 leaves
		var level []core.FileID
		for range 8 + r.IntN(57) {
			level = append(level, add(0, nil, false))
		}
		for l := 1; len(level) > 1; l++ {
			var next []core.FileID
			for i := 0; i < len(level); i += 2 {
				if i+1 == len(level) {
					next = append(next, level[i])
					continue
				}
				next = append(next, add(l, []core.FileID{level[i], level[i+1]}, false))
			}
			level = next
		}
	case "alltoall": // every reduce reads every map
		maps, reduces := 2+r.IntN(15), 1+r.IntN(6)
		var outs []core.FileID
		for range maps {
			outs = append(outs, add(0, nil, false))
		}
		for range reduces {
			add(1, slices.Clone(outs), true)
		}
	default:
		panic(fmt.Sprintf("coretest: unknown graph kind %q", cfg.Kind))
	}
	return tasks, sizes
}

// graphEvent is a task or a transfer that ends at a time.
type graphEvent struct {
	at  int64
	seq uint64
	ev  core.Event
}

type graphEvents []graphEvent

func (h graphEvents) Len() int { return len(h) }
func (h graphEvents) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].seq < h[j].seq
}
func (h graphEvents) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *graphEvents) Push(x any)   { *h = append(*h, x.(graphEvent)) }
func (h *graphEvents) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// peerBytesPerMs is the simulated rate of one transfer: 100 MB/s.
const peerBytesPerMs = 100_000

// RunGraph plays cfg's graph against a core with placement p and returns
// what it moved. It fails tb if a task does not succeed, a dispatch finds
// an input missing on its worker, or a fetch names a source without the
// file: the checks of an independent record of where every file is.
func RunGraph(tb testing.TB, cfg GraphConfig, p core.Placement) GraphResult {
	tb.Helper()
	r := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9a4f))
	workers, cores := cfg.Workers, cfg.Cores
	if workers == 0 {
		workers = 2 + r.IntN(4)
	}
	if cores == 0 {
		cores = 1 + r.IntN(4)
	}
	tasks, sizes := makeGraph(cfg, r)
	res := GraphResult{Tasks: len(tasks), Workers: workers, Cores: cores}
	for _, s := range sizes {
		res.BytesMade += s
	}
	c := core.New()
	c.SetPlacement(p)
	c.SetPrefetch(!cfg.NoPrefetch)
	c.SetAhead(cfg.Ahead)
	holds := make(map[core.WorkerID]map[core.FileID]bool)
	byID := make(map[core.TaskID]*graphTask)
	for i := range tasks {
		byID[tasks[i].spec.ID] = &tasks[i]
	}
	var events graphEvents
	var seq uint64
	var now int64
	done := 0
	fetches := make(map[uint64]core.Fetch)
	type copyOn struct {
		w core.WorkerID
		f core.FileID
	}
	var prefetched []copyOn
	read := make(map[copyOn]bool)
	busy := make(map[core.WorkerID]int)               // cores running tasks (every task takes one)
	heldOn := make(map[core.WorkerID][]core.Dispatch) // dispatched ahead, not started (core.SetAhead)
	start := func(a core.Dispatch) {
		busy[a.Worker]++
		t := byID[a.Task]
		outs := make([]core.OutputInfo, 0, len(t.spec.Outputs))
		for _, f := range t.spec.Outputs {
			outs = append(outs, core.OutputInfo{File: f, Size: sizes[f], Kept: true})
		}
		seq++
		heap.Push(&events, graphEvent{at: now + t.dur, seq: seq, ev: core.TaskFinished{
			Task: a.Task, Attempt: a.Attempt, Worker: a.Worker, Outcome: core.Outcome{Kind: core.Success}, Outputs: outs}})
	}
	step := func(ev core.Event) {
		acts := c.Step(ev)
		if cfg.Trace != nil {
			fmt.Fprintf(cfg.Trace, "%6d %s\n", now, describe(ev))
			for _, a := range acts {
				fmt.Fprintf(cfg.Trace, "\t%+v\n", a)
			}
		}
		for _, a := range acts {
			switch a := a.(type) {
			case core.Dispatch:
				t := byID[a.Task]
				for _, f := range t.spec.Inputs {
					if !holds[a.Worker][f] {
						tb.Fatalf("graph %+v, %v: %+v: input %d is not on the worker", cfg, p, a, f)
					}
					read[copyOn{a.Worker, f}] = true
				}
				if a.Ahead && (len(heldOn[a.Worker]) > 0 || busy[a.Worker] >= cores) {
					heldOn[a.Worker] = append(heldOn[a.Worker], a)
					continue
				}
				if busy[a.Worker] >= cores {
					tb.Fatalf("graph %+v, %v: %+v over-commits its worker (%d of %d cores busy)", cfg, p, a, busy[a.Worker], cores)
				}
				start(a)
			case core.Fetch:
				if a.Task == 0 && a.Source.Kind == core.FromPeer {
					res.Prefetched += sizes[a.File]
					prefetched = append(prefetched, copyOn{a.Worker, a.File})
				}
				took := 1 + sizes[a.File]/peerBytesPerMs
				switch {
				case a.Source.Kind == core.FromCache && holds[a.Worker][a.File]:
					took = 0 // a claim of a released copy: these caches never evict
				case a.Source.Kind != core.FromPeer || !holds[a.Source.Peer][a.File]:
					tb.Fatalf("graph %+v, %v: %+v: the source does not hold the file", cfg, p, a)
				}
				fetches[a.Transfer] = a
				seq++
				heap.Push(&events, graphEvent{at: now + took, seq: seq, ev: core.TransferDone{Transfer: a.Transfer, OK: true, Size: sizes[a.File]}})
			case core.Done:
				if a.Outcome.Kind != core.Success {
					tb.Fatalf("graph %+v, %v: %+v", cfg, p, a)
				}
				done++
				res.Makespan = now
			}
		}
	}
	for i := range workers {
		id := core.WorkerID(i + 1)
		holds[id] = make(map[core.FileID]bool)
		step(core.WorkerJoined{Worker: id, Resources: core.Resources{MilliCores: int64(cores) * 1000, MemoryMB: int64(cores) * 1000}, HoldsAhead: true})
	}
	var decl []core.FileSpec
	for f := range sizes {
		decl = append(decl, core.FileSpec{ID: f, Kind: core.Produced})
	}
	slices.SortFunc(decl, func(a, b core.FileSpec) int { return int(a.ID) - int(b.ID) })
	step(core.FilesDeclared{Files: decl})
	submit := func(layer int) {
		var batch []core.Task
		for _, t := range tasks {
			if !cfg.Batches || t.layer == layer {
				batch = append(batch, t.spec)
			}
		}
		if len(batch) > 0 {
			step(core.TasksSubmitted{Tasks: batch})
		}
	}
	submit(0)
	layer := 0
	for done < len(tasks) {
		if cfg.Batches && layer < tasks[len(tasks)-1].layer {
			layer++
			submit(layer)
			continue
		}
		if events.Len() == 0 {
			tb.Fatalf("graph %+v, %v: %d of %d tasks done and nothing running", cfg, p, done, len(tasks))
		}
		e := heap.Pop(&events).(graphEvent)
		now = e.at
		switch ev := e.ev.(type) {
		case core.TaskFinished:
			for _, o := range ev.Outputs {
				holds[ev.Worker][o.File] = true
			}
			busy[ev.Worker]--
			for len(heldOn[ev.Worker]) > 0 && busy[ev.Worker] < cores { // the worker starts what it holds, first first
				a := heldOn[ev.Worker][0]
				heldOn[ev.Worker] = heldOn[ev.Worker][1:]
				start(a)
			}
		case core.TransferDone:
			a := fetches[ev.Transfer]
			delete(fetches, ev.Transfer)
			holds[a.Worker][a.File] = true
		}
		step(e.ev)
	}
	res.BytesMoved = c.Stats().Moved[core.FromPeer]
	if got := c.Stats().Prefetched; got != res.Prefetched {
		tb.Fatalf("graph %+v, %v: the core counts %d bytes prefetched, its fetches for no staging task brought %d", cfg, p, got, res.Prefetched)
	}
	for _, x := range prefetched {
		if !read[x] {
			res.PrefetchUnread += sizes[x.f]
		}
	}
	return res
}
