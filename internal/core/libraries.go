package core

import (
	"fmt"
	"slices"
	"sort"
)

// Libraries and calls. An instance of a library is a task the core makes:
// it holds the library's resources on a worker for as long as the library
// process lives, and is placed, staged and dispatched like any task. A call
// is a task that runs in one slot of a ready instance. Calls wait in their
// library's queue (by priority, then submission) until an instance has a
// free slot; the core starts instances as calls need them.

// Limits of libraries.
const (
	StartFailures = 3 // instances failing to start in a row before the library is broken
	IdleTicks     = 2 // ticks an instance must be idle before it is stopped to make room for waiting tasks
)

// instanceBit marks the keys under which the core files instances among
// its tasks (c.tasks, a worker's running), apart from the caller's task IDs
// (which must stay below it). The key never leaves the core: actions and
// events name instances by InstanceID.
const instanceBit = TaskID(1) << 63

// instanceKey is the key of instance id among the core's tasks.
func instanceKey(id InstanceID) TaskID { return instanceBit | TaskID(id) }

type library struct {
	id       LibID
	res      Resources
	slots    int32
	inputs   []FileID
	max      int32
	everyWkr bool       // an instance on every worker with room
	waiting  shapeQueue // ready calls
	insts    []*instance
	failures int32  // instances that failed to start, in a row
	started  int    // instances whose set-up succeeded, over its life
	broken   string // why calls fail at once; "" while it works
	why      string // why its waiting calls are unplaceable, as they were told; "" if they are not
}

type instance struct {
	id       InstanceID
	t        *task
	lib      *library
	ready    bool
	stopping bool
	eager    bool             // started at install: it waits for a place even if no call does
	free     int32            // slots neither running a call nor leased
	leased   int32            // slots lent to clients (leases.go)
	calls    map[TaskID]*task // running in it
	lastUse  uint64           // tick
}

func (c *Core) installLibrary(ev LibraryInstalled) {
	lib := c.libs[ev.Lib]
	if lib == nil {
		lib = &library{id: ev.Lib}
		c.libs[ev.Lib] = lib
	}
	lib.res, lib.slots, lib.inputs, lib.max = ev.Resources, max(ev.Slots, 1), ev.Inputs, ev.Max
	lib.everyWkr = ev.EveryWorker
	lib.failures, lib.broken = 0, "" // installing again clears a broken library
	// Eager instances: as many more as the live ones fall short of (not
	// those a removal, or idleness, is stopping: they end).
	live := int32(0)
	for _, inst := range lib.insts {
		if !inst.stopping {
			live++
		}
	}
	for range max(ev.Eager-live, 0) {
		c.startInstance(lib).eager = true
	}
	c.deployEverywhere(lib)
	c.libDirty(lib)
}

// removeLibrary stops the instances of a library the operator removed. It
// is broken for the removal's reason: placeCalls fails its waiting calls
// and ends the instances not started yet, instanceEnded fails the calls
// that ran in the stopped ones, and later calls fail at once.
func (c *Core) removeLibrary(ev LibraryRemoved) {
	lib := c.libs[ev.Lib]
	if lib == nil {
		return
	}
	lib.broken = ev.Why
	for _, inst := range lib.insts {
		if inst.t.state == Running && !inst.stopping {
			inst.stopping = true
			c.endInstanceLeases(inst, "library removed: "+ev.Why)
			c.emit(Stop{Instance: inst.id, Worker: inst.t.worker.id})
		}
	}
	c.libDirty(lib)
}

// deployEverywhere starts an instance of lib, if it wants one on every
// worker, on each open worker that has none and has room for one now. It is
// a best effort, tried again when a worker joins and on ticks while no task
// waits: a worker that is full now, or inputs not yet made, leave lazy
// deployment to start instances as calls need them.
func (c *Core) deployEverywhere(lib *library) {
	if !lib.everyWkr || lib.broken != "" || !c.files.allReady(lib.inputs) {
		return
	}
	has := make(map[WorkerID]bool, len(lib.insts))
	for _, inst := range lib.insts {
		if w := inst.t.worker; w != nil && (inst.t.state == Staging || inst.t.state == Running) {
			has[w.id] = true
		}
	}
	ws := make([]*worker, 0, len(c.open))
	for _, w := range c.open {
		if !has[w.id] && w.fits(lib.res) {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].id < ws[j].id })
	for _, w := range ws {
		if lib.max > 0 && int32(len(lib.insts)) >= lib.max {
			return
		}
		if w.index < 0 || !w.fits(lib.res) {
			continue
		}
		t := c.newInstance(lib).t
		c.files.await(t) // all ready: counts t as their reader
		c.assign(t, w)
	}
}

