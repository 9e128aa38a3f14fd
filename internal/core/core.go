package core

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// task is the core's state for one task.
// (Fields are ordered to pack: a million queued tasks is the core's load.)
type task struct {
	seq      uint64 // submission order (first: the queues compare it with spec.Priority, on one cache line)
	spec     Task
	worker   *worker     // where it is placed, or was last
	inst     *instance   // calls: the instance it runs in; instances: their own state
	shape    *shapeCount // its entry in Core.shapes (calls: Core.callShape)
	ranOn    WorkerID    // where the last attempt was dispatched; 0 before the first
	index    int32       // in its shape queue, or -1 (int32: the task packs into its size class, TestTaskSize)
	attempt  uint32      // of the last dispatch; 0 before the first
	failures int32       // attempts that counted against spec.Retries
	missing  int32       // inputs (and tasks it runs after) not yet available
	staging  int32       // inputs still to arrive on its worker
	state    State
	cancel   bool // a Kill was sent; report Cancelled whatever the worker says
	// recreating: the task had finished, and runs again because its output
	// was lost; it ends with Recreated or FileLost, not a second Done.
	recreating bool
	// held: it holds a reservation of its worker's resources. A plain
	// task placed without one is held ahead (ahead.go: isAhead).
	held   bool
	stuck  bool // told that no worker could run it (since when: since); see unplaceable.go
	pinned bool // its inputs are pinned on its worker (see pin)
	// rank orders tasks of equal priority (see before): branchRank if it
	// reads a file a task produces (it continues a started branch), plus
	// bits.Len64 of the bytes its end lets be pruned, when made ready.
	rank uint8
	// heldLost: times it was lost with its worker while held ahead there
	// and not reported started, requeued without spending a retry (up to
	// maxHeldLost; see workerLeft).
	heldLost uint8
	class    class // what Tally counts it as (see classOf)
	// since: when a stuck task was told so, on Tick's clock; -1 until the
	// next Tick. A field, not a map entry per stuck task: a million queued
	// tasks with no worker are all stuck, and the field fits in the size
	// class the task had without it (TestTaskSize).
	since time.Duration
}

// Core is the scheduler state machine. See the package documentation.
type Core struct {
	tasks   map[TaskID]*task // every task not yet finished
	workers map[WorkerID]*worker
	open    openWorkers // workers that take tasks
	ready   readyQueue
	files   catalog
	seq     uint64
	fresh   []*task   // made ready in this step, to place at its end
	spare   []*task   // the other buffer of placeFresh
	freed   []*worker // freed by tasks staging there in this step, to fill at its end
	// Tasks by class (see classOf) and state. Finished counts every task
	// ever finished, and for instances every instance that ended.
	counts [classDataflow + 1][Staging + 1]int
	shapes map[Resources]*shapeCount // demand by shape, kept as states change
	// callShape counts calls, which need no shape of their own (they run
	// in the slots of instances), so that every task has one.
	callShape shapeCount
	out       []Action

	transfers       map[uint64]*transfer
	nextTransfer    uint64
	blocked         []blockedFetch // fetches waiting for a source with room
	managerOut      int32
	originOut       map[FileID]int32
	ticks           uint64
	retained        map[TaskID]*task      // finished producers of files kept only in workers
	followers       map[TaskID][]TaskID   // tasks waiting for a task to succeed (their After names it)
	recreated       uint64                // tasks run again to recreate lost files
	pruned          int64                 // bytes unlinked (see Stats.Pruned)
	handedBack      uint64                // attempts handed back for a full cache
	evictedForSpace uint64                // copies unlinked to break a deadlock of full caches (see breakDeadlock)
	parked          []parkedTask          // waiting for a cache to free space (see waitForSpace)
	unpark          bool                  // a cache freed space in this step
	lost            uint64                // files lost for good
	moved           [FromDerive + 1]int64 // bytes brought to workers, by source kind
	deferRetire     bool                  // retire files at the end of submit (see submit)
	retiring        []*fileEntry          // the files to retire then
	releasing       []workerFile          // copies whose last pin went in this step (see releaseUnpinned)

	libs      map[LibID]*library
	dirtyLibs []*library // whose calls to place at the end of the step
	instSeq   uint64
	leases    leases                 // slots lent for direct calls (leases.go)
	ahead     int                    // tasks a worker may hold beyond its free resources (ahead.go)
	held      [classDataflow + 1]int // tasks held ahead, not started, by class (countHeld)
	stealable listed[*task]          // tasks held ahead and not revoked (stealFor)
	canHold   listed[*worker]        // workers that may hold more tasks ahead (countCanHold): holdAhead looks at these, not at every worker
	revokes   map[*task]*worker      // held tasks revoked, not yet handed back or started: the worker each was revoked for (stealFor)
	noHold    []*shapeQueue          // scratch of placeFresh: shapes whose head no worker could hold

	now time.Duration // the last Tick's Now
	// unstamped: the tasks told unplaceable since the last Tick, which
	// stamps their since with its Now (expire).
	unstamped []*task
	epoch     uint64 // changes whenever the workers that take tasks do

	// Placements since the last Placements call, kept only once
	// ObservePlacements asked for them (a transaction log).
	placements        []Placed
	observePlacements bool

	// Graph-aware placement (families.go).
	naive   bool               // PlaceFree: no families
	famOf   map[TaskID]*family // unfinished producers, by the family they are in
	unhomed []*family          // families with a member made ready and no home, oldest first
	// unhomedKept: len(unhomed) after it was last cleaned (see listFamily)
	unhomedKept int
	bytesOn     map[WorkerID]int64 // scratch of dataHere and prefetch
	noPrefetch  bool               // SetPrefetch(false) (prefetch.go)
	prefetchFor []TaskID           // consumers to look at for a prefetch at the end of the step
	prefetched  int64              // bytes prefetches brought (see Stats.Prefetched)

	adrift  map[TaskID]adrift  // tasks whose attempt from before a restart may still run (adrift.go)
	unknown map[TaskID]Unknown // at-most-once tasks whose fate is unknown (adrift.go)

	// spaceTold: tasks told (Requeued) that they wait for cache space for
	// their inputs, until they are dispatched: not told again each time
	// a placement finds no room yet (see stage).
	spaceTold map[TaskID]struct{}
	// outBytes, outFiles: the outputs kept so far; their mean estimates a
	// producer's output before it runs (see outputFits).
	outBytes, outFiles int64

	short     map[FileID]struct{} // files with fewer copies than they want, for want of workers (see replicate)
	committed uint64              // checkpoints committed (see checkpoint.go)
	ckptRetry []FileID            // checkpoints that failed, to ask again at the next Tick
	starts    []Started           // held tasks started in this step, emitted at its end (promote)
}

