package core

import (
	"fmt"
	"sort"
)

// A full cache: a worker hands an attempt back (TaskReturned.CacheFull)
// when its cache cannot keep the attempt's output because every file in
// it is still needed, or cannot take an input the task stages
// (TransferDone.CacheFull); and the core itself does not stage a task on
// a worker whose cache has no room for its inputs (see cacheFits). The
// task is not failed: it waits, parked, until a worker's cache frees space
// (a replica is unlinked, dropped or released) or a worker joins, or on a
// Tick while no task runs anywhere, and is then queued again if an open
// worker's cache has room for what it needs. If none has and nothing runs,
// the caches are deadlocked: breakDeadlock makes room for the oldest
// waiting task by unlinking copies it does not read, which lineage
// recreates. Only an output larger than every
// connected worker's disk can never be kept, nor one larger than what any
// worker could free (its disk less the files kept for the session): that
// task fails, and says why.

// cacheFull parks t, handed back by a worker whose cache was full, or
// fails it if no connected worker could ever hold its output.
func (c *Core) cacheFull(t *task, ev TaskReturned) {
	c.waitForSpace(t, ev.Need, ev.Worker, "output")
}

// waitForSpace parks t, whose output (what is "output"), input ("input",
// its fetch failed) or inputs ("inputs", placed where they do not fit) of
// need bytes (0: unknown) did not fit in the cache of worker wid, or fails
// it if no connected worker could ever hold that much.
func (c *Core) waitForSpace(t *task, need int64, wid WorkerID, what string) {
	c.handedBack++
	needs := "needs"
	if what == "inputs" {
		needs = "need"
	}
	var largest int64
	for _, w := range c.workers {
		largest = max(largest, w.total.DiskMB<<20)
	}
	mib := (need + 1<<20 - 1) >> 20
	if need > 0 && need > largest {
		c.finish(t, Outcome{Kind: ResourceExceeded, Message: fmt.Sprintf(
			"%s of task %d %s %d MiB; the largest cache of a connected worker is %d MiB: start a worker with a larger --disk",
			what, t.spec.ID, needs, mib, largest>>20)})
		return
	}
	if need > 0 && !c.couldHold(need) {
		c.finish(t, Outcome{Kind: ResourceExceeded, Message: fmt.Sprintf(
			"%s of task %d %s %d MiB, but every connected worker's cache is held by files kept for the session (keep: true, or a cache level): keep fewer files, or start a worker with a larger --disk",
			what, t.spec.ID, needs, mib)})
		return
	}
	why := fmt.Sprintf("handed back by worker %d: its cache is full of files still needed; waiting for space", wid)
	switch what {
	case "inputs":
		why = fmt.Sprintf("the cache of worker %d has no room for its inputs: it is full of files still needed; waiting for space", wid)
	case "outputs":
		why = fmt.Sprintf("the cache of worker %d has no room for its outputs (estimated from those so far) until the tasks running there end and the files they read are pruned; waiting for space", wid)
	}
	c.emit(Requeued{Task: t.spec.ID, Attempt: t.attempt, Reason: Outcome{Kind: ResourceExceeded, Message: why}})
	c.setState(t, Waiting)
	c.parked = append(c.parked, parkedTask{t, need})
}

// parkedTask is a task that waits for need bytes (0: unknown) of cache
// space.
type parkedTask struct {
	t    *task
	need int64
}

// couldHold reports whether a connected worker could hold need bytes once
// the files that pruning will unlink are gone: its disk less the files it
// holds that are not task-level (kept for the session or longer).
func (c *Core) couldHold(need int64) bool {
	for _, w := range c.workers {
		room := w.total.DiskMB << 20
		for f := range w.holds {
			if e := c.files.files[f]; e != nil && e.level != LevelTask {
				room -= e.size
			}
		}
		if need <= room {
			return true
		}
	}
	return false
}

