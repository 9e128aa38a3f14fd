package core

import (
	"fmt"
	"slices"
	"sort"
)

// Lineage: when the last copy of a produced file disappears and a task
// still needs it, the task that produced it runs again (recursively, as its
// own inputs may be lost too), and the tasks that need the file wait for it.

// dropReplica forgets that w holds e, and recreates e if that was its last
// copy and a task still needs it.
func (c *Core) dropReplica(w *worker, e *fileEntry) {
	if !e.dropReplica(w.id) {
		return
	}
	if e.ckptFrom == w.id {
		defer c.checkpointSourceLost(w.id, e) // once its copy is forgotten
	}
	w.setCopy(e, copyNone)
	w.cacheBytes -= e.size
	c.unpark = c.unpark || len(c.parked) > 0 // room for a task handed back
	if e.needers == 0 {
		return // nobody needs it any more: neither copies nor lineage
	}
	if len(e.replicas) > 0 || e.manager || e.kind != Produced || e.state != fileReady {
		c.replicate(e)
		return
	}
	if c.readByLastAttempts(e) {
		// Each reader has its copy in its sandbox and will not run again
		// by itself: the file is made again only when a task next stages
		// it (startFetch finds no source). Made now, it would race the
		// prune that the readers' ends bring (a reader that changed it
		// reports the drop, then its end).
		return
	}
	c.lose(e)
}

// readByLastAttempts reports whether every unfinished task that reads e is
// running its last attempt: none has retries left to stage e again.
func (c *Core) readByLastAttempts(e *fileEntry) bool {
	n := int32(0)
	for _, w := range c.workers {
		for _, t := range w.running {
			if t.state == Running && t.failures >= t.spec.Retries && slices.Contains(t.spec.Inputs, e.id) {
				n++
			}
		}
	}
	return n == e.needers
}

// restage brings e to w again for the tasks staging there that had it
// (w dropped it before they could run). Call it once w's holdings are all
// known, so that a file is not unpacked from one dropped in the same event.
func (c *Core) restage(w *worker, e *fileEntry) {
	if c.workers[w.id] != w || !e.staged() || e.holds(w.id) {
		return
	}
	var again []*task
	for _, t := range w.running {
		if t.state == Staging && slices.Contains(t.spec.Inputs, e.id) && !slices.Contains(w.waiting[e.id], t) {
			again = append(again, t)
		}
	}
	if len(again) == 0 {
		return
	}
	sort.Slice(again, func(i, j int) bool { return again[i].seq < again[j].seq })
	for _, t := range again {
		t.staging++
		w.waiting[e.id] = append(w.waiting[e.id], t)
	}
	e.stagers = appendOnce(e.stagers, w.id)
	if _, busy := w.inflight[e.id]; !busy {
		c.startFetch(w, e)
	}
}

// lose handles a produced file with no copy left: tasks staging it go back
// to waiting for it, and its producer runs again if it can. A file that no
// unfinished task reads is left lost until one does.
func (c *Core) lose(e *fileEntry) {
	if e.kind != Produced || e.needers == 0 {
		return
	}
	for _, wid := range e.stagers {
		w := c.workers[wid]
		if w == nil {
			continue
		}
		waiting := append([]*task(nil), w.waiting[e.id]...)
		delete(w.waiting, e.id)
		if _, queued := w.inflight[e.id]; queued && w.inflight[e.id] == 0 {
			delete(w.inflight, e.id)
		}
		// So do the tasks waiting there for files to be unpacked from it.
		for files := w.derives[e.id]; len(files) > 0; files = files[1:] {
			d := files[0]
			waiting = append(waiting, w.waiting[d]...)
			delete(w.waiting, d)
			delete(w.inflight, d)
			files = append(files, w.derives[d]...)
			delete(w.derives, d)
		}
		delete(w.derives, e.id)
		for _, t := range waiting {
			if t.state != Staging || t.worker != w {
				continue
			}
			c.release(t)
			c.setState(t, Waiting)
			t.missing++
			e.waiters = append(e.waiters, t.spec.ID)
		}
	}
	e.stagers = nil
	switch e.state {
	case filePending:
		return // already being recreated
	case fileFailed:
		c.lostForGood(e, e.why) // reported already: what waited fails with its reason
		return
	}
	e.state = filePending
	if p := c.tasks[e.producer]; p != nil {
		return // the producer has not finished: its output is coming
	}
	p := c.retained[e.producer]
	if p == nil {
		c.lostForGood(e, fmt.Sprintf("file %d is lost and no task can recreate it", e.id))
		return
	}
	if p.spec.AtMostOnce {
		c.lostForGood(e, fmt.Sprintf("file %d is lost, and its producer, task %d, is at-most-once: it is not run again", e.id, p.spec.ID))
		return
	}
	delete(c.retained, p.spec.ID)
	c.recreated++
	p.recreating = true
	p.worker = nil
	p.state = 0 // so that setState does not count it out of Finished
	c.tasks[p.spec.ID] = p
	c.emit(Rerun{Task: p.spec.ID, File: e.id})
	// Its own inputs must be had again too.
	if missing, why := c.files.await(p); why != "" {
		c.setState(p, Waiting)
		c.finish(p, Outcome{Kind: InputMissing, Message: why})
	} else if p.missing = missing; missing == 0 {
		c.makeReady(p)
	} else {
		c.setState(p, Waiting)
	}
}

// lostForGood fails every task waiting for e, and reports e lost unless it
// was already.
func (c *Core) lostForGood(e *fileEntry, why string) {
	if e.state != fileFailed {
		c.lost++
		c.emit(FileLost{File: e.id, Why: why})
	}
	woken := c.files.failed([]FileID{e.id}, why)
	for _, id := range woken {
		if t := c.tasks[id]; t != nil && t.state == Waiting {
			c.finish(t, Outcome{Kind: InputMissing, Message: why})
		}
	}
}