// New returns an empty core.
func New() *Core {
	return &Core{
		tasks:     make(map[TaskID]*task),
		workers:   make(map[WorkerID]*worker),
		ready:     newReadyQueue(),
		files:     newCatalog(),
		transfers: make(map[uint64]*transfer),
		originOut: make(map[FileID]int32),
		retained:  make(map[TaskID]*task),
		followers: make(map[TaskID][]TaskID),
		libs:      make(map[LibID]*library),
		shapes:    make(map[Resources]*shapeCount),
		spaceTold: make(map[TaskID]struct{}),
		epoch:     1,
		adrift:    make(map[TaskID]adrift),
		unknown:   make(map[TaskID]Unknown),
		short:     make(map[FileID]struct{}),
	}
}

// Step applies ev and returns the actions the caller must execute, in order.
// The returned slice is valid until the next call to Step.
func (c *Core) Step(ev Event) []Action {
	c.out = c.out[:0]
	switch ev := ev.(type) {
	case WorkerJoined:
		c.workerJoined(ev)
		c.deployAll()
		if len(c.short) > 0 {
			c.replicateShort()
		}
	case WorkerDraining:
		if w := c.workers[ev.Worker]; w != nil && !w.draining {
			c.countCanHold(w, -1)
			w.draining = true
			c.open.remove(w)
			c.endLeasesIf("worker draining", func(l *lease) bool { return l.inst.t.worker == w })
			c.workersChanged()
			c.unstage(w)
		}
	case WorkerLeft:
		c.workerLeft(ev)
	case TasksSubmitted:
		c.submit(ev.Tasks)
	case TaskFinished:
		c.taskFinished(ev)
	case TaskReturned:
		c.taskReturned(ev)
	case TaskRecovered:
		c.taskRecovered(ev)
	case TaskAdrift:
		c.taskAdrift(ev)
	case Reconcile:
		c.reconcile(ev)
	case CancelTask:
		c.cancelTask(ev.Task)
	case FileMissing:
		c.files.missing(ev.File, ev.Why)
	case FilesDeclared:
		c.files.declare(ev.Session, ev.Files)
	case SessionEnded:
		c.sessionEnded(ev.Session)
	case TransferDone:
		c.transferDone(ev)
	case CheckpointCommitted:
		c.checkpointCommitted(ev)
	case CheckpointFailed:
		c.checkpointFailed(ev)
	case FilesDropped:
		if w := c.workers[ev.Worker]; w != nil {
			for _, f := range ev.Files {
				if e := c.files.files[f]; e != nil {
					c.dropReplica(w, e)
				}
			}
			for _, f := range ev.Files {
				if e := c.files.files[f]; e != nil {
					c.restage(w, e)
				}
			}
		}
	case LibraryInstalled:
		c.installLibrary(ev)
	case LibraryRemoved:
		c.removeLibrary(ev)
	case InstanceReady:
		c.instanceReady(ev)
	case InstanceEnded:
		c.instanceEndedEvent(ev)
	case LeaseRequested:
		c.requestLease(ev)
	case LeaseReleased:
		if l := c.leases.byID[ev.Lease]; l != nil {
			c.endLease(l, "released")
		}
	case DirectCallEnded:
		c.directCallEnded(ev)
	case DirectCallsCounted:
		c.directCallsCounted(ev)
	case Tick:
		c.ticks++
		c.now = max(c.now, ev.Now)
		c.idleUnpark()
		c.expire()
		c.expireLeases()
		if len(c.adrift) > 0 {
			c.expireAdrift()
		}
		c.stopIdle()
		c.retryBlocked()
		if len(c.ckptRetry) > 0 {
			c.retryCheckpoints()
		}
		c.placeAll()
		if c.ready.n == 0 {
			c.deployAll() // workers that had no room may have now
		}
	default:
		panic(fmt.Sprintf("core: unknown event %T", ev))
	}
	c.settle()
	return c.out
}

