package core

import (
	"math/bits"
	"slices"
	"sort"
)

// makeReady queues t. Tasks made ready during a Step are placed at its end,
// in priority order (placeFresh), so that the order of events within a step
// does not decide which of them runs first.
func (c *Core) makeReady(t *task) {
	c.unstick(t)
	if t.spec.Role == Call {
		c.queueCall(t)
		return
	}
	c.setState(t, Ready)
	if t.rank >= branchRank {
		t.rank = branchRank | c.frees(t)
	}
	c.ready.push(t)
	c.fresh = append(c.fresh, t)
	c.judgeQueued(t)
	if len(c.famOf) > 0 {
		c.listFamily(t)
	}
}

// frees returns how much t's end would let be pruned, as a power of two
// (bits.Len64 of the bytes): the task-level inputs of known size of which
// it is the last unfinished reader (see before).
func (c *Core) frees(t *task) uint8 {
	var n int64
	for _, f := range t.spec.Inputs {
		if e := c.files.files[f]; e != nil && e.needers == 1 && e.level == LevelTask && e.depth == 0 && e.size > 0 {
			n += e.size
		}
	}
	return uint8(bits.Len64(uint64(n)))
}

// placeFresh places the tasks made ready in this step, highest priority
// first, while workers fit them. For each, it places the head of its shape's
// queue until the task itself is placed: heads rank at least as high.
func (c *Core) placeFresh() {
	for len(c.fresh) > 0 {
		// Two buffers take turns, so that a step allocates nothing here.
		fresh := c.fresh
		c.fresh = c.spare[:0]
		if len(fresh) > 1 {
			slices.SortFunc(fresh, func(a, b *task) int {
				if before(a, b) {
					return -1
				}
				return 1
			})
		}
		c.noHold = c.noHold[:0]
		for _, t := range fresh {
			for t.state == Ready {
				q := c.ready.byNeed[t.spec.Resources]
				head := q.head()
				w := c.bestWorker(head)
				if w == nil {
					// A shape whose head no worker could hold stays so for
					// the rest of this pass: placing only takes room.
					if c.ahead > 0 && !slices.Contains(c.noHold, q) {
						if c.holdAhead(q, head) {
							continue
						}
						c.noHold = append(c.noHold, q)
					}
					break
				}
				t, w := c.choose(head, w)
				c.place(q, t, w)
			}
		}
		// Placing can make more tasks ready (a lost input sends its
		// producer back to the queue): go round until none is left.
		clear(fresh)
		c.spare = fresh[:0]
	}
}

// place takes t out of the queue (q is the head's) and assigns it to w;
// a family with no home gets w as its home.
func (c *Core) place(q *shapeQueue, t *task, w *worker) {
	if t == q.head() {
		c.ready.popHead(q) // q is at hand: no lookup of t's shape
	} else {
		c.ready.remove(t)
	}
	c.assign(t, w)
	c.settleHome(t, w)
}

// bestWorker returns the open worker that t fits and that holds the most
// bytes of t's inputs (on a tie, its family's home), or else its family's
// home, or else the one with the most free cores, or nil.
func (c *Core) bestWorker(t *task) *worker {
	var best *worker
	var bestBytes int64
	var home *worker
	if len(c.famOf) > 0 {
		if fam := c.famOf[t.spec.ID]; fam != nil {
			if home = c.homeOf(fam); home != nil && !home.fits(t.spec.Resources) {
				home = nil
			}
		}
	}
	for _, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || !e.staged() {
			continue
		}
		for _, wid := range e.replicas {
			w := c.workers[wid]
			if w == nil || w.index < 0 || !w.fits(t.spec.Resources) {
				continue
			}
			if fits, _ := c.cacheFits(t, w); !fits {
				continue // its cache has no room for the other inputs (see cacheFits)
			}
			b := c.inputBytesOn(t, w)
			if b > bestBytes || b == bestBytes && best != nil && best != home && (w == home || w.id < best.id) {
				best, bestBytes = w, b
			}
		}
	}
	if best != nil {
		return best
	}
	if home != nil {
		if fits, _ := c.cacheFits(t, home); fits {
			return home
		}
	}
	w := c.findWorker(t.spec.Resources)
	if w != nil && len(t.spec.Inputs) > 0 && t.spec.Role == Plain {
		if fits, _ := c.cacheFits(t, w); !fits {
			// The one with the most free cores has no cache room: one
			// that has both, if any (rare: only under cache pressure).
			for _, o := range c.open {
				if o.fits(t.spec.Resources) {
					if fits, _ := c.cacheFits(t, o); fits {
						return o
					}
				}
			}
		}
	}
	return w
}