// idleUnpark, on a Tick, queues the parked tasks again if no task runs or
// stages anywhere: nothing else would free space, and a cache that was
// full may not be now (one retry per Tick while the cluster is idle).
func (c *Core) idleUnpark() {
	if len(c.parked) == 0 {
		return
	}
	for _, byState := range c.counts {
		if byState[Running]+byState[Staging] > 0 {
			return
		}
	}
	c.breakDeadlock()
	c.unparkAll() // before the Tick's placement: they may rank first
}

// breakDeadlock: nothing runs, and tasks wait for cache space that no
// worker has: the caches are full of files that the waiting tasks
// themselves need, and nothing will free them. The oldest waiting task
// that needs known space gets it on the worker that holds the most of its
// inputs: files there that no task placed there reads, and that can be had
// again (another copy, or their producer runs again: lineage), are
// unlinked from it until the task fits. Its run then prunes its inputs,
// which makes room for the producers run again.
func (c *Core) breakDeadlock() {
	room := int64(0)
	for _, w := range c.open {
		r := c.cacheRoom(w)
		if r < 0 {
			return // an unbounded cache: nothing to break
		}
		room = max(room, r)
	}
	var p *parkedTask
	for i := range c.parked {
		if q := &c.parked[i]; q.need > 0 && c.tasks[q.t.spec.ID] == q.t && q.t.state == Waiting && q.t.missing == 0 {
			if q.need <= room {
				return // it fits somewhere now: no deadlock
			}
			if p == nil {
				p = q
			}
		}
	}
	if p == nil {
		return
	}
	t := p.t
	var w *worker
	var most int64 = -1
	for _, o := range c.open {
		if !o.fits(t.spec.Resources) {
			continue
		}
		if b := c.inputBytesOn(t, o); b > most || b == most && o.id < w.id {
			w, most = o, b
		}
	}
	if w == nil {
		return
	}
	deps := make(map[FileID]bool)
	c.files.deps(t, func(e *fileEntry) { deps[e.id] = true })
	var victims []*fileEntry
	for f, s := range w.holds {
		e := c.files.files[f]
		if s == copyLoose || e == nil || deps[f] || w.pins[f] > 0 || e.kind != Produced || e.size <= 0 {
			continue
		}
		if _, busy := w.inflight[f]; busy {
			continue
		}
		if len(e.replicas) > 1 || e.manager || c.retained[e.producer] != nil {
			victims = append(victims, e)
		}
	}
	// Copies had elsewhere first (nothing runs again), then the largest.
	sort.Slice(victims, func(i, j int) bool {
		a, b := victims[i], victims[j]
		ac, bc := len(a.replicas) > 1 || a.manager, len(b.replicas) > 1 || b.manager
		if ac != bc {
			return ac
		}
		if a.size != b.size {
			return a.size > b.size
		}
		return a.id < b.id
	})
	short := p.need - c.cacheRoom(w)
	var unlinked []FileID
	for _, e := range victims {
		if short <= 0 {
			break
		}
		short -= e.size
		unlinked = append(unlinked, e.id)
	}
	if short > 0 {
		return // not even that would make room: it waits (for a worker to join)
	}
	c.emit(Unlink{Worker: w.id, Files: unlinked})
	for _, f := range unlinked {
		c.evictedForSpace++
		c.dropReplica(w, c.files.files[f]) // its producer runs again if it was the last copy
	}
}

// unparkAll queues again the tasks parked for a full cache, now that a
// cache freed space: those whose need fits the room of an open worker's
// cache (see cacheRoom), or is unknown. One that does not fit yet on the
// worker it is placed on waits again.
func (c *Core) unparkAll() {
	c.unpark = false
	room := int64(0)
	for _, w := range c.open {
		if r := c.cacheRoom(w); r < 0 {
			room = -1 // unbounded
			break
		} else {
			room = max(room, r)
		}
	}
	parked := c.parked
	c.parked = nil
	for _, p := range parked {
		t := p.t
		if c.tasks[t.spec.ID] != t || t.state != Waiting || t.missing != 0 {
			continue
		}
		if room >= 0 && p.need > room {
			c.parked = append(c.parked, p) // no cache has room for it yet
			continue
		}
		c.makeReady(t)
	}
}