// settle, at the end of a step, queues the tasks that waited for cache
// space if a cache freed some, places what it can (see place), and
// releases the copies no task reads on their worker any more.
func (c *Core) settle() {
	if len(c.starts) > 0 {
		for _, s := range c.starts {
			c.emit(s)
		}
		c.starts = c.starts[:0]
	}
	if len(c.files.barred) > 0 {
		for _, b := range c.files.barred {
			if t := c.tasks[b.task]; t == nil || t.state != Waiting {
				continue // it failed in the same step (another input), or was cancelled
			}
			c.emit(Barred{Task: b.task, File: b.file.id})
			c.checkpoint(b.file)
		}
		c.files.barred = c.files.barred[:0]
	}
	if c.unpark {
		c.unparkAll()
	}
	if len(c.freed) > 0 || len(c.fresh) > 0 || len(c.dirtyLibs) > 0 {
		c.placePending()
	}
	if len(c.releasing) > 0 {
		c.releaseUnpinned()
		if c.unpark { // released copies make room for what waited for space
			c.unparkAll()
			c.placePending()
		}
	}
	if len(c.prefetchFor) > 0 {
		c.prefetchAll()
	}
}

// placePending offers what staging tasks freed to the queue, best task first,
// and places the tasks made ready, until neither is left.
func (c *Core) placePending() {
	for len(c.freed) > 0 || len(c.fresh) > 0 || len(c.dirtyLibs) > 0 {
		libs := c.dirtyLibs
		c.dirtyLibs = nil
		for _, lib := range libs {
			c.placeCalls(lib)
			c.judgeLib(lib)
		}
		freed := c.freed
		c.freed = nil
		for _, w := range freed {
			if w.index >= 0 {
				c.fill(w)
			}
		}
		c.placeFresh()
	}
}

func (c *Core) emit(a Action) { c.out = append(c.out, a) }

func (c *Core) setState(t *task, s State) {
	// Branch-free, and so inlined: it runs on every move of every task. A
	// new task's first decrement lands in the slot of state 0, which
	// nobody reads.
	all, shape := &c.counts[t.class], &t.shape.by[t.spec.Role]
	all[t.state]--
	shape[t.state]--
	all[s]++
	shape[s]++
	t.state = s
}

// Counts returns how many tasks are in each state, library instances
// included (but in finished); Finished counts every task that ever
// finished. Tally tells them apart.
func (c *Core) Counts() (waiting, ready, running, finished int) {
	for _, n := range &c.counts {
		waiting, ready, running = waiting+n[Waiting], ready+n[Ready], running+n[Running]
	}
	n := &c.counts
	return waiting, ready, running, n[classPlain][Finished] + n[classDataflow][Finished] + n[classCall][Finished]
}

// Staging returns how many tasks (library instances included) wait on a
// worker for their inputs.
func (c *Core) Staging() int {
	n := &c.counts
	return n[classPlain][Staging] + n[classDataflow][Staging] + n[classCall][Staging] + n[classInstance][Staging]
}

// StateCounts counts tasks by state.
type StateCounts struct {
	Waiting  int // for input files
	Ready    int // queued for a worker (calls: for a free slot)
	Staging  int // placed on a worker, their inputs being brought there
	Running  int
	Finished int // over the core's life
	// Held: of Running, the tasks dispatched ahead that their worker
	// holds, not started yet (SetAhead). They wait for a core as queued
	// ones do: a status shows them queued, not running.
	Held int
}

// Tally counts the core's tasks by modality: plain tasks, dataflow tasks
// (see classOf), calls, and the library instances the core made
// (Finished: instances that ended).
type Tally struct {
	Tasks, Dataflow, Calls, Instances StateCounts
}

// Tally returns the counts of tasks by modality and state.
func (c *Core) Tally() Tally {
	of := func(k class) StateCounts {
		n := &c.counts[k]
		return StateCounts{Waiting: n[Waiting], Ready: n[Ready], Staging: n[Staging], Running: n[Running], Finished: n[Finished], Held: c.held[k]}
	}
	return Tally{Tasks: of(classPlain), Dataflow: of(classDataflow), Calls: of(classCall), Instances: of(classInstance)}
}

