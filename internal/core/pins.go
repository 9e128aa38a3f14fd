package core

// Pins: which copies a worker may evict on its own. A worker's cache
// evicts files to make room for new ones, and the core hears of it only
// later (FilesDropped). So that no task is sent to run with an input its
// worker has evicted meanwhile, the core decides which copies a worker may
// evict, and the worker evicts no other:
//   - A Fetch holds its file on its worker: from the moment the worker
//     reads the Fetch, the copy stays until a Release names it (or an
//     Unlink removes it). A task's output, kept where it ran, is never
//     evicted by its worker.
//   - Each task placed on a worker pins its inputs there (and the archives
//     they are unpacked from) from its placement until it leaves the
//     worker (it ends, is handed back, goes back to the queue, or its
//     worker drains). When the last pin of a fetched copy goes, the core
//     releases it (Release, at the end of the step): the worker may evict
//     it from then on.
//   - A released copy stays in the catalog (it may serve peers, and
//     placement prefers the worker that holds it), but a task placed there
//     claims it before it runs: a Fetch from the worker's own cache
//     (FromCache), which holds it again and succeeds at once if the copy is
//     still there, or fails, after the worker reported it dropped, if it
//     was evicted; the file is then staged from elsewhere, or recreated.
//   - Files a worker holds when it joins are released from the start.
//
// So a task is dispatched only with inputs that its worker holds and may
// not evict: fetched for it and not released since, or outputs.

// copyState says how a worker holds a copy of a file.
type copyState uint8

const (
	copyNone  copyState = iota
	copyKept            // an output its producer kept: never evicted by the worker
	copyHeld            // fetched (or claimed), not released since: not evicted
	copyLoose           // released, or held when the worker joined: the worker may evict it
)

// pin records that t, placed on w, reads its inputs there: none of them is
// released while t stays.
func (c *Core) pin(t *task, w *worker) {
	if t.pinned {
		return
	}
	t.pinned = true
	c.files.deps(t, func(e *fileEntry) {
		if w.pins == nil {
			w.pins = make(map[FileID]int32)
		}
		w.pins[e.id]++
	})
}

// unpin undoes pin once t leaves w; copies that no task there reads any
// more are released at the end of the step.
func (c *Core) unpin(t *task, w *worker) {
	if !t.pinned {
		return
	}
	t.pinned = false
	c.files.deps(t, func(e *fileEntry) {
		n, ok := w.pins[e.id]
		if !ok {
			return
		}
		if n > 1 {
			w.pins[e.id] = n - 1
			return
		}
		delete(w.pins, e.id)
		if w.holds[e.id] == copyHeld {
			c.releasing = append(c.releasing, workerFile{w.id, e.id})
		}
	})
}

// workerFile names a copy of a file on a worker.
type workerFile struct {
	worker WorkerID
	file   FileID
}

// firm reports whether w holds f and may not evict it: a task placed there
// may run with it without a claim.
func (w *worker) firm(f FileID) bool {
	switch w.holds[f] {
	case copyKept:
		return true
	case copyHeld:
		_, claiming := w.inflight[f]
		return !claiming
	}
	return false
}

// claim holds again the released copy of e on w: a Fetch from w's own
// cache, which succeeds at once if w still has it.
func (c *Core) claim(w *worker, e *fileEntry) {
	w.setCopy(e, copyHeld)
	c.begin(w, e, Source{Kind: FromCache})
}

// setCopy records how w holds its copy of e, keeping looseBytes.
func (w *worker) setCopy(e *fileEntry, s copyState) {
	old := w.holds[e.id]
	if old == copyLoose {
		w.looseBytes -= e.size
	}
	if s == copyLoose {
		w.looseBytes += e.size
	}
	if s == copyNone {
		delete(w.holds, e.id)
		return
	}
	w.holds[e.id] = s
}

