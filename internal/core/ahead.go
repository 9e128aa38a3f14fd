package core

import "fmt"

// Holding tasks ahead (SetAhead): with every core busy, a worker may be
// given up to Core.ahead tasks beyond its free resources. They are
// dispatched (Dispatch.Ahead), held on the worker in the order dispatched,
// and started there as soon as resources free, without waiting for the
// manager: so a task's report and the next task's run cross, and the
// messages of many tasks travel together.
//
// Rules, which the seeded simulation checks (coretest, Config.Ahead):
//   - A task is held only when no open worker has room for it (bestWorker
//     finds none): never on a busy worker while a core idles elsewhere.
//   - Only a plain task that asks for no GPUs, is not AtMostOnce, makes no
//     temp file (graph-aware placement decides where those run: mayHold),
//     fits the worker's total resources and needs no fetch (its inputs
//     travel inline, or the core has never seen them) is held; and only on an
//     open worker that runs plain tasks alone, with none staging and no
//     free cores (holdsOn). While a worker holds a task nothing else is
//     placed there (fits): so every resource the core reserves on it is
//     for a task the worker runs, and the worker's own count of them
//     (internal/worker) decides what the core decides: the first held
//     task starts once it fits. A task is held on a worker only if it
//     needs no more than each task there, running or held (holdsOn): so
//     each end starts the next held task, and no core idles behind one
//     that does not fit (but for what is left of an end after a held
//     task took part of it, which may be too small for the next held
//     one: 1.5- and 1-core tasks held behind a 2-core one).
//   - A worker holds only the task it would take next of all those queued
//     that could run on it (aheadPick, by priority and order; GPU tasks
//     where it has GPUs): while that one may not be held (a GPU or
//     at-most-once task, say), nothing is, and it takes the core that frees
//     first. So a held task never passes one queued before it.
//   - The core mirrors the worker: when a task's resources are released,
//     held tasks take them in order (promote), first one first, none
//     skipped. A held task is Running to everything else: its worker's
//     loss, a Kill for its cancel, and the journal's Dispatched record
//     treat it as a dispatched one.
//   - A worker that has room and nothing queued that fits it takes a held
//     task back from another (stealFor): the core sends a Revoke for the
//     task held last of those that fit it (or nearly: see stealFor), one
//     at a time for each worker with room. The holder hands it back unless it started it
//     first: then the report of the end that started it comes first, the
//     core starts it too (promote) and the revoke lapses. Handed back, it
//     goes to the worker it was revoked for if that one still has room.
//     So a held task never waits behind a busy worker's running one while
//     a core idles, which is what lets a worker join or free late.

// SetAhead sets how many tasks a worker may hold beyond its free
// resources; 0 (the default) holds none. Call it before the first Step.
func (c *Core) SetAhead(n int) { c.ahead = max(n, 0) }

// holdAhead holds t (the head of q) on a worker that holds the fewest
// tasks ahead (the first found that holds none), if one may hold it and t
// is the task that worker would take next (aheadPick); it reports whether
// it did. placeFresh calls it once no open worker has room for t. It looks
// only at the workers that may hold more (canHold).
func (c *Core) holdAhead(q *shapeQueue, t *task) bool {
	if len(c.canHold.items) == 0 || !c.mayHold(t) {
		return false
	}
	var best *worker
	for _, w := range c.canHold.items {
		if (best == nil || len(w.ahead) < len(best.ahead) || len(w.ahead) == len(best.ahead) && w.id < best.id) && c.holdsOn(t, w) && c.aheadPick(w) == q {
			best = w
			if len(w.ahead) == 0 {
				break // none holds fewer: the first found, not a pass over every worker
			}
		}
	}
	if best == nil {
		return false
	}
	c.holdOn(q, t, best)
	return true
}

// topUp holds queued tasks on w, up to the limit, while no open worker has
// room for them: each time the task w would take next (aheadPick), and
// none once that one may not be held. (It runs when w takes tasks (fill):
// a worker whose list another's event left short is topped up at its own
// next event or Tick.)
func (c *Core) topUp(w *worker) {
	for w.index >= 0 && len(w.ahead) < c.ahead && c.ready.n > 0 {
		q := c.aheadPick(w)
		if q == nil {
			return
		}
		t := q.head()
		if !c.mayHold(t) || !c.holdsOn(t, w) || c.bestWorker(t) != nil {
			return // held, it would pass t, which waits for a core here or elsewhere
		}
		c.holdOn(q, t, w)
	}
}