// Dataflow reports whether the core counts task id, which it knows
// (unfinished, or run again to recreate a file), as a dataflow task.
func (c *Core) Dataflow(id TaskID) bool {
	t := c.tasks[id]
	return t != nil && t.class == classDataflow
}

// class is what the core counts a task as (see Tally): its role, but a
// plain task that takes part in a dataflow is counted apart.
type class uint8

// Classes; the first three are the roles'.
const (
	classPlain          = class(Plain)
	classCall           = class(Call)
	classInstance       = class(Instance)
	classDataflow class = classInstance + 1
)

// classOf returns the class of a task: a plain task is a dataflow task if
// it reads a file a task produces (a temp file or another task's output)
// or writes a temp file (a Produced file declared without Upload, kept
// only in workers' caches). It is decided once, at submission, after
// every output of the batch is claimed, so that a task's class never
// changes and the counts stay exact.
func (c *Core) classOf(spec *Task) class {
	if spec.Role != Plain {
		return class(spec.Role)
	}
	for _, f := range spec.Inputs {
		if e := c.files.files[f]; e != nil && e.kind == Produced {
			return classDataflow
		}
	}
	for _, f := range spec.Outputs {
		if e := c.files.files[f]; e != nil && e.keep == keepAlways {
			return classDataflow
		}
	}
	return classPlain
}

// Stats are the core's counters of data events.
type Stats struct {
	Transfers uint64 // in flight
	Recreated uint64 // tasks run again to recreate lost files
	Lost      uint64 // files lost for good
	// Moved: bytes brought to workers by fetches that succeeded, indexed
	// by the SourceKind of their source (as TransferDone.Size reports them).
	Moved [FromDerive + 1]int64
	// Pruned: bytes unlinked from workers because no task reads them
	// any more (see Unlink), one count per copy.
	Pruned int64
	// HandedBack: attempts handed back because their worker's cache was
	// full (TaskReturned.CacheFull), and tasks that waited for cache
	// space for their inputs; not failed attempts.
	HandedBack uint64
	// EvictedForSpace: copies unlinked to break a deadlock of full caches
	// (their producers run again when their readers need them).
	EvictedForSpace uint64
	// Checkpointed: checkpoints committed (CheckpointCommitted accepted).
	Checkpointed uint64
	// Prefetched: of Moved, the bytes fetched for consumers before they
	// were placed, while their last producers ran (prefetch.go).
	Prefetched int64
	// Direct: calls sent straight to a worker on a lease whose end was
	// reported (DirectCallEnded); Tally counts them among finished calls too.
	Direct uint64
}

// Stats returns the core's counters.
func (c *Core) Stats() Stats {
	return Stats{Transfers: uint64(len(c.transfers)), Recreated: c.recreated, Lost: c.lost, Moved: c.moved, Pruned: c.pruned, HandedBack: c.handedBack, EvictedForSpace: c.evictedForSpace, Checkpointed: c.committed, Prefetched: c.prefetched, Direct: c.leases.direct}
}

// TaskState returns the state of a task the core knows, and its attempt.
// Finished tasks are forgotten: ok is false for them.
func (c *Core) TaskState(id TaskID) (s State, attempt uint32, ok bool) {
	t := c.tasks[id]
	if t == nil {
		return 0, 0, false
	}
	return t.state, t.attempt, true
}

func (c *Core) workerJoined(ev WorkerJoined) {
	if c.workers[ev.Worker] != nil {
		return
	}
	c.unpark = c.unpark || len(c.parked) > 0 // it may have room
	w := &worker{
		id:       ev.Worker,
		total:    ev.Resources,
		free:     ev.Resources,
		gpusFree: append([]int32(nil), ev.GPUs...),
		running:  make(map[TaskID]*task),
		holds:    make(map[FileID]copyState),
		inflight: make(map[FileID]uint64),
		waiting:  make(map[FileID][]*task),
		derives:  make(map[FileID][]FileID),
		tries:    make(map[FileID]int32),

		holdsAhead: ev.HoldsAhead,
	}
	sort.Slice(w.gpusFree, func(i, j int) bool { return w.gpusFree[i] < w.gpusFree[j] })
	c.workers[w.id] = w
	c.countCanHold(w, 1)
	for _, cf := range ev.Cached {
		e := c.files.files[cf.File]
		if e == nil {
			e = &fileEntry{id: cf.File, state: fileReady}
			c.files.files[cf.File] = e
		}
		if cf.Size > 0 {
			e.size = cf.Size
		}
		c.addReplica(w, e, copyLoose)
		if e.wantsCheckpoint() {
			// Its checkpoint may have found no live copy before this one
			// came back (retryCheckpoints gave up on it then): ask now.
			c.checkpoint(e)
		}
	}
	if len(ev.Running) > 0 || len(ev.Instances) > 0 || len(c.adrift) > 0 {
		c.adopt(w, ev.Incarnation, ev.Running, ev.Instances)
	}
	c.open.push(w)
	c.workersChanged() // before it takes tasks: their reasons clear first
	c.fill(w)
}

