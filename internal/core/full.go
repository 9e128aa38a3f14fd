package core

import "fmt"

// A full cache: a worker hands an attempt back (TaskReturned.CacheFull)
// when its cache cannot keep the attempt's output because every file in
// it is still needed, or cannot take an input the task stages
// (TransferDone.CacheFull). The task is not failed: it waits, parked, until a
// worker's cache frees space (a replica is unlinked or dropped) or a
// worker joins, or on a Tick while no task runs anywhere, and is then
// queued again. Only an output larger than every
// connected worker's disk can never be kept, nor one larger than what any
// worker could free (its disk less the files kept for the session): that
// task fails, and says why.

// cacheFull parks t, handed back by a worker whose cache was full, or
// fails it if no connected worker could ever hold its output.
func (c *Core) cacheFull(t *task, ev TaskReturned) {
	c.waitForSpace(t, ev.Need, ev.Worker, "output")
}

// waitForSpace parks t, whose output (what is "output") or input ("input")
// of need bytes (0: unknown) did not fit in the cache of worker wid, or
// fails it if no connected worker could ever hold that much.
func (c *Core) waitForSpace(t *task, need int64, wid WorkerID, what string) {
	c.handedBack++
	var largest int64
	for _, w := range c.workers {
		largest = max(largest, w.total.DiskMB<<20)
	}
	mib := (need + 1<<20 - 1) >> 20
	if need > 0 && need > largest {
		c.finish(t, Outcome{Kind: ResourceExceeded, Message: fmt.Sprintf(
			"%s of task %d needs %d MiB; the largest cache of a connected worker is %d MiB: start a worker with a larger --disk",
			what, t.spec.ID, mib, largest>>20)})
		return
	}
	if need > 0 && !c.couldHold(need) {
		c.finish(t, Outcome{Kind: ResourceExceeded, Message: fmt.Sprintf(
			"%s of task %d needs %d MiB, but every connected worker's cache is held by files kept for the session (keep: true, or a cache level): keep fewer files, or start a worker with a larger --disk",
			what, t.spec.ID, mib)})
		return
	}
	c.emit(Requeued{Task: t.spec.ID, Attempt: t.attempt, Reason: Outcome{Kind: ResourceExceeded,
		Message: fmt.Sprintf("handed back by worker %d: its cache is full of files still needed; waiting for space", wid)}})
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
	c.unpark = true
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
