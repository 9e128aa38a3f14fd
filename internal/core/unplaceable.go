package core

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Unplaceable tasks. A task is unplaceable while it is queued and no
// connected worker that takes tasks could run it even idle: it asks for
// more of some resource than any of them has. The core judges each shape
// once per change of those workers (an epoch), tells every queued task of
// a shape with no worker an Unplaceable when the shape's reason appears
// or changes, and again with no reason when it clears: one action for them
// all, which the tasks queued next with the same reason join (tell). Calls
// follow their library: they are unplaceable while none of its instances
// is placed and the library's shape is. Tick ends those that waited longer
// than their UnplaceableTimeout.

// workersChanged judges again, after a worker joined, drained or left,
// every shape with queued tasks, and every library whose calls may change.
func (c *Core) workersChanged() {
	c.epoch++
	for _, q := range c.ready.shapes {
		c.judge(q.need)
	}
	var libs []*library
	for _, lib := range c.libs {
		if lib.why != "" || len(lib.waiting.tasks) > 0 && !lib.placed() {
			libs = append(libs, lib)
		}
	}
	sort.Slice(libs, func(i, j int) bool { return libs[i].id < libs[j].id })
	for _, lib := range libs {
		c.libDirty(lib) // judged once its instances have settled (judgeLib)
	}
}

// judge brings the reason of shape need up to date, and tells its queued
// tasks when it changed. It returns the reason.
func (c *Core) judge(need Resources) string {
	return c.judgeShape(c.shapeFor(need), need)
}

// judgeShape is judge of sc, the count of shape need.
func (c *Core) judgeShape(sc *shapeCount, need Resources) string {
	if sc.epoch == c.epoch {
		return sc.why
	}
	sc.epoch = c.epoch
	why := c.unplaceable(need)
	if why != sc.why {
		sc.why = why
		if q := c.ready.byNeed[need]; q != nil {
			for _, t := range q.tasks {
				c.tell(t, why)
			}
		}
	}
	return why
}

// judgeQueued tells t, just queued, if its shape is unplaceable.
func (c *Core) judgeQueued(t *task) {
	if why := c.judgeShape(t.shape, t.spec.Resources); why != "" && !t.stuck {
		c.tell(t, why)
	}
}

// judgeLib brings the reason of lib's waiting calls up to date, once its
// instances have settled in the step, and tells them when it changed.
func (c *Core) judgeLib(lib *library) {
	why := ""
	if lib.broken == "" && len(lib.waiting.tasks) > 0 && !lib.placed() {
		if w := c.judge(lib.res); w != "" {
			why = "its library's instances cannot be placed: " + w
		}
	}
	if why == lib.why {
		return // calls queued meanwhile were told (queueCall)
	}
	lib.why = why
	for _, t := range lib.waiting.tasks {
		c.tell(t, why)
	}
}

// placed reports whether an instance of l holds a place on a worker that
// takes tasks: one on a draining worker takes no new calls.
func (l *library) placed() bool {
	for _, inst := range l.insts {
		if s := inst.t.state; (s == Staging || s == Running) && !inst.t.worker.draining {
			return true
		}
	}
	return false
}

// tell emits an Unplaceable for queued t, which why now describes ("":
// it is no longer unplaceable), unless t was told so already.
func (c *Core) tell(t *task, why string) {
	if t.spec.Role == Instance {
		return // its library's calls are told (judgeLib)
	}
	switch {
	case why == "" && !t.stuck:
		return
	case why == "":
		c.unstick(t)
	case !t.stuck:
		t.stuck = true
		t.since = -1 // timed from the next Tick: it waits at least its limit
		c.unstamped = append(c.unstamped, t)
	}
	if n := len(c.out); n > 0 {
		if u, ok := c.out[n-1].(Unplaceable); ok && u.Why == why {
			// Told with the tasks just before it: the tasks of a shape
			// (or a library) judged together, or queued in one batch.
			u.Tasks = append(u.Tasks, t.spec.ID)
			c.out[n-1] = u
			return
		}
	}
	c.emit(Unplaceable{Tasks: []TaskID{t.spec.ID}, Why: why})
}

// unstick forgets that t was told no worker could run it.
func (c *Core) unstick(t *task) {
	t.stuck = false
}

// shapeFor returns the count of shape r, made if it is new.
func (c *Core) shapeFor(r Resources) *shapeCount {
	n := c.shapes[r]
	if n == nil {
		n = &shapeCount{}
		c.shapes[r] = n
	}
	return n
}