func (c *Core) inputBytesOn(t *task, w *worker) int64 {
	var n int64
	for _, f := range t.spec.Inputs {
		if e := c.files.files[f]; e != nil && e.holds(w.id) {
			n += max(e.size, 1)
		}
	}
	return n
}

// findWorker returns an open worker that fits need, preferring the one with
// the most free cores, or nil.
func (c *Core) findWorker(need Resources) *worker {
	if len(c.open) == 0 {
		return nil
	}
	top := c.open[0]
	if top.fits(need) {
		return top
	}
	if need.MilliCores > top.free.MilliCores {
		return nil // no worker has more free cores than the top
	}
	// Cores fit but memory, disk or GPUs do not: look further. Rare, and
	// only the first task of a shape pays for it.
	for _, w := range c.open {
		if w.fits(need) {
			return w
		}
	}
	return nil
}

// fits reports whether need fits w's free resources now. Nothing fits a
// worker that holds tasks ahead (ahead.go): they take what frees first.
func (w *worker) fits(need Resources) bool {
	return w.free.Fits(need) && int64(len(w.gpusFree)) >= need.GPUs && len(w.ahead) == 0
}

// fill places queued tasks on w while they fit, then holds more ahead
// there while no worker has room for them (ahead.go).
func (c *Core) fill(w *worker) {
	for w.index >= 0 && len(w.ahead) == 0 {
		q := c.ready.best(w.free, len(w.gpusFree))
		if q == nil {
			break
		}
		t, x := c.choose(q.head(), w)
		c.place(q, t, x)
	}
	if c.ahead > 0 {
		c.topUp(w)
		c.stealFor(w)
	}
}

// Placed is one task's placement on a worker where some of its inputs must
// be brought before it runs there (see Placements). A task whose inputs
// are all there runs at once: its Dispatch says where.
type Placed struct {
	Task   TaskID
	Worker WorkerID
}

// ObservePlacements makes the core keep every placement of a task or call
// (not of a library instance) that waits for inputs, for Placements. Call it before the first
// Step. It changes no decision: it is for a transaction log, which would
// otherwise see such a task placed only when an input starts to travel for
// it (none does when one travels already for another task) or when it runs.
func (c *Core) ObservePlacements() { c.observePlacements = true }

// Placements returns the placements made since its last call, in the
// order made, and forgets them. The slice is reused by later Steps: use
// it before the next Step.
func (c *Core) Placements() []Placed {
	p := c.placements
	c.placements = c.placements[:0]
	return p
}

// placeAll offers every open worker the queue, in ID order.
func (c *Core) placeAll() {
	if c.ready.n == 0 {
		return
	}
	ws := append([]*worker(nil), c.open...)
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	for _, w := range ws {
		c.fill(w)
	}
}

// assign reserves w's resources for t and brings t's inputs there; t runs
// once they all are (at once, if none is missing).
func (c *Core) assign(t *task, w *worker) {
	c.setState(t, Staging)
	c.reserve(t, w)
	if w.index >= 0 {
		c.open.fix(w.index)
	}
	if t.spec.Role == Instance {
		c.libDirty(t.inst.lib) // placed: another instance may be made if calls still wait
	}
	for _, f := range t.spec.Outputs { // its consumers' worker may be decided now (prefetch.go)
		if e := c.files.files[f]; e != nil && len(e.waiters) > 0 {
			c.wantPrefetch(e)
		}
	}
	c.stage(t, w)
}

// reserve holds w's resources (and GPUs) for t, placed there.
func (c *Core) reserve(t *task, w *worker) {
	need := t.spec.Resources
	t.worker = w
	w.free = w.free.Sub(need)
	if need.GPUs > 0 {
		if w.gpusOf == nil {
			w.gpusOf = make(map[TaskID][]int32)
		}
		w.gpusOf[t.spec.ID] = append([]int32(nil), w.gpusFree[:need.GPUs]...)
		w.gpusFree = w.gpusFree[need.GPUs:]
	}
	w.running[t.spec.ID] = t
	t.held = true
}

