package core

import "sort"

// worker is the core's view of one connected worker.
type worker struct {
	id       WorkerID
	total    Resources
	free     Resources
	gpusFree []int32 // device indexes not assigned to a running task, ascending
	// gpusOf holds the devices of each task placed here that asked for
	// GPUs (a map, not a field of every task: most ask for none).
	gpusOf   map[TaskID][]int32
	running  map[TaskID]*task
	draining bool
	index    int // in openWorkers, or -1

	holds        map[FileID]copyState // replicas it holds, and whether it may evict them (see pins.go)
	pins         map[FileID]int32     // tasks placed here that read each file (see pin)
	looseBytes   int64                // of cacheBytes, the copies it may evict (see setCopy)
	cacheBytes   int64                // their size
	inflight     map[FileID]uint64    // fetches to it: transfer ID, or 0 while queued
	waiting      map[FileID][]*task   // staging tasks, by the input they wait for
	derives      map[FileID][]FileID  // files to derive once this one arrives
	tries        map[FileID]int32     // failed fetches of a file to it
	outgoing     int32                // fetches from it, as a peer
	failures     int32                // consecutive failed fetches from it
	backoffUntil uint64               // tick until which peers avoid it
	done         uint64               // tasks whose Done named it
	pruned       int64                // bytes the core unlinked from it (see retire)
	peakCache    int64                // the most cacheBytes so far
	homes        []*family            // families placed here first (see families.go)
	homesKept    int                  // len(homes) after it was last cleaned
	ahead        []*task              // dispatched and held beyond its free resources, in order (ahead.go)
	holdsAhead   bool                 // it may be sent tasks ahead (WorkerJoined.HoldsAhead)
	stealing     bool                 // a held task was revoked for it and has not come back or started (stealFor)
}

// openWorkers is a max-heap of the workers that take tasks, by free cores
// (ties by ID, for determinism). Its top is the worker most likely to fit a
// new task, and placement spreads load by choosing it.
type openWorkers []*worker

func (h openWorkers) less(i, j int) bool {
	if h[i].free.MilliCores != h[j].free.MilliCores {
		return h[i].free.MilliCores > h[j].free.MilliCores
	}
	return h[i].id < h[j].id
}

func (h openWorkers) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *openWorkers) push(w *worker) {
	w.index = len(*h)
	*h = append(*h, w)
	h.up(w.index)
}

func (h *openWorkers) remove(w *worker) {
	i, last := w.index, len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	if i != last {
		h.fix(i)
	}
	w.index = -1
}

func (h openWorkers) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h openWorkers) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h openWorkers) down(i int) bool {
	start, n := i, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

// WorkerInfo is a read-only view of a worker, for status pages.
type WorkerInfo struct {
	ID      WorkerID
	Total   Resources
	Free    Resources
	Running []TaskID // sorted; includes tasks staging their inputs there, not those held ahead
	Ahead   []TaskID // tasks it holds ahead, not started, in the order they start (SetAhead)
	// Instances are the library instances it holds (or stages), sorted.
	Instances []InstanceID
	Draining  bool

	CacheBytes  int64 // files it holds, as the core knows them
	CacheFiles  int
	CacheNeeded int64 // of CacheBytes, those of files unfinished tasks read
	// CacheReleased: of CacheBytes, the copies released to the worker's
	// eviction (see pins.go): no task placed there reads them.
	CacheReleased int64
	Pruned        int64 // bytes unlinked from it so far (see Unlink)
	PeakCache     int64 // the most CacheBytes it held at once
	TransfersIn   int   // fetches to it in flight
	TransfersOut  int   // fetches from it in flight
	// TasksDone counts the tasks and calls whose Done named it: their last
	// attempt ran there.
	TasksDone uint64
}

// Workers returns every connected worker, by ID.
func (c *Core) Workers() []WorkerInfo {
	out := make([]WorkerInfo, 0, len(c.workers))
	for _, w := range c.workers {
		info := WorkerInfo{ID: w.id, Total: w.total, Free: w.free, Draining: w.draining,
			CacheBytes: w.cacheBytes, CacheFiles: len(w.holds), TransfersOut: int(w.outgoing), TasksDone: w.done,
			Pruned: w.pruned, PeakCache: w.peakCache, CacheReleased: w.looseBytes}
		for f := range w.holds {
			if e := c.files.files[f]; e != nil && e.needers > 0 {
				info.CacheNeeded += e.size
			}
		}
		for _, id := range w.inflight {
			if id != 0 {
				info.TransfersIn++
			}
		}
		for id, t := range w.running {
			switch {
			case t.spec.Role == Instance:
				info.Instances = append(info.Instances, t.inst.id)
			case !t.isAhead():
				info.Running = append(info.Running, id)
			}
		}
		for _, t := range w.ahead {
			info.Ahead = append(info.Ahead, t.spec.ID)
		}
		sort.Slice(info.Running, func(i, j int) bool { return info.Running[i] < info.Running[j] })
		sort.Slice(info.Instances, func(i, j int) bool { return info.Instances[i] < info.Instances[j] })
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Replicas returns the workers holding a copy of f, by ID.
func (c *Core) Replicas(f FileID) []WorkerID {
	if e := c.files.files[f]; e != nil {
		return append([]WorkerID(nil), e.replicas...)
	}
	return nil
}