// unplaceable returns why no connected worker that takes tasks could run
// a task that needs need, even idle, or "" if one could.
func (c *Core) unplaceable(need Resources) string {
	var largest Resources
	var gpus int64
	open := 0
	for _, w := range c.workers { // the result does not depend on the order
		if w.draining {
			continue
		}
		if w.total.Fits(need) {
			return ""
		}
		open++
		largest = Resources{max(largest.MilliCores, w.total.MilliCores), max(largest.MemoryMB, w.total.MemoryMB),
			max(largest.DiskMB, w.total.DiskMB), 0}
		gpus = max(gpus, w.total.GPUs)
	}
	largest.GPUs = gpus
	switch {
	case open == 0 && len(c.workers) == 0:
		return "no worker is connected"
	case open == 0:
		return "every connected worker is draining"
	}
	var short []string
	if need.MilliCores > largest.MilliCores {
		short = append(short, fmt.Sprintf("%s (largest: %s)", cores(need.MilliCores), coreCount(largest.MilliCores)))
	}
	if need.MemoryMB > largest.MemoryMB {
		short = append(short, fmt.Sprintf("%d MB of memory (largest: %d MB)", need.MemoryMB, largest.MemoryMB))
	}
	if need.DiskMB > largest.DiskMB {
		short = append(short, fmt.Sprintf("%d MB of disk (largest: %d MB)", need.DiskMB, largest.DiskMB))
	}
	if need.GPUs > largest.GPUs {
		short = append(short, fmt.Sprintf("%s (largest: %d)", plural(need.GPUs, "GPU"), largest.GPUs))
	}
	if len(short) > 0 {
		return "no connected worker has " + strings.Join(short, " or ")
	}
	// Each resource alone is had somewhere, not all of them together.
	var all []string
	if need.MilliCores > 0 {
		all = append(all, cores(need.MilliCores))
	}
	if need.MemoryMB > 0 {
		all = append(all, fmt.Sprintf("%d MB of memory", need.MemoryMB))
	}
	if need.DiskMB > 0 {
		all = append(all, fmt.Sprintf("%d MB of disk", need.DiskMB))
	}
	if need.GPUs > 0 {
		all = append(all, plural(need.GPUs, "GPU"))
	}
	list := strings.Join(all, ", ")
	if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " and " + list[i+2:]
	}
	return "no connected worker has " + list + " together"
}

func coreCount(milli int64) string { return fmt.Sprintf("%g", float64(milli)/1000) }

func cores(milli int64) string {
	if milli == 1000 {
		return "1 core"
	}
	return coreCount(milli) + " cores"
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// expire stamps the unplaceable tasks told since the last Tick with now,
// and ends those that have been unplaceable for their UnplaceableTimeout.
// It looks only at the tasks told since the last Tick and into the queues
// that hold tasks with a timeout: a million tasks queued with no worker
// and no timeout cost a Tick nothing.
func (c *Core) expire() {
	for _, t := range c.unstamped {
		if t.stuck && t.since < 0 {
			t.since = c.now
		}
	}
	clear(c.unstamped)
	c.unstamped = c.unstamped[:0]
	if cap(c.unstamped) > 1<<10 {
		c.unstamped = nil // a large batch told: let its room go
	}
	type late struct {
		t   *task
		why string
	}
	var ends []late
	age := func(t *task, why string) {
		if limit := t.spec.UnplaceableTimeout; t.stuck && limit > 0 && c.now-t.since >= limit {
			ends = append(ends, late{t, why})
		}
	}
	for _, q := range c.ready.shapes {
		if why := c.shapes[q.need].why; why != "" && q.limited > 0 {
			for _, t := range q.tasks {
				age(t, why)
			}
		}
	}
	for _, lib := range c.libs {
		if lib.why != "" && lib.waiting.limited > 0 { // (calls waiting for a slot are not unplaceable)
			for _, t := range lib.waiting.tasks {
				age(t, lib.why)
			}
		}
	}
	if len(ends) == 0 {
		return
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].t.seq < ends[j].t.seq })
	for _, e := range ends {
		t := e.t
		if t.state != Ready {
			continue
		}
		if lib := c.unqueue(t); lib != nil {
			c.libDirty(lib) // its unplaced instances may be wanted no more
		}
		if why := c.files.failedDep(t); why != "" {
			// An input was lost for good while it waited: that, not its
			// size, is why it cannot run (as its staging would have said).
			c.finish(t, Outcome{Kind: InputMissing, Message: why})
			continue
		}
		c.finish(t, Outcome{Kind: ResourceExceeded, Message: fmt.Sprintf(
			"waited %s (its unplaceable timeout) for a worker that could run it: %s; connect a worker that has what it asks for, or ask for less",
			t.spec.UnplaceableTimeout, e.why)})
	}
}

// UnplaceableTask is a queued task or call that no connected worker could
// run (see Unplaceable).
type UnplaceableTask struct {
	Task TaskID
	Why  string
	// Since: when it was told so, on Tick's clock; -1 if no Tick has come
	// since.
	Since time.Duration
}

// UnplaceableTasks returns how many queued tasks and calls no connected
// worker could run, and up to limit of them, by ID (not the lowest IDs:
// the first it finds). It costs a pass over the shapes and libraries,
// plus the tasks it returns.
func (c *Core) UnplaceableTasks(limit int) (int, []UnplaceableTask) {
	n := 0
	var some []UnplaceableTask
	add := func(t *task, why string) {
		if t.stuck && len(some) < limit {
			some = append(some, UnplaceableTask{Task: t.spec.ID, Why: why, Since: t.since})
		}
	}
	for _, q := range c.ready.shapes {
		sc := c.shapes[q.need]
		if sc.why == "" {
			continue
		}
		n += sc.by[Plain][Ready]
		for i := 0; i < len(q.tasks) && len(some) < limit; i++ {
			add(q.tasks[i], sc.why)
		}
	}
	for _, lib := range c.libs {
		if lib.why == "" {
			continue
		}
		n += len(lib.waiting.tasks)
		for i := 0; i < len(lib.waiting.tasks) && len(some) < limit; i++ {
			add(lib.waiting.tasks[i], lib.why)
		}
	}
	slices.SortFunc(some, func(a, b UnplaceableTask) int { return cmp.Compare(a.Task, b.Task) })
	return n, some
}