// stage brings t's inputs to w, where t has its place, and runs t once
// they are all there. Inline inputs travel inside the Run message while
// they fit MaxInlinePerDispatch; the rest are staged too.
func (c *Core) stage(t *task, w *worker) {
	if t.spec.Role == Plain && (len(t.spec.Inputs) > 0 || len(t.spec.Outputs) > 0) {
		fits, need := c.cacheFits(t, w)
		what := "inputs"
		if fits {
			// Waiting for room for the outputs parks with an unknown
			// need: it is an estimate, and must neither fail the task
			// nor make the deadlock breaker evict for it.
			fits, what, need = c.outputFits(t, w, need), "outputs", 0
		}
		if !fits {
			c.setState(t, Staging)
			c.release(t)
			if _, told := c.spaceTold[t.spec.ID]; told {
				c.setState(t, Waiting) // again: it was told, and waits on
				c.parked = append(c.parked, parkedTask{t, need})
				return
			}
			c.spaceTold[t.spec.ID] = struct{}{}
			c.waitForSpace(t, need, w.id, what)
			return
		}
	}
	c.setState(t, Staging)
	t.staging = 0
	if len(t.spec.Inputs) > 0 {
		c.pin(t, w)
	}
	var inline int64
	for i, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || w.firm(f) || seenBefore(t.spec.Inputs, i) {
			continue // unknown (inline content), or held there until t leaves
		}
		if !e.staged() {
			if !e.inlined() {
				continue
			}
			if inline += e.size; inline <= MaxInlinePerDispatch {
				continue
			}
		}
		t.staging++
		w.waiting[f] = append(w.waiting[f], t)
		e.stagers = appendOnce(e.stagers, w.id)
		if _, busy := w.inflight[f]; !busy {
			c.startFetch(w, e)
		}
		if t.state != Staging {
			return // an input was lost: t went back to waiting for it
		}
	}
	if t.staging == 0 {
		c.run(t)
		return
	}
	if c.observePlacements && t.spec.Role != Instance {
		c.placements = append(c.placements, Placed{t.spec.ID, w.id})
	}
}

func seenBefore(fs []FileID, i int) bool {
	for _, f := range fs[:i] {
		if f == fs[i] {
			return true
		}
	}
	return false
}

func appendOnce(ws []WorkerID, w WorkerID) []WorkerID {
	for _, x := range ws {
		if x == w {
			return ws
		}
	}
	return append(ws, w)
}

// run dispatches t, whose inputs are all on its worker.
func (c *Core) run(t *task) {
	if len(c.spaceTold) > 0 {
		delete(c.spaceTold, t.spec.ID)
	}
	t.attempt++
	t.ranOn = t.worker.id
	c.setState(t, Running)
	d := Dispatch{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id, Ahead: t.isAhead()}
	if t.spec.Resources.GPUs > 0 {
		d.GPUs = t.worker.gpusOf[t.spec.ID]
	}
	switch t.spec.Role {
	case Instance:
		d.Task, d.Instance, d.Lib = 0, t.inst.id, t.spec.Lib
	case Call:
		d.Instance = t.inst.id
	}
	var inline, keep []FileID
	for i, f := range t.spec.Inputs {
		if e := c.files.files[f]; e != nil && e.inlined() && !e.holds(t.worker.id) && !seenBefore(t.spec.Inputs, i) {
			inline = append(inline, f)
		}
	}
	if t.spec.Role != Instance && len(t.spec.Outputs) > 0 {
		keep = c.keep(t)
	}
	if len(inline) > 0 || len(keep) > 0 {
		d.Files = &DispatchFiles{Inline: inline, Keep: keep}
	}
	c.emit(d)
}

// release gives t's resources back to its worker; t keeps t.worker so that
// its Done can name where it last ran.
func (c *Core) release(t *task) {
	if t.spec.Role == Call {
		c.callDone(t)
	}
	w := t.worker
	if t.pinned {
		c.unpin(t, w)
	}
	if t.state == Staging {
		c.freed = append(c.freed, w)
		for _, f := range t.spec.Inputs {
			w.waiting[f] = removeTask(w.waiting[f], t)
			if len(w.waiting[f]) == 0 {
				delete(w.waiting, f)
			}
		}
	}
	delete(w.running, t.spec.ID)
	switch {
	case t.isAhead():
		c.unhold(t) // the one behind it may fit now: the worker starts it
	case !t.held:
		return // a call: its instance holds the resources
	default:
		t.held = false
		w.free = w.free.Add(t.spec.Resources)
		if t.spec.Resources.GPUs > 0 {
			w.gpusFree = append(w.gpusFree, w.gpusOf[t.spec.ID]...)
			sort.Slice(w.gpusFree, func(i, j int) bool { return w.gpusFree[i] < w.gpusFree[j] })
			delete(w.gpusOf, t.spec.ID)
		}
	}
	if len(w.ahead) > 0 {
		c.promote(w) // as the worker starts them
	}
	if w.index >= 0 {
		c.open.fix(w.index)
	}
}

func removeTask(ts []*task, t *task) []*task {
	for i, x := range ts {
		if x == t {
			return append(ts[:i], ts[i+1:]...)
		}
	}
	return ts
}