func (c *Core) workerLeft(ev WorkerLeft) {
	w := c.workers[ev.Worker]
	if w == nil {
		return
	}
	lost := make([]*task, 0, len(w.running))
	for _, t := range w.running {
		lost = append(lost, t)
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].spec.ID < lost[j].spec.ID })
	if w.index >= 0 {
		c.open.remove(w)
	}
	c.countCanHold(w, -1)
	delete(c.workers, w.id)
	c.workersChanged()
	for _, id := range w.inflight {
		if tr := c.transfers[id]; tr != nil {
			delete(c.transfers, id)
			c.countSource(tr.src, tr.file, -1)
		}
	}
	reason := Outcome{Kind: WorkerLost, Message: fmt.Sprintf("worker %d lost: %s", w.id, ev.Reason)}
	for _, t := range lost {
		if t.spec.Role == Call && t.inst != nil {
			continue // its instance, on the same worker, settles it
		}
		if t.spec.Role == Instance && t.state == Running {
			c.instanceEnded(t.inst, Outcome{Kind: WorkerLost, Message: reason.Message}, false)
			continue
		}
		staging := t.state == Staging
		freeHeld := t.state == Running && t.isAhead() && !t.spec.AtMostOnce && !t.recreating && t.heldLost < maxHeldLost
		c.release(t)
		switch {
		case t.cancel:
			c.finish(t, Outcome{Kind: Cancelled, Message: "cancelled"})
		case staging:
			c.makeReady(t) // it never started: no retry spent
		case freeHeld:
			t.heldLost++
			c.makeReady(t) // most likely it never started: no retry spent, a few times
		default:
			c.retryOrFinish(t, reason, true)
		}
	}
	held := make([]FileID, 0, len(w.holds))
	for f := range w.holds {
		held = append(held, f)
	}
	sort.Slice(held, func(i, j int) bool { return held[i] < held[j] })
	for _, f := range held {
		if e := c.files.files[f]; e != nil {
			c.dropReplica(w, e)
		}
	}
	c.retryBlocked()
}

// unstage queues again the tasks staging on draining worker w: it takes no
// new task, and they have not started.
func (c *Core) unstage(w *worker) {
	var staging []*task
	for _, t := range w.running {
		if t.state == Staging {
			staging = append(staging, t)
		}
	}
	sort.Slice(staging, func(i, j int) bool { return staging[i].seq < staging[j].seq })
	for _, t := range staging {
		c.release(t)
		c.makeReady(t)
	}
}

// rejection is a task of a batch whose outputs could not be claimed.
type rejection struct {
	i   int // its index in the batch
	err error
}

func (c *Core) submit(batch []Task) {
	// Register every output first, so that order within the batch does not matter.
	accepted := make([]bool, len(batch))
	orderings := false
	var rejected []rejection
	for i := range batch {
		spec := &batch[i]
		if _, dup := c.tasks[spec.ID]; dup {
			continue // a duplicate submission changes nothing
		}
		if err := c.files.claim(spec.ID, spec.Outputs); err != nil {
			rejected = append(rejected, rejection{i, err})
			continue
		}
		accepted[i] = true
		c.keepOutputs(spec)
		orderings = orderings || len(spec.After) > 0
		c.seq++
		t := &task{spec: *spec, seq: c.seq, index: -1}
		t.shape = c.shapeOf(t)
		c.tasks[spec.ID] = t
	}
	// Now that every output of the batch is claimed, classify and count.
	for _, r := range rejected {
		spec := &batch[r.i]
		k := c.classOf(spec)
		c.counts[k][Finished]++
		c.emit(Done{Task: spec.ID, Dataflow: k == classDataflow, Outcome: Outcome{Kind: Failed, Message: r.err.Error()}})
	}
	for i := range batch {
		if accepted[i] {
			t := c.tasks[batch[i].ID]
			t.class = c.classOf(&t.spec)
			c.setState(t, Waiting)
		}
	}
	// A task that ends now must not have its inputs unlinked before the
	// tasks after it in the batch count as their readers.
	c.deferRetire = true
	defer func() {
		c.deferRetire = false
		c.retire(c.retiring)
		c.retiring = nil
	}()
	if !c.naive {
		c.formFamilies(batch, accepted)
	}
	var cyclic map[TaskID]bool
	if orderings {
		cyclic = c.afterCycles(batch, accepted)
	}
	for i := range batch {
		if !accepted[i] {
			continue
		}
		t := c.tasks[batch[i].ID]
		for _, f := range t.spec.Inputs {
			if e := c.files.files[f]; e != nil && e.producer != 0 {
				t.rank = branchRank
			}
		}
		missing, why := c.files.await(t)
		if why == "" && len(t.spec.After) > 0 {
			var after int32
			after, why = c.awaitAfter(t, batch, accepted, cyclic)
			missing += after
		}
		if why != "" {
			c.finish(t, Outcome{Kind: InputMissing, Message: why})
		} else if t.missing = missing; missing == 0 {
			c.makeReady(t)
		}
	}
}