// deployAll runs deployEverywhere for every library, in ID order.
func (c *Core) deployAll() {
	ids := make([]LibID, 0, len(c.libs))
	for id, lib := range c.libs {
		if lib.everyWkr {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		c.deployEverywhere(c.libs[id])
	}
}

func (c *Core) libDirty(lib *library) {
	for _, l := range c.dirtyLibs {
		if l == lib {
			return
		}
	}
	c.dirtyLibs = append(c.dirtyLibs, lib)
}

// queueCall puts a ready call in its library's queue.
func (c *Core) queueCall(t *task) {
	lib := c.libs[t.spec.Lib]
	if lib == nil {
		c.finish(t, Outcome{Kind: Failed, Message: fmt.Sprintf("library %d is not installed", t.spec.Lib)})
		return
	}
	c.setState(t, Ready)
	lib.waiting.push(t)
	if lib.why != "" {
		c.tell(t, lib.why) // (judgeLib tells them all if the reason changed since)
	}
	c.libDirty(lib)
}

// placeCalls runs waiting calls in free slots, and starts instances for
// the rest while the library allows.
func (c *Core) placeCalls(lib *library) {
	if lib.broken != "" {
		for len(lib.waiting.tasks) > 0 {
			c.finish(lib.waiting.pop(), Outcome{Kind: Failed, Message: lib.broken})
		}
	}
	for len(lib.waiting.tasks) > 0 {
		inst := lib.freest()
		if inst == nil {
			break
		}
		t := lib.waiting.pop()
		t.worker = inst.t.worker
		t.inst = inst
		inst.free--
		inst.calls[t.spec.ID] = t
		t.worker.running[t.spec.ID] = t
		c.stage(t, t.worker) // most calls have no input files: it runs at once
	}
	// Slots coming (instances starting) versus calls waiting. At most one
	// instance waits for a place at a time: more are made as places are
	// found (assign marks the library dirty), so that a burst of calls does
	// not queue instances that would hold the cluster long after it.
	coming, unplaced := int32(0), []*instance(nil)
	for _, inst := range lib.insts {
		if !inst.ready {
			coming += lib.slots
		}
		if inst.t.state == Ready || inst.t.state == Waiting || inst.t.state == Staging && lib.broken != "" {
			unplaced = append(unplaced, inst) // not started: a broken library ends them all
		}
	}
	if len(lib.waiting.tasks) == 0 {
		for _, inst := range unplaced { // nobody needs them any more
			if inst.eager && lib.broken == "" {
				continue
			}
			if inst.t.state == Ready {
				c.ready.remove(inst.t)
			}
			c.instanceEnded(inst, Outcome{Kind: Cancelled, Message: "no calls wait"}, false)
		}
		return
	}
	if len(unplaced) == 0 && int32(len(lib.waiting.tasks)) > coming && (lib.max == 0 || int32(len(lib.insts)) < lib.max) {
		c.startInstance(lib)
	}
}

// serving reports whether an instance of l is ready.
func (l *library) serving() bool {
	for _, inst := range l.insts {
		if inst.ready && !inst.stopping {
			return true
		}
	}
	return false
}

// freest returns the ready instance with the most free slots, or nil.
func (l *library) freest() *instance {
	var best *instance
	for _, inst := range l.insts {
		if inst.ready && !inst.stopping && !inst.t.worker.draining && inst.free > 0 && (best == nil || inst.free > best.free) {
			best = inst
		}
	}
	return best
}

// SetInstanceBase makes the IDs of the instances the core starts from now
// on greater than base. A manager that restarts with its journal gives each
// of its lives a base of its own, so that the instances a worker kept from
// an earlier life (WorkerJoined.Instances) never share an ID with a new one.
func (c *Core) SetInstanceBase(base uint64) { c.instSeq = max(c.instSeq, base) }

// newInstance makes an instance of lib, waiting for a place.
func (c *Core) newInstance(lib *library) *instance {
	c.instSeq++
	for c.tasks[instanceKey(InstanceID(c.instSeq))] != nil {
		c.instSeq++ // an adopted instance's (see SetInstanceBase)
	}
	id := InstanceID(c.instSeq)
	t := &task{spec: Task{ID: instanceKey(id), Resources: lib.res, Inputs: lib.inputs, Role: Instance, Lib: lib.id}, index: -1, class: classInstance}
	t.shape = c.shapeOf(t)
	c.seq++
	t.seq = c.seq
	inst := &instance{id: id, t: t, lib: lib, calls: make(map[TaskID]*task)}
	t.inst = inst
	lib.insts = append(lib.insts, inst)
	c.tasks[t.spec.ID] = t
	c.setState(t, Waiting)
	return inst
}

func (c *Core) startInstance(lib *library) *instance {
	inst := c.newInstance(lib)
	t := inst.t
	if missing, why := c.files.await(t); why != "" {
		c.instanceEnded(inst, Outcome{Kind: InputMissing, Message: why}, true)
		if lib.broken == "" && lib.serving() {
			// Its inputs cannot be had: another start in this step would
			// fail the same way, and while another instance serves the
			// library never breaks, so placeCalls would start one forever.
			// The next event that touches the library tries again. (With
			// none serving, the starts of this step break it.)
			c.dirtyLibs = slices.DeleteFunc(c.dirtyLibs, func(l *library) bool { return l == lib })
		}
	} else if t.missing = missing; missing == 0 {
		c.makeReady(t)
	}
	return inst
}

func (c *Core) instanceReady(ev InstanceReady) {
	t := c.instanceTask(ev.Instance)
	if t == nil || t.inst.ready || t.state != Running || t.attempt != ev.Attempt || t.worker.id != ev.Worker {
		c.emit(StaleResult{Instance: ev.Instance, Attempt: ev.Attempt, Worker: ev.Worker})
		return
	}
	inst := t.inst
	inst.ready, inst.free, inst.lastUse = true, inst.lib.slots, c.ticks
	inst.lib.failures = 0
	inst.lib.started++
	if inst.stopping { // stopped while it started (its library removed): a worker may miss a Stop before it is ready
		c.emit(Stop{Instance: inst.id, Worker: inst.t.worker.id})
	}
	c.libDirty(inst.lib)
}

// instanceTask returns the task of instance id, or nil if it is not live.
func (c *Core) instanceTask(id InstanceID) *task {
	if id == 0 || TaskID(id)&instanceBit != 0 {
		return nil
	}
	if t := c.tasks[instanceKey(id)]; t != nil && t.inst != nil {
		return t
	}
	return nil
}

func (c *Core) instanceEndedEvent(ev InstanceEnded) {
	t := c.instanceTask(ev.Instance)
	if t == nil || t.state != Running || t.attempt != ev.Attempt || t.worker.id != ev.Worker {
		c.emit(StaleResult{Instance: ev.Instance, Attempt: ev.Attempt, Worker: ev.Worker})
		return
	}
	c.instanceEnded(t.inst, ev.Outcome, !t.inst.ready && !t.inst.stopping)
}

// instanceEnded forgets an instance: its resources go back, its calls are
// retried (or fail), and a start failure counts towards breaking the library.
func (c *Core) instanceEnded(inst *instance, why Outcome, startFailure bool) {
	t, lib := inst.t, inst.lib
	c.endInstanceLeases(inst, "instance ended: "+why.Message)
	for i, x := range lib.insts {
		if x == inst {
			lib.insts = append(lib.insts[:i], lib.insts[i+1:]...)
			break
		}
	}
	calls := make([]*task, 0, len(inst.calls))
	for _, call := range inst.calls {
		calls = append(calls, call)
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].spec.ID < calls[j].spec.ID })
	var w *worker
	if t.state == Running || t.state == Staging {
		w = t.worker
		c.release(t)
	}
	c.releaseFiles(t)
	c.counts[classInstance][t.state]--
	t.shape.by[Instance][t.state]--
	c.counts[classInstance][Finished]++
	t.state = Finished
	delete(c.tasks, t.spec.ID)
	for _, call := range calls {
		staging := call.state == Staging
		c.release(call) // frees its slot
		if call.cancel {
			c.finish(call, Outcome{Kind: Cancelled, Message: "cancelled"})
			continue
		}
		if staging {
			c.makeReady(call) // it never started: no retry spent
			continue
		}
		if lib.broken != "" { // removed: a broken library runs no call
			c.finish(call, Outcome{Kind: Failed, Message: lib.broken})
			continue
		}
		crashed := Outcome{Kind: Failed, Message: "library crashed: " + why.Message}
		if why.Kind == ResourceExceeded || why.Kind == WorkerLost {
			crashed = Outcome{Kind: why.Kind, Message: why.Message}
		}
		c.retryOrFinish(call, crashed, true)
	}
	if startFailure && lib.broken == "" {
		// A library whose other instance serves is not broken: this worker
		// may lack what the set-up needs, and calls still have a place.
		if lib.failures++; lib.failures >= StartFailures && !lib.serving() {
			lib.broken = fmt.Sprintf("library failed to start %d times: %s", lib.failures, why.Message)
			c.emit(LibraryBroken{Lib: lib.id, Why: lib.broken})
		}
	}
	if w != nil && w.index >= 0 {
		c.freed = append(c.freed, w)
	}
	c.libDirty(lib)
}

// callDone frees the slot of a call that ended.
func (c *Core) callDone(t *task) {
	if inst := t.inst; inst != nil {
		delete(inst.calls, t.spec.ID)
		inst.free++
		inst.lastUse = c.ticks
		t.inst = nil
		c.libDirty(inst.lib)
	}
}

// stopIdle stops instances that have been idle for IdleTicks when tasks
// wait for resources, so that the library does not hold them for nothing.
func (c *Core) stopIdle() {
	if c.ready.n == 0 {
		return
	}
	ids := make([]LibID, 0, len(c.libs))
	for id := range c.libs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		lib := c.libs[id]
		if len(lib.waiting.tasks) > 0 {
			continue
		}
		for _, inst := range lib.insts {
			if inst.ready && !inst.stopping && len(inst.calls) == 0 && inst.leased == 0 && c.ticks-inst.lastUse >= IdleTicks {
				inst.stopping = true
				c.emit(Stop{Instance: inst.id, Worker: inst.t.worker.id})
			}
		}
	}
}