// Cache space: a worker's cache holds its disk (Resources.DiskMB; 0 is
// unbounded). A task is staged on a worker only if the copies its inputs
// need there fit beside those the worker may not evict (outputs, copies
// held for tasks) and the fetches in flight to it; otherwise it waits for
// space (see waitForSpace), before any fetch starts: tasks that each hold
// part of their inputs on a full cache would wait for each other for ever.

// cacheNeed returns the bytes that t's inputs would add to what w may not
// evict: those w does not hold, nor fetches already, and those it may
// evict (which t would claim). Sizes not known count as 0.
func (c *Core) cacheNeed(t *task, w *worker) int64 {
	var need int64
	c.files.deps(t, func(e *fileEntry) {
		if !e.staged() || e.size <= 0 {
			return
		}
		switch w.holds[e.id] {
		case copyKept, copyHeld:
			return
		case copyNone:
			if _, coming := w.inflight[e.id]; coming {
				return
			}
		}
		need += e.size
	})
	return need
}

// cacheRoom returns the bytes w's cache can still take beside what it may
// not evict and the fetches in flight to it, or -1 when it is unbounded.
func (c *Core) cacheRoom(w *worker) int64 {
	if w.total.DiskMB <= 0 {
		return -1
	}
	room := w.total.DiskMB<<20 - (w.cacheBytes - w.looseBytes)
	for f := range w.inflight {
		if w.holds[f] != copyNone {
			continue // a claim: counted already
		}
		if e := c.files.files[f]; e != nil {
			room -= e.size
		}
	}
	return room
}

// cacheFits reports whether t's inputs fit in w's cache, and how many
// bytes they need there.
func (c *Core) cacheFits(t *task, w *worker) (bool, int64) {
	if len(t.spec.Inputs) == 0 || w.total.DiskMB <= 0 {
		return true, 0
	}
	need := c.cacheNeed(t, w)
	if need == 0 {
		return true, 0
	}
	room := c.cacheRoom(w)
	return need <= room, need
}

// outputFits reports whether t, placed on w with need bytes of inputs to
// bring, should start there now. It should not when its outputs, estimated
// by the mean output kept so far, do not fit in w's cache beside its
// inputs while a task running on w will let files be pruned when it ends:
// then room comes soon, and t waits for it (parked, see full.go) rather
// than fill the cache and be handed back. Without such a task waiting
// would not help: t starts, and a full cache hands it back.
func (c *Core) outputFits(t *task, w *worker, need int64) bool {
	if len(t.spec.Outputs) == 0 || c.outFiles == 0 || w.total.DiskMB <= 0 {
		return true
	}
	est := c.outBytes / c.outFiles * int64(len(t.spec.Outputs))
	if need+est <= c.cacheRoom(w) {
		return true
	}
	for _, r := range w.running {
		if r != t && r.state == Running && c.frees(r) > 0 {
			return false
		}
	}
	return true
}

// releaseUnpinned, at the end of a step, releases the fetched copies that
// no task placed on their worker reads, with one Release per worker.
func (c *Core) releaseUnpinned() {
	pending := c.releasing
	c.releasing = c.releasing[:0]
	var by map[WorkerID][]FileID
	for _, r := range pending {
		w := c.workers[r.worker]
		if w == nil || w.pins[r.file] > 0 || w.holds[r.file] != copyHeld {
			continue // gone, pinned again, dropped, or released already
		}
		if _, busy := w.inflight[r.file]; busy {
			continue
		}
		if e := c.files.files[r.file]; e != nil {
			w.setCopy(e, copyLoose)
		}
		if by == nil {
			by = make(map[WorkerID][]FileID)
		}
		by[w.id] = append(by[w.id], r.file)
	}
	if len(by) == 0 {
		return
	}
	c.unpark = c.unpark || len(c.parked) > 0 // room for a task that waits for space
	for _, w := range byWorker(by) {
		c.emit(Release{Worker: w, Files: by[w]})
	}
}
