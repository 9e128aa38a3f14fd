package core

import "sort"

// makeReady queues t. Tasks made ready during a Step are placed at its end,
// in priority order (placeFresh), so that the order of events within a step
// does not decide which of them runs first.
func (c *Core) makeReady(t *task) {
	c.setState(t, Ready)
	c.ready.push(t)
	c.fresh = append(c.fresh, t)
}

// placeFresh dispatches the tasks made ready in this step, highest priority
// first, while workers fit them. For each, it places the head of its shape's
// queue until the task itself is placed: heads rank at least as high.
func (c *Core) placeFresh() {
	if len(c.fresh) == 0 {
		return
	}
	fresh := c.fresh
	sort.Slice(fresh, func(i, j int) bool { return before(fresh[i], fresh[j]) })
	for _, t := range fresh {
		for t.state == Ready {
			q := c.ready.byNeed[t.spec.Resources]
			w := c.findWorker(q.need)
			if w == nil {
				break
			}
			head := q.pop()
			c.ready.n--
			if len(q.tasks) == 0 {
				c.ready.dropShape(q)
			}
			c.dispatch(head, w)
		}
	}
	clear(fresh)
	c.fresh = fresh[:0]
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

func (w *worker) fits(need Resources) bool {
	return w.free.Fits(need) && int64(len(w.gpusFree)) >= need.GPUs
}

// fill dispatches queued tasks to w while they fit.
func (c *Core) fill(w *worker) {
	for w.index >= 0 {
		q := c.ready.best(w.free, len(w.gpusFree))
		if q == nil {
			return
		}
		t := q.pop()
		c.ready.n--
		if len(q.tasks) == 0 {
			c.ready.dropShape(q)
		}
		c.dispatch(t, w)
	}
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

func (c *Core) dispatch(t *task, w *worker) {
	need := t.spec.Resources
	t.attempt++
	t.worker = w
	c.setState(t, Running)
	w.free = w.free.Sub(need)
	if need.GPUs > 0 {
		t.gpus = append([]int32(nil), w.gpusFree[:need.GPUs]...)
		w.gpusFree = w.gpusFree[need.GPUs:]
	}
	w.running[t.spec.ID] = t
	if w.index >= 0 {
		c.open.fix(w.index)
	}
	c.emit(Dispatch{Task: t.spec.ID, Attempt: t.attempt, Worker: w.id, GPUs: t.gpus})
}

// release gives t's resources back to its worker; t keeps t.worker so that
// its Done can name where it last ran.
func (c *Core) release(t *task) {
	w := t.worker
	delete(w.running, t.spec.ID)
	w.free = w.free.Add(t.spec.Resources)
	if len(t.gpus) > 0 {
		w.gpusFree = append(w.gpusFree, t.gpus...)
		sort.Slice(w.gpusFree, func(i, j int) bool { return w.gpusFree[i] < w.gpusFree[j] })
		t.gpus = nil
	}
	if w.index >= 0 {
		c.open.fix(w.index)
	}
}