// aheadPick returns the queue whose head w would take next of all the
// tasks that could ever run on it (GPU tasks where it has GPUs): the first
// by priority and order (before). Only that head may be held on w, so that
// a held task never passes one queued before it, which would wait, unheld,
// until the tasks held before it had started.
func (c *Core) aheadPick(w *worker) *shapeQueue {
	var best *shapeQueue
	for _, q := range c.ready.shapes {
		if w.total.Fits(q.need) && (best == nil || before(q.head(), best.head())) {
			best = q
		}
	}
	return best
}

// mayHold reports whether t is a task that may be held ahead at all. One
// that makes a temp file (kept only in workers) is not: graph-aware
// placement (families.go) places it when a core frees, where its
// siblings' outputs go, also once its consumers are submitted later, and
// holding it on whichever worker holds fewest would undo that
// (TestAheadMovesNoMoreBytes).
func (c *Core) mayHold(t *task) bool {
	s := &t.spec
	if s.Role != Plain || s.Resources.GPUs != 0 || s.AtMostOnce || t.recreating {
		return false
	}
	for _, f := range s.Outputs {
		if e := c.files.files[f]; e != nil && e.keep == keepAlways {
			return false
		}
	}
	return len(c.famOf) == 0 || c.famOf[s.ID] == nil // nor a family's member (one whose uploaded outputs a task reads)
}

// holdsOn reports whether w may hold t ahead now. Not while w has free
// cores: a worker that holds tasks takes nothing else (fits), so a scrap
// of cores its first held task cannot use would idle there while a
// smaller task waits, or is held on another busy worker.
func (c *Core) holdsOn(t *task, w *worker) bool {
	if w.index < 0 || w.draining || !w.holdsAhead || len(w.ahead) >= c.ahead || !w.total.Fits(t.spec.Resources) || w.free.MilliCores > 0 {
		return false
	}
	for _, r := range w.running {
		// Each end there must start the next held task (promote): else
		// cores idle behind it while tasks are held on other workers.
		if r.state == Staging || r.spec.Role != Plain || !r.spec.Resources.Fits(t.spec.Resources) {
			return false
		}
	}
	var inline int64
	for i, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || seenBefore(t.spec.Inputs, i) {
			continue
		}
		if e.staged() {
			return false // it would be fetched: held tasks need nothing but their Run
		}
		if e.inlined() {
			if inline += e.size; inline > MaxInlinePerDispatch {
				return false
			}
		}
	}
	if len(t.spec.Inputs) > 0 || len(t.spec.Outputs) > 0 {
		fits, need := c.cacheFits(t, w)
		if !fits || !c.outputFits(t, w, need) {
			return false
		}
	}
	return true
}

// holdOn takes t out of q and dispatches it to w, held there ahead.
func (c *Core) holdOn(q *shapeQueue, t *task, w *worker) {
	if t == q.head() {
		c.ready.popHead(q)
	} else {
		c.ready.remove(t)
	}
	t.worker = w
	w.running[t.spec.ID] = t
	c.countCanHold(w, -1)
	w.ahead = append(w.ahead, t)
	c.countCanHold(w, 1)
	c.countHeld(t, 1)
	if len(t.spec.Inputs) > 0 {
		c.pin(t, w)
	}
	for _, f := range t.spec.Outputs { // its consumers' worker may be decided now (prefetch.go)
		if e := c.files.files[f]; e != nil && len(e.waiters) > 0 {
			c.wantPrefetch(e)
		}
	}
	c.run(t)
	c.stealable.add(t)
}

// promote gives w's free resources to the tasks it holds ahead, in the
// order they were dispatched, while the first fits: as the worker does. A
// draining worker starts none: it hands them back; a lost one, none.
func (c *Core) promote(w *worker) {
	if w.draining || c.workers[w.id] != w {
		return
	}
	n := 0
	for _, t := range w.ahead {
		if !w.free.Fits(t.spec.Resources) {
			break
		}
		w.free = w.free.Sub(t.spec.Resources)
		t.held = true
		c.countHeld(t, -1)
		c.stealable.drop(t)
		n++
		// Started before a Revoke of it came: the Revoke lapses.
		c.endRevoke(t)
		c.starts = append(c.starts, Started{Task: t.spec.ID, Attempt: t.attempt, Worker: w.id}) // after the end that started it (settle)
	}
	if n > 0 {
		c.countCanHold(w, -1)
		w.ahead = append(w.ahead[:0], w.ahead[n:]...)
		c.countCanHold(w, 1)
	}
}

