package core

import "fmt"

// Lineage: when the last copy of a produced file disappears and a task
// still needs it, the task that produced it runs again (recursively, as its
// own inputs may be lost too), and the tasks that need the file wait for it.

// dropReplica forgets that w holds e, and recreates e if that was its last
// copy and a task still needs it.
func (c *Core) dropReplica(w *worker, e *fileEntry) {
	if !e.dropReplica(w.id) {
		return
	}
	delete(w.holds, e.id)
	w.cacheBytes -= e.size
	if len(e.replicas) > 0 || e.manager || e.kind != Produced || e.state != fileReady {
		c.replicate(e)
		return
	}
	if e.needers > 0 {
		c.lose(e)
	}
}

// lose handles a produced file with no copy left: tasks staging it go back
// to waiting for it, and its producer runs again if it can.
func (c *Core) lose(e *fileEntry) {
	if e.kind != Produced {
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
	if e.state == filePending {
		return // already being recreated
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

// lostForGood fails every task waiting for e.
func (c *Core) lostForGood(e *fileEntry, why string) {
	c.lost++
	c.emit(FileLost{File: e.id, Why: why})
	woken := c.files.failed([]FileID{e.id}, why)
	for _, id := range woken {
		if t := c.tasks[id]; t != nil && t.state == Waiting {
			c.finish(t, Outcome{Kind: InputMissing, Message: why})
		}
	}
}
