package core

// The ready queue is split by resource shape: tasks that need exactly the same
// resources share a heap ordered by priority, then submission order. A worker
// with free capacity only has to look at the head of each shape, so a
// decision costs O(shapes · log tasks), whatever the number of workers.

// shapeQueue is a heap of ready tasks that all need the same resources.
type shapeQueue struct {
	need  Resources
	tasks []*task
	// limited counts the tasks with an UnplaceableTimeout: a Tick looks
	// into a queue for tasks to time out only if it has some (expire).
	limited int
}

// before reports whether a runs before b: by priority, then a task that
// continues a started branch (it reads a file a task produces, which it
// may let be pruned) before one that starts a new one, as Dask orders its
// graphs, so that caches hold fewer intermediates at once (#18); among
// those, the one whose end lets more bytes be pruned (the last reader of
// a large file, by powers of two); then in submission order.
func before(a, b *task) bool {
	if a.spec.Priority != b.spec.Priority {
		return a.spec.Priority > b.spec.Priority
	}
	if a.rank != b.rank { // branch first, then what it frees (one compare: the hot path)
		return a.rank > b.rank
	}
	return a.seq < b.seq
}

// branchRank marks a task.rank that continues a started branch; below it,
// bits.Len64 of the bytes the task's end lets be pruned (at most 64).
const branchRank = 0x80

func (q *shapeQueue) head() *task { return q.tasks[0] }

func (q *shapeQueue) push(t *task) {
	if t.spec.UnplaceableTimeout > 0 {
		q.limited++
	}
	t.index = int32(len(q.tasks))
	q.tasks = append(q.tasks, t)
	q.up(int(t.index))
}

func (q *shapeQueue) pop() *task {
	return q.remove(0)
}

func (q *shapeQueue) remove(i int) *task {
	t := q.tasks[i]
	if t.spec.UnplaceableTimeout > 0 {
		q.limited--
	}
	last := len(q.tasks) - 1
	if i != last {
		q.swap(i, last)
	}
	q.tasks[last] = nil
	q.tasks = q.tasks[:last]
	if i != last {
		if !q.down(i) {
			q.up(i)
		}
	}
	t.index = -1
	return t
}

func (q *shapeQueue) swap(i, j int) {
	q.tasks[i], q.tasks[j] = q.tasks[j], q.tasks[i]
	q.tasks[i].index = int32(i)
	q.tasks[j].index = int32(j)
}

func (q *shapeQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !before(q.tasks[i], q.tasks[p]) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *shapeQueue) down(i int) bool {
	start, n := i, len(q.tasks)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && before(q.tasks[r], q.tasks[l]) {
			m = r
		}
		if !before(q.tasks[m], q.tasks[i]) {
			break
		}
		q.swap(i, m)
		i = m
	}
	return i > start
}

// readyQueue holds every ready task, by shape.
type readyQueue struct {
	byNeed map[Resources]*shapeQueue
	shapes []*shapeQueue // non-empty shapes, in order of first use, for determinism
	n      int
}

func newReadyQueue() readyQueue {
	return readyQueue{byNeed: make(map[Resources]*shapeQueue)}
}

func (r *readyQueue) push(t *task) {
	q := r.byNeed[t.spec.Resources]
	if q == nil {
		q = &shapeQueue{need: t.spec.Resources}
		r.byNeed[q.need] = q
	}
	if len(q.tasks) == 0 {
		r.shapes = append(r.shapes, q)
	}
	q.push(t)
	r.n++
}

// popHead takes the head of q out of the queue.
func (r *readyQueue) popHead(q *shapeQueue) *task {
	t := q.pop()
	r.n--
	if len(q.tasks) == 0 {
		r.dropShape(q)
	}
	return t
}

// unqueue takes a Ready task out of its queue: a call out of its
// library's line (the library is returned, whose instances the caller may
// weigh again), any other task out of the ready queue (nil).
func (c *Core) unqueue(t *task) *library {
	if t.spec.Role != Call {
		c.ready.remove(t)
		return nil
	}
	lib := c.libs[t.spec.Lib]
	lib.waiting.remove(int(t.index))
	return lib
}

// remove takes t out of its queue.
func (r *readyQueue) remove(t *task) {
	q := r.byNeed[t.spec.Resources]
	q.remove(int(t.index))
	r.n--
	if len(q.tasks) == 0 {
		r.dropShape(q)
	}
}

func (r *readyQueue) dropShape(q *shapeQueue) {
	for i, s := range r.shapes {
		if s == q {
			r.shapes = append(r.shapes[:i], r.shapes[i+1:]...)
			break
		}
	}
	delete(r.byNeed, q.need)
}

// best returns the queue whose head should run next on a worker with free
// capacity free, or nil if no queued task fits.
func (r *readyQueue) best(free Resources, gpusFree int) *shapeQueue {
	var best *shapeQueue
	for _, q := range r.shapes {
		if !free.Fits(q.need) || int64(gpusFree) < q.need.GPUs {
			continue
		}
		if best == nil || before(q.head(), best.head()) {
			best = q
		}
	}
	return best
}
