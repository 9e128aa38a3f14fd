package core

import (
	"fmt"
	"sort"
	"time"
)

// An attempt adrift is one a manager dispatched before it restarted, whose
// end its journal does not hold (TaskAdrift): it may still run on its
// worker. Its task waits, counted as waiting with one thing missing (its
// attempt's fate), until the worker of that incarnation joins again and
// reports it running (adopted: it runs on, and its report counts) or not
// (queued again), or until Until passes with no such worker (queued again).
// A task is never placed while an attempt of it may run elsewhere.

type adrift struct {
	attempt uint32
	where   string        // the worker's incarnation
	until   time.Duration // on Tick's clock
}

func (c *Core) taskAdrift(ev TaskAdrift) {
	t := c.tasks[ev.Task]
	if t == nil || t.recreating || t.spec.Role == Instance {
		return
	}
	if ev.Attempt > t.attempt {
		t.attempt = ev.Attempt // the next dispatch is a new attempt: the old one's reports are stale
	}
	if d, ok := c.adrift[t.spec.ID]; ok {
		d.attempt, d.where, d.until = t.attempt, ev.Where, ev.Until
		c.adrift[t.spec.ID] = d
		return // already waiting for its fate
	}
	switch t.state {
	case Ready:
		if lib := c.unqueue(t); lib != nil {
			c.libDirty(lib) // an instance started for it may not be needed
		}
		c.unstick(t) // not queued: its wait for a worker that fits starts again when it is
		c.setState(t, Waiting)
	case Waiting:
	default:
		return // dispatched in this life: its live report decides
	}
	t.missing++
	c.adrift[t.spec.ID] = adrift{attempt: t.attempt, where: ev.Where, until: ev.Until}
}

// adopt settles the library instances and attempts a worker of
// incarnation inc reports running as it joins (see WorkerJoined): each
// instance of an installed library that fits is adopted, the others are
// stopped; each attempt the core waits for the fate of there is adopted
// (a call only into an instance adopted here, with a free slot), the
// others are killed. Attempts adrift there that it does not report are
// queued again.
func (c *Core) adopt(w *worker, inc string, running []AttemptRef, insts []KeptInstance) {
	kept := make(map[InstanceID]*instance, len(insts))
	for _, k := range insts {
		if inst := c.adoptInstance(w, inc, k); inst != nil {
			kept[k.Instance] = inst
		} else {
			c.emit(Stop{Instance: k.Instance, Worker: w.id})
		}
	}
	for _, a := range running {
		t := c.tasks[a.Task]
		d, ok := c.adrift[a.Task]
		inst := kept[a.Instance]
		if !ok || t == nil || inc == "" || d.where != inc || d.attempt != a.Attempt || t.missing != 1 ||
			(t.spec.Role == Call) != (a.Instance != 0) ||
			t.spec.Role == Call && (inst == nil || inst.lib.id != t.spec.Lib || inst.free == 0) ||
			t.spec.Role != Call && (!w.fits(t.spec.Resources) || int64(len(w.gpusFree)) < t.spec.Resources.GPUs) {
			c.emit(Kill{Task: a.Task, Attempt: a.Attempt, Worker: w.id})
			continue
		}
		delete(c.adrift, t.spec.ID)
		t.missing = 0
		if t.spec.Role == Call {
			t.worker, t.inst = w, inst
			inst.free--
			inst.calls[t.spec.ID] = t
			w.running[t.spec.ID] = t
		} else {
			c.reserve(t, w) // (w is not open yet: no heap to fix)
		}
		t.ranOn = w.id
		c.setState(t, Running)
		c.emit(Adopted{Task: t.spec.ID, Attempt: t.attempt, Worker: w.id})
	}
	if inc == "" {
		return
	}
	var gone []TaskID
	for id, d := range c.adrift {
		if d.where == inc {
			gone = append(gone, id)
		}
	}
	c.unadrift(gone, "its worker came back after the manager restarted, and it no longer ran there")
}