// maxHeldLost bounds the times a task held ahead, not reported started,
// goes back to the queue without spending a retry when its worker is lost
// (workerLeft). It most likely never started; but its start may have been
// on its way, so past this bound a loss counts, and a task that kills its
// worker as it starts is not retried for ever. Without it a held task
// spent a retry for every worker lost under it: with three held per
// worker, a task of a churning pool of four killed workers used all four
// attempts, each held or run on a worker then killed (docs/benchmarks.md,
// "Three tasks held ahead").
const maxHeldLost = 3

// isAhead reports whether t, placed on its worker (t.worker.running has
// it), is held there ahead: a plain task placed without a reservation of
// resources (a field would not fit TestTaskSize's bound).
func (t *task) isAhead() bool { return !t.held && t.spec.Role == Plain }

// unhold takes t, held ahead on its worker, off the worker's list.
func (c *Core) unhold(t *task) {
	c.countCanHold(t.worker, -1)
	t.worker.ahead = removeTask(t.worker.ahead, t)
	c.countCanHold(t.worker, 1)
	c.countHeld(t, -1)
	c.stealable.drop(t)
	c.endRevoke(t) // ended, lost, or handed back (taskReturned)
}

// endRevoke settles the Revoke of t, if one is in flight: the worker it
// was for may revoke again, and looks for work at the step's end.
func (c *Core) endRevoke(t *task) {
	thief, ok := c.revokes[t]
	if !ok {
		return
	}
	delete(c.revokes, t)
	thief.stealing = false
	c.freed = append(c.freed, thief) // filled at the step's end
}

// stealFor revokes, for w, which has room that nothing queued fits
// (fill), a task held ahead on another worker: of those that fit w, the
// one held last, or nearly (stealable drops tasks by moving the last into
// their place). One revoke in flight for each worker: once it resolves, w
// looks again (taskReturned, promote, unhold).
func (c *Core) stealFor(w *worker) {
	if w.stealing || len(c.stealable.items) == 0 || w.index < 0 || w.draining || len(w.ahead) > 0 {
		return
	}
	for i := len(c.stealable.items) - 1; i >= 0; i-- {
		t := c.stealable.items[i]
		if t.cancel || t.worker == w || !w.fits(t.spec.Resources) {
			continue
		}
		if len(t.spec.Inputs) > 0 || len(t.spec.Outputs) > 0 {
			if fits, need := c.cacheFits(t, w); !fits || !c.outputFits(t, w, need) {
				continue
			}
		}
		c.stealable.drop(t)
		if c.revokes == nil {
			c.revokes = make(map[*task]*worker)
		}
		c.revokes[t] = w
		w.stealing = true
		c.emit(Revoke{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id, For: w.id})
		return
	}
}

// countCanHold lists w in canHold (d = 1) or takes it off (-1) if it may
// hold more tasks ahead: call it with -1 before a change to what decides
// that and with 1 after, so that canHold lists the workers that may now.
func (c *Core) countCanHold(w *worker, d int) {
	if c.ahead == 0 || !w.holdsAhead || w.draining || len(w.ahead) >= c.ahead || c.workers[w.id] != w {
		return
	}
	if d > 0 {
		c.canHold.add(w)
	} else {
		c.canHold.drop(w)
	}
}

// revoked takes back t, handed back by the worker that held it after a
// Revoke for thief (taskReturned, which released it and so settled the
// Revoke: endRevoke): it runs on thief if that one still has room for
// it, or else is queued again.
func (c *Core) revoked(t *task, thief *worker) {
	c.emit(Requeued{Task: t.spec.ID, Attempt: t.attempt, Reason: Outcome{Kind: Cancelled,
		Message: fmt.Sprintf("held ahead on worker %d and handed back for worker %d, which had room", t.worker.id, thief.id)}})
	c.makeReady(t)
	if c.workers[thief.id] == thief && thief.index >= 0 && thief.fits(t.spec.Resources) {
		c.place(c.ready.byNeed[t.spec.Resources], t, thief)
	}
}

// countHeld counts t, held ahead (d = 1) or no longer (-1), for Tally and
// Demand: a held task is Running to the core's states, but waits for a
// core.
func (c *Core) countHeld(t *task, d int) {
	c.held[t.class] += d
	t.shape.held += d
}

// Ahead returns the tasks worker w holds ahead, in the order they start.
func (c *Core) Ahead(w WorkerID) []TaskID {
	x := c.workers[w]
	if x == nil {
		return nil
	}
	ids := make([]TaskID, len(x.ahead))
	for i, t := range x.ahead {
		ids[i] = t.spec.ID
	}
	return ids
}