// awaitAfter registers t, of batch, as a follower of each task its After
// names that has not succeeded yet, and returns how many it waits for, or
// a reason why it can never run.
func (c *Core) awaitAfter(t *task, batch []Task, accepted []bool, cyclic map[TaskID]bool) (missing int32, why string) {
	if cyclic[t.spec.ID] {
		return 0, fmt.Sprintf("task %d: its after orderings form a cycle within its batch", t.spec.ID)
	}
	for i, id := range t.spec.After {
		if slices.Contains(t.spec.After[:i], id) {
			continue
		}
		switch p := c.tasks[id]; {
		case p != nil && p.recreating, p == nil && c.retained[id] != nil:
			// It succeeded (and may run again to recreate files): satisfied.
		case p != nil && p.spec.Role == Instance:
			return 0, fmt.Sprintf("after task %d, which is not a task the client submitted", id)
		case p != nil:
			c.followers[id] = append(c.followers[id], t.spec.ID)
			missing++
		default:
			if i := slices.IndexFunc(batch, func(b Task) bool { return b.ID == id }); i >= 0 {
				// Of this batch, it has ended: its claim failed, or
				// (accepted) it can never run.
				kind := Failed
				if accepted[i] {
					kind = InputMissing
				}
				return 0, fmt.Sprintf("after task %d, which ended with %s", id, kind)
			}
			return 0, fmt.Sprintf("after task %d, which has ended and been forgotten, or was never submitted", id)
		}
	}
	return missing, ""
}

// afterCycles returns the accepted tasks of batch that are on a cycle of
// After orderings within the batch, or after one: they can never run.
func (c *Core) afterCycles(batch []Task, accepted []bool) map[TaskID]bool {
	in := make(map[TaskID]bool)
	for i := range batch {
		if accepted[i] {
			in[batch[i].ID] = true
		}
	}
	// Kahn's algorithm: what is left once every task with no ordering
	// pending is removed lies on or behind a cycle.
	pending := make(map[TaskID]int)
	followers := make(map[TaskID][]TaskID)
	var free []TaskID
	for i := range batch {
		if !accepted[i] {
			continue
		}
		id := batch[i].ID
		for j, a := range batch[i].After {
			if in[a] && !slices.Contains(batch[i].After[:j], a) {
				pending[id]++
				followers[a] = append(followers[a], id)
			}
		}
		if pending[id] == 0 {
			free = append(free, id)
		}
	}
	for len(free) > 0 {
		id := free[len(free)-1]
		free = free[:len(free)-1]
		delete(in, id)
		for _, f := range followers[id] {
			if pending[f]--; pending[f] == 0 {
				free = append(free, f)
			}
		}
	}
	if len(in) == 0 {
		return nil
	}
	return in
}

func (c *Core) current(id TaskID, attempt uint32, wid WorkerID) *task {
	t := c.tasks[id]
	if t == nil || t.state != Running || t.attempt != attempt || t.worker.id != wid {
		c.emit(StaleResult{Task: id, Attempt: attempt, Worker: wid})
		return nil
	}
	return t
}

// Accepts reports whether a success of attempt of task, reported now by
// worker w, would end the task as a success: the attempt runs there, and
// the task was neither cancelled nor finished before (one that runs again
// to recreate lost files keeps its first result). It changes nothing. The shell asks before it
// commits a report's outputs to its store, so that it commits only those
// of an attempt that counts, and reports a commit that fails as the
// attempt's failure: the core never accepts a success the store lacks.
func (c *Core) Accepts(task TaskID, attempt uint32, w WorkerID) bool {
	t := c.tasks[task]
	return t != nil && t.state == Running && t.attempt == attempt && t.worker.id == w && !t.cancel && !t.recreating && t.spec.Role != Instance
}