// adoptInstance adopts instance k, running on w since before the manager
// restarted, if a manager of this run could have started it there (inc
// is known), its library is installed, works, has its inputs and has room
// for one more instance, its ID is free, and w has room for it. It
// returns nil otherwise.
func (c *Core) adoptInstance(w *worker, inc string, k KeptInstance) *instance {
	lib := c.libs[k.Lib]
	if inc == "" || lib == nil || lib.broken != "" || k.Instance == 0 || TaskID(k.Instance)&instanceBit != 0 ||
		c.tasks[instanceKey(k.Instance)] != nil || !c.files.allReady(lib.inputs) ||
		lib.max > 0 && int32(len(lib.insts)) >= lib.max || !w.fits(lib.res) || int64(len(w.gpusFree)) < lib.res.GPUs {
		return nil
	}
	t := &task{spec: Task{ID: instanceKey(k.Instance), Resources: lib.res, Inputs: lib.inputs, Role: Instance, Lib: lib.id}, index: -1}
	t.shape = c.shapeOf(t)
	c.seq++
	t.seq = c.seq
	inst := &instance{id: k.Instance, t: t, lib: lib, calls: make(map[TaskID]*task), ready: true, free: lib.slots, lastUse: c.ticks}
	t.inst = inst
	lib.insts = append(lib.insts, inst)
	c.tasks[t.spec.ID] = t
	c.setState(t, Waiting)
	c.files.await(t) // all ready: counts t as their reader
	c.reserve(t, w)
	t.attempt = k.Attempt
	t.ranOn = w.id
	c.setState(t, Running)
	lib.started++
	c.emit(InstanceAdopted{Instance: k.Instance, Attempt: k.Attempt, Lib: lib.id, Worker: w.id})
	c.libDirty(lib)
	return inst
}

// expireAdrift queues again the tasks whose attempt's worker did not come
// back in time.
func (c *Core) expireAdrift() {
	var gone []TaskID
	for id, d := range c.adrift {
		if d.until <= c.now {
			gone = append(gone, id)
		}
	}
	c.unadrift(gone, "its worker did not come back after the manager restarted")
}

// unadrift gives up on the attempts adrift of ids, in ID order: their tasks
// run again (the lost attempt does not count against their retries).
func (c *Core) unadrift(ids []TaskID, why string) {
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		d := c.adrift[id]
		delete(c.adrift, id)
		t := c.tasks[id]
		if t == nil {
			continue
		}
		if t.spec.AtMostOnce {
			t.missing-- // toUnknown counts it again
			c.toUnknown(t, fmt.Sprintf("attempt %d: %s", d.attempt, why))
			continue
		}
		c.emit(Requeued{Task: id, Attempt: d.attempt, Reason: Outcome{Kind: WorkerLost, Message: fmt.Sprintf("attempt %d: %s", d.attempt, why)}})
		if t.missing--; t.missing == 0 && t.state == Waiting {
			c.makeReady(t)
		}
	}
}

// toUnknown parks at-most-once task t, on no worker, until a Reconcile:
// its last attempt may have taken effect.
func (c *Core) toUnknown(t *task, why string) {
	c.unstick(t)
	c.setState(t, Waiting)
	t.missing++
	u := Unknown{Task: t.spec.ID, Attempt: t.attempt, Why: why}
	c.unknown[t.spec.ID] = u
	c.emit(u)
}

func (c *Core) reconcile(ev Reconcile) {
	t := c.tasks[ev.Task]
	_, unknown := c.unknown[ev.Task]
	_, adrift := c.adrift[ev.Task]
	if t == nil || !unknown && !adrift {
		return // see CanReconcile
	}
	delete(c.unknown, ev.Task)
	delete(c.adrift, ev.Task) // (an attempt that comes back is killed)
	switch ev.Verdict {
	case VerdictDone:
		if len(t.spec.Outputs) > 0 {
			c.finish(t, Outcome{Kind: Failed, Message: "reconciled as done, but its outputs are lost: it has no result"})
		} else {
			c.finish(t, Outcome{Kind: Success, Message: "reconciled: the operator says it took effect"})
		}
	case VerdictFailed:
		c.finish(t, Outcome{Kind: Failed, Message: "reconciled: the operator says it failed"})
	default:
		c.emit(Requeued{Task: t.spec.ID, Attempt: t.attempt, Reason: Outcome{Kind: WorkerLost, Message: "reconciled: the operator asks to run it again"}})
		if t.missing--; t.missing == 0 {
			c.makeReady(t)
		}
	}
}

// CanReconcile says why task cannot take a Reconcile now, or "" if it
// can: it must wait in unknown, or for an attempt adrift.
func (c *Core) CanReconcile(task TaskID) string {
	_, unknown := c.unknown[task]
	_, adrift := c.adrift[task]
	switch t := c.tasks[task]; {
	case t == nil:
		return fmt.Sprintf("task %d has ended, or was never submitted", task)
	case !unknown && !adrift:
		return fmt.Sprintf("task %d is %s, not unknown: only an at-most-once task whose attempt was lost waits for reconcile", task, t.state)
	}
	return ""
}

// Unknown returns the tasks in unknown, by ID.
func (c *Core) Unknown() []Unknown {
	us := make([]Unknown, 0, len(c.unknown))
	for _, u := range c.unknown {
		us = append(us, u)
	}
	sort.Slice(us, func(i, j int) bool { return us[i].Task < us[j].Task })
	return us
}

// Adrift returns how many tasks wait for the fate of an attempt dispatched
// before the manager restarted.
func (c *Core) Adrift() int { return len(c.adrift) }