func (c *Core) taskFinished(ev TaskFinished) {
	t := c.current(ev.Task, ev.Attempt, ev.Worker)
	if t == nil {
		return
	}
	w := t.worker
	if t.spec.Role == Instance {
		c.instanceEnded(t.inst, ev.Outcome, !t.inst.ready)
		return
	}
	if t.isAhead() && ev.Outcome.Kind != Cancelled {
		// Held ahead, it started and ended before the end that started
		// it reached the core (reports cross); one cancelled held never
		// started.
		c.emit(Started{Task: t.spec.ID, Attempt: t.attempt, Worker: w.id})
	}
	c.release(t)
	if t.spec.Role == Call {
		c.callDone(t)
	}
	// Tasks that become ready now (t itself, or its consumers) must not take
	// what t freed on w before the tasks queued for it, which may rank
	// higher: keep w closed until they are queued, then fill it by priority.
	open := w.index >= 0
	if open {
		c.open.remove(w)
	}
	switch {
	case t.cancel:
		c.finish(t, Outcome{Kind: Cancelled, ExitCode: ev.Outcome.ExitCode, Message: "cancelled"})
	case ev.Outcome.Kind == Success:
		c.recordOutputs(t, w, ev.Outputs)
		c.finish(t, ev.Outcome)
	case t.spec.AtMostOnce && ev.Outcome.Kind != InputMissing && ev.Outcome.Kind != WorkerLost && ev.Outcome.Kind != Cancelled:
		c.finish(t, ev.Outcome) // it ran: never again
	case ev.Outcome.Kind == InputMissing || ev.Outcome.Kind == WorkerLost || ev.Outcome.Kind == Cancelled:
		// Not the command's fault: the worker could not fetch an input or gave up.
		c.retryOrFinish(t, ev.Outcome, true)
	default:
		c.retryOrFinish(t, ev.Outcome, t.spec.RetryOnError)
	}
	if open {
		c.open.push(w)
		c.fill(w)
	}
}

func (c *Core) taskReturned(ev TaskReturned) {
	t := c.current(ev.Task, ev.Attempt, ev.Worker)
	if t == nil {
		return
	}
	w := t.worker
	thief, revoked := c.revokes[t]
	c.release(t)
	switch {
	case t.cancel:
		c.finish(t, Outcome{Kind: Cancelled, Message: "cancelled"})
	case revoked && !ev.CacheFull:
		c.revoked(t, thief)
	case t.spec.AtMostOnce:
		c.toUnknown(t, fmt.Sprintf("attempt %d was handed back by worker %d, maybe after it ran", t.attempt, ev.Worker))
	case ev.CacheFull:
		c.cacheFull(t, ev)
	default:
		c.emit(Requeued{Task: t.spec.ID, Attempt: t.attempt, Reason: Outcome{Kind: WorkerLost, Message: fmt.Sprintf("returned unfinished by worker %d", ev.Worker)}})
		c.makeReady(t)
	}
	if w.index >= 0 {
		c.fill(w) // a worker that is not draining offers what it freed
	}
}

func (c *Core) cancelTask(id TaskID) {
	t := c.tasks[id]
	if t == nil || t.recreating {
		return // finished: the client had its Done (a re-run serves other tasks)
	}
	switch t.state {
	case Waiting:
		delete(c.adrift, id) // (an attempt adrift that comes back is killed)
		delete(c.unknown, id)
		c.finish(t, Outcome{Kind: Cancelled, Message: "cancelled before it ran"})
	case Ready:
		c.unqueue(t)
		c.finish(t, Outcome{Kind: Cancelled, Message: "cancelled before it ran"})
	case Staging:
		c.release(t)
		c.finish(t, Outcome{Kind: Cancelled, Message: "cancelled before it ran"})
	case Running:
		if !t.cancel {
			t.cancel = true
			c.emit(Kill{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id})
		}
	}
}

// retryOrFinish queues t again if why may be retried and t has retries
// left, or finishes it with why.
func (c *Core) retryOrFinish(t *task, why Outcome, retryable bool) {
	if t.spec.AtMostOnce && why.Kind != InputMissing && t.attempt > 0 {
		// It may have taken effect: never dispatched again by itself.
		if retryable {
			c.toUnknown(t, fmt.Sprintf("attempt %d: %s: %s", t.attempt, why.Kind, why.Message))
		} else {
			c.finish(t, why)
		}
		return
	}
	if retryable && t.failures < t.spec.Retries {
		t.failures++
		c.emit(Requeued{Task: t.spec.ID, Attempt: t.attempt, Reason: why})
		c.makeReady(t)
		return
	}
	if retryable && t.spec.Retries > 0 {
		why.Message = fmt.Sprintf("%s (after %d attempts)", why.Message, t.attempt)
	}
	c.finish(t, why)
}

// recordOutputs notes where t's outputs are: replicas on w, copies at the
// manager. An output the report leaves out is at the manager, inline.
func (c *Core) recordOutputs(t *task, w *worker, outs []OutputInfo) {
	for _, f := range t.spec.Outputs {
		e := c.files.files[f]
		if e == nil {
			continue
		}
		reported := false
		for _, o := range outs {
			if o.File != f {
				continue
			}
			reported = true
			if o.Size > 0 {
				e.size = o.Size
				if o.Kept {
					c.outBytes, c.outFiles = c.outBytes+o.Size, c.outFiles+1
				}
			}
			if o.Manager {
				if !e.manager && e.ckpt == KeepCheckpointSync {
					c.committed++ // checkpointed with the report
				}
				e.manager, e.inline = true, o.Inline
			}
			if o.Kept {
				c.addReplica(w, e, copyKept)
			}
		}
		if !reported { // small: the caller sends it inline
			e.manager, e.inline = true, true
		}
	}
}

// finish ends t for good, and settles the files it was to produce: consumers
// are released on success and fail otherwise, transitively. A task that ran
// again to recreate lost files ends with Recreated (or FileLost) instead of
// a second Done.
func (c *Core) finish(t *task, o Outcome) {
	// Most calls end one task: the first of each list lives on the stack.
	var tbuf [1]*task
	var obuf [1]Outcome
	pending := append(tbuf[:0], t)
	outcomes := append(obuf[:0], o)
	var unread []*fileEntry // inputs no unfinished task reads now
	for len(pending) > 0 {
		t, o := pending[0], outcomes[0]
		pending, outcomes = pending[1:], outcomes[1:]
		if t.state == Finished {
			continue // reached twice: a consumer of two failed files
		}
		if t.spec.Role == Instance {
			c.instanceEnded(t.inst, o, true) // an instance has no Done: it never started
			continue
		}
		if t.spec.Role == Call {
			c.callDone(t)
		}
		wid := t.ranOn // not where it was staging, if it never ran there
		if t.recreating {
			c.counts[t.class][t.state]-- // Finished counted it the first time
			t.shape.by[t.spec.Role][t.state]--
			t.state = Finished
		} else {
			c.setState(t, Finished)
		}
		delete(c.tasks, t.spec.ID)
		if len(c.famOf) > 0 {
			delete(c.famOf, t.spec.ID)
		}
		c.unstick(t)
		if len(c.spaceTold) > 0 {
			delete(c.spaceTold, t.spec.ID)
		}
		if len(t.spec.Inputs) > 0 {
			unread = append(unread, c.files.release(t)...)
		}
		retained := o.Kind == Success && c.keepsLineage(t)
		switch {
		case t.recreating && o.Kind == Success:
			c.emit(Recreated{Task: t.spec.ID, Attempt: t.attempt, Worker: wid})
		case !t.recreating:
			if w := t.worker; w != nil && w.id == wid {
				w.done++ // (one gone meanwhile counts where nobody reads)
			} else if w := c.workers[wid]; w != nil {
				w.done++
			}
			c.emit(Done{Task: t.spec.ID, Attempt: t.attempt, Worker: wid, Outcome: o, Retained: retained, Dataflow: t.class == classDataflow})
		}
		switch {
		case retained:
			t.recreating = false
			c.retained[t.spec.ID] = t
		case t.recreating:
			c.emit(Forget{Task: t.spec.ID}) // its Done said Retained
		}
		if o.Kind == Success {
			c.produced(t.spec.Outputs)
			for _, f := range t.spec.Outputs {
				if e := c.files.files[f]; e != nil {
					if w := t.worker; w != nil && c.workers[w.id] == w && e.holds(w.id) {
						c.satisfy(w, e) // tasks staging there may have waited for it
					}
					c.replicate(e)
				}
			}
			c.checkpointOutputs(t)
			if len(c.followers) > 0 { // most tasks have none: skip the lookup
				if followers, ok := c.followers[t.spec.ID]; ok {
					delete(c.followers, t.spec.ID)
					for _, id := range followers {
						if w := c.tasks[id]; w != nil && w.state == Waiting {
							if w.missing--; w.missing == 0 {
								c.makeReady(w)
							}
						}
					}
				}
			}
			continue
		}
		why := fmt.Sprintf("input produced by task %d is missing: that task ended with %s", t.spec.ID, o.Kind)
		failed := t.spec.Outputs
		if t.recreating {
			why = fmt.Sprintf("input produced by task %d was lost, and running that task again ended with %s: %s", t.spec.ID, o.Kind, o.Message)
			// Only the outputs with no copy left are lost; the others
			// stay available (those it was also recreating are had again).
			failed = nil
			for _, f := range t.spec.Outputs {
				e := c.files.files[f]
				if e != nil && (len(e.replicas) > 0 || e.manager) {
					c.produced([]FileID{f})
					continue
				}
				failed = append(failed, f)
				c.lost++
				c.emit(FileLost{File: f, Why: why})
			}
		}
		for _, id := range c.files.failed(failed, why) {
			if w := c.tasks[id]; w != nil && w.state == Waiting {
				pending = append(pending, w)
				outcomes = append(outcomes, Outcome{Kind: InputMissing, Message: why})
			}
		}
		for _, id := range c.followers[t.spec.ID] {
			if w := c.tasks[id]; w != nil && w.state == Waiting {
				pending = append(pending, w)
				outcomes = append(outcomes, Outcome{Kind: InputMissing, Message: fmt.Sprintf("after task %d, which ended with %s", t.spec.ID, o.Kind)})
			}
		}
		delete(c.followers, t.spec.ID)
	}
	if len(unread) > 0 {
		c.retire(unread) // after the Done, Recreated and FileLost of what ended
	}
}

// keepsLineage reports whether t produced a file that lives only in
// workers, so that it may have to run again.
func (c *Core) keepsLineage(t *task) bool {
	for _, f := range t.spec.Outputs {
		if e := c.files.files[f]; e != nil && !e.manager {
			return true
		}
	}
	return false
}
