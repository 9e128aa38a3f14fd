package coretest

// The model: what the simulation knows of every task and worker, rebuilt
// from the core's actions alone, and the invariants checked against it.

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"trellis/internal/core"
)

// simTask is the model of one task, built from the actions.
type simTask struct {
	spec      core.Task
	submitted bool
	rejected  bool // claimed a claimed file: Done Failed at submission
	selfRead  bool // reads its own output
	attempt   uint32
	worker    *simWorker    // where it runs now, or nil
	last      core.WorkerID // where the last attempt ran, 0 if none
	gpus      []int32
	runPos    int   // in sim.running, or -1
	counted   int32 // requeues that counted against Retries
	cancelled bool  // a CancelTask reached it while it was live
	killed    bool  // a Kill was sent for the current attempt
	done      bool
	doneKind  core.Kind

	deps       []core.FileID // inputs, and the files unpacked inputs come from
	rerunning  bool          // Rerun: it runs again to recreate a lost output
	dataflow   bool          // the model's class for it (see classify)
	parked     bool          // handed back for a full cache: it waits for space, not for a worker
	doneMsg    string
	doneStep   int
	submitStep int

	inst      *simInst   // a call: the instance it runs in now, or nil
	libBroken bool       // a call that failed as its library is broken, or not installed
	forgotten bool       // Forget: the core will never run it again
	followers []*simTask // accepted tasks whose After names it

	stuck      string        // why no open worker could run it, as the core told; "" if not told
	stuckSince time.Duration // the first Tick after it was told, or -1 before it
	timedOut   bool          // a Tick ended it, unplaceable past its UnplaceableTimeout

	// At-most-once tasks: unknown after an attempt was lost, until a
	// Reconcile; mayRun counts the dispatches the rule still allows (one,
	// and one more after each reconcile to rerun and each attempt that
	// failed for an input before its command started).
	unknown bool
	mayRun  int

	held     bool // dispatched ahead and held on its worker, not started (ahead.go)
	heldLost int  // times lost with its worker while held: requeued with no retry spent
	ahead    bool // its current attempt was dispatched ahead
	startedN int  // Started actions for its current attempt: at most one, and only if ahead
}

// simWorker is the model of one worker.
type simWorker struct {
	id       core.WorkerID
	total    core.Resources
	devices  []int32
	used     core.Resources
	gpuUsed  map[int32]core.TaskID
	running  map[core.TaskID]*simTask
	draining bool
	gone     bool
	livePos  int     // in sim.live
	holds    fileSet // files it really holds (data runs)
	// loose: files the core released (Release) and no Fetch held again
	// since: the only ones its cache may evict (Config.BoundedCaches).
	loose    fileSet
	evicted  fileSet // evicted and not reported yet: the core learns it before the worker's next report
	fetched  fileSet // of holds, those fetched (not outputs): what BoundedCaches bounds
	reserved int64   // bytes reserved by the fetches to it in flight (Config.BoundedCaches)
	insts    map[core.InstanceID]*simInst
	held     []*simTask // dispatched ahead, not started, in order (ahead.go)
	ahead    bool       // it holds tasks dispatched ahead (WorkerJoined.HoldsAhead)
}

type fileInfo struct {
	producer  *simTask // the task whose claim the core accepted
	consumers []*simTask
}

// fate is how an attempt or a never-run task must end in the current step.
type fate struct {
	requeue bool      // Requeued, else Done with kind
	kind    core.Kind // for Done
	counted bool      // a Requeued that counts against Retries
	seen    bool
	// A task that runs again (Rerun) has no second Done: it ends with
	// Recreated on success, and with a FileLost of its outputs otherwise.
	recreated bool
	lost      bool
	// unplaceable: ended by a Tick, past its UnplaceableTimeout; an input
	// lost for good meanwhile (perhaps by the same Tick) ends it with
	// InputMissing instead.
	unplaceable bool
	// unknown: an at-most-once task's attempt is lost: Unknown, not
	// Requeued. safe: a requeue of an attempt whose command never
	// started (its input was missing). reconciled: a Reconcile to rerun.
	unknown, safe, reconciled bool
}

func (s *sim) task(id core.TaskID) *simTask {
	if id == 0 || int(id) > len(s.tasks) {
		return nil
	}
	return s.tasks[id-1]
}

func equalActions(a, b []core.Action) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if fmt.Sprintf("%#v", a[i]) != fmt.Sprintf("%#v", b[i]) {
			return false
		}
	}
	return true
}

// expect records, before the step, how the model says ev must play out.
func (s *sim) expect(ev core.Event) {
	if s.expectLib(ev) {
		return
	}
	switch ev := ev.(type) {
	case core.WorkerJoined:
		if s.workers[ev.Worker] != nil {
			s.exact = true // a second join changes nothing
			return
		}
		w := &simWorker{
			id:      ev.Worker,
			total:   ev.Resources,
			devices: slices.Clone(ev.GPUs),
			gpuUsed: make(map[int32]core.TaskID),
			running: make(map[core.TaskID]*simTask),
			insts:   make(map[core.InstanceID]*simInst),
			livePos: len(s.live),
			ahead:   ev.HoldsAhead,
		}
		s.workers[w.id] = w
		s.live = append(s.live, w)
		s.open++
		s.stats.WorkersJoined++
		for _, cf := range ev.Cached {
			s.hold(w, cf.File)
			w.fetched.add(cf.File)
			w.loose.add(cf.File) // released from the start: the core claims it before use
		}
	case core.WorkerDraining:
		// Tasks staging there go back to the queue, and may be placed at
		// once: only without data does a drain change nothing.
		s.exact = !s.cfg.dataOn()
		if w := s.workers[ev.Worker]; w != nil && !w.draining {
			w.draining = true
			s.open--
			s.stats.WorkersDrained++
			if len(w.running) == 0 {
				s.leaving = append(s.leaving, w)
			}
		}
	case core.WorkerLeft:
		w := s.workers[ev.Worker]
		if w == nil {
			s.exact = true
			return
		}
		for _, id := range slices.Sorted(maps.Keys(w.running)) { // in order: expectLost may reorder s.running
			s.expectLost(w.running[id])
		}
		for _, id := range slices.Sorted(maps.Keys(w.insts)) { // in order: endInst reorders s.l.live
			s.endInst(w.insts[id]) // not a start failure, and its calls are lost with the worker
		}
		s.workerGone(w)
		w.gone = true
		delete(s.workers, w.id)
		last := s.live[len(s.live)-1]
		s.live[w.livePos], last.livePos = last, w.livePos
		s.live = s.live[:len(s.live)-1]
		if !w.draining {
			s.open--
		}
	case core.TasksSubmitted:
		s.expectSubmit(ev.Tasks)
	case core.TaskFinished:
		t := s.current(ev.Task, ev.Attempt, ev.Worker)
		if t == nil {
			return
		}
		o := ev.Outcome.Kind
		switch {
		case t.cancelled:
			s.fates[t.spec.ID] = &fate{kind: core.Cancelled}
		case o == core.Success && t.rerunning:
			s.fates[t.spec.ID] = &fate{recreated: true}
		case o == core.Success:
			s.fates[t.spec.ID] = &fate{kind: core.Success}
		default:
			retryable := t.spec.RetryOnError && !t.spec.AtMostOnce || o == core.InputMissing || o == core.WorkerLost || o == core.Cancelled
			s.expectRetry(t, o, retryable)
			if f := s.fates[t.spec.ID]; o == core.InputMissing && f.requeue {
				f.safe = true
			}
		}
	case core.TaskReturned:
		t := s.current(ev.Task, ev.Attempt, ev.Worker)
		if t == nil {
			return
		}
		switch {
		case t.cancelled:
			s.fates[t.spec.ID] = &fate{kind: core.Cancelled}
		case t.spec.AtMostOnce:
			s.fates[t.spec.ID] = &fate{unknown: true}
		default:
			s.fates[t.spec.ID] = &fate{requeue: true}
			t.parked = ev.CacheFull
		}
	case core.CancelTask:
		t := s.task(ev.Task)
		if t == nil || !t.submitted || t.done {
			s.exact = true
			return
		}
		switch {
		case t.worker == nil:
			s.fates[t.spec.ID] = &fate{kind: core.Cancelled}
		case t.cancelled:
			s.exact = true
		default:
			s.exact = true
			s.want = append(s.want, core.Kill{Task: t.spec.ID, Attempt: t.attempt, Worker: t.worker.id})
		}
		t.cancelled = true
	case core.Tick:
		s.expectTick(ev.Now)
	case core.Reconcile:
		t := s.task(ev.Task)
		if t == nil || !t.unknown || t.done {
			s.exact = true
			return
		}
		t.unknown = false
		switch ev.Verdict {
		case core.VerdictDone:
			s.fates[t.spec.ID] = &fate{kind: core.Success}
			if len(t.spec.Outputs) > 0 {
				s.fates[t.spec.ID].kind = core.Failed
			}
		case core.VerdictFailed:
			s.fates[t.spec.ID] = &fate{kind: core.Failed}
		default:
			s.fates[t.spec.ID] = &fate{requeue: true, reconciled: true}
		}
	case core.FilesDeclared:
		s.exact = true // declaring changes what comes, not what is
	case core.TransferDone:
		s.exact = s.d.cur == nil // a transfer the core no longer knows
	case core.FilesDropped:
		s.exact = s.d.noop || s.workers[ev.Worker] == nil
	case core.SessionEnded: // Unlinks, checked as they come
	case core.CheckpointCommitted, core.CheckpointFailed: // checked in answerCheckpoint
	case core.LeaseRequested, core.LeaseReleased, core.DirectCallEnded, core.DirectCallsCounted:
		s.expectLease(ev)
	default:
		s.failf("unknown event %T", ev)
	}
}

// current returns the running task that a report names, or nil after
// setting up the StaleResult the core must answer with.
func (s *sim) current(id core.TaskID, attempt uint32, wid core.WorkerID) *simTask {
	t := s.task(id)
	if t == nil || t.worker == nil || t.attempt != attempt || t.worker.id != wid {
		s.exact = true
		s.want = append(s.want, core.StaleResult{Task: id, Attempt: attempt, Worker: wid})
		return nil
	}
	return t
}

func (s *sim) expectLost(t *simTask) {
	if t.cancelled {
		s.fates[t.spec.ID] = &fate{kind: core.Cancelled}
		return
	}
	if t.held && !t.spec.AtMostOnce && !t.rerunning && t.heldLost < maxHeldLost {
		// Held ahead and not started: back to the queue with no action
		// and no retry spent, up to maxHeldLost times.
		t.heldLost++
		s.release(t)
		return
	}
	s.expectRetry(t, core.WorkerLost, true)
}

// maxHeldLost is the core's bound on held tasks lost with their worker
// without spending a retry (core.maxHeldLost).
const maxHeldLost = 3

func (s *sim) expectRetry(t *simTask, k core.Kind, retryable bool) {
	if t.spec.AtMostOnce && k != core.InputMissing && !t.rerunning {
		// It may have taken effect: never run again by itself.
		if retryable {
			s.fates[t.spec.ID] = &fate{unknown: true}
		} else {
			s.fates[t.spec.ID] = &fate{kind: k}
		}
		return
	}
	if retryable && t.counted < t.spec.Retries {
		s.fates[t.spec.ID] = &fate{requeue: true, counted: true}
		return
	}
	if t.rerunning && s.allAvailable(t.spec.Outputs) {
		// Its outputs have copies again: the run ends with no action, and
		// frees the worker for what the step places there.
		s.fates[t.spec.ID] = &fate{kind: k, lost: true, seen: true}
		s.release(t)
		s.setRerunning(t, false)
		return
	}
	s.fates[t.spec.ID] = &fate{kind: k, lost: t.rerunning}
}

func (s *sim) expectSubmit(batch []core.Task) {
	accepted := make([]*simTask, 0, len(batch))
	fresh := 0
	for _, spec := range batch {
		t := s.task(spec.ID)
		if t.submitted {
			if !t.done && !t.rejected {
				continue // a live task again: ignored
			}
			s.failf("harness resubmitted finished task %d", spec.ID)
		}
		fresh++
		t.submitted = true
		t.submitStep = s.step
		for _, f := range spec.Outputs {
			if s.files[f] != nil {
				t.rejected = true
			}
		}
		if t.rejected {
			s.fates[t.spec.ID] = &fate{kind: core.Failed}
			s.mustFinish = append(s.mustFinish, t)
			continue
		}
		for _, f := range spec.Outputs {
			s.files[f] = &fileInfo{producer: t}
		}
		s.liveTasks++
		accepted = append(accepted, t)
	}
	if fresh == 0 {
		s.exact = true // only live tasks again: nothing happens
	}
	for _, spec := range batch {
		if t := s.task(spec.ID); t.submitStep == s.step && !t.done {
			s.classify(t)
		}
	}
	for _, t := range accepted {
		for _, f := range t.deps {
			fi := s.files[f]
			if fi == nil {
				continue // external, or a URL
			}
			fi.consumers = append(fi.consumers, t)
			if fi.producer == t || (fi.producer.done && fi.producer.doneKind != core.Success) {
				s.mustFinish = append(s.mustFinish, t)
			}
			if df := s.d.decl[f]; df != nil && len(df.lost) > 0 {
				s.mustFinish = append(s.mustFinish, t)
			}
		}
		for _, id := range t.spec.After {
			p := s.task(id)
			p.followers = append(p.followers, t)
			if p.rejected || p.done && p.doneKind != core.Success {
				s.mustFinish = append(s.mustFinish, t)
			}
		}
		if s.callFailsAtOnce(t) {
			s.mustFinish = append(s.mustFinish, t)
		}
	}
}

// apply checks one action against the model and applies it.
func (s *sim) apply(a core.Action) {
	switch a := a.(type) {
	case core.Dispatch:
		if t := s.task(a.Task); t != nil {
			t.parked = false
		}
		s.applyDispatch(a)
	case core.Started:
		// Its worker started it (or starts it after this step: startHeld)
		// as the resources of a task that ended there freed.
		t := s.task(a.Task)
		if t == nil || t.worker == nil || t.worker.id != a.Worker || t.attempt != a.Attempt || !t.ahead {
			s.failf("Started %+v of an attempt not dispatched ahead there", a)
		}
		if t.startedN++; t.startedN > 1 {
			s.failf("Started %+v again: the attempt started once already", a)
		}
	case core.Kill:
		t := s.task(a.Task)
		if t == nil || t.worker == nil || t.attempt != a.Attempt || t.worker.id != a.Worker {
			s.failf("Kill %+v of an attempt that is not running", a)
		}
		if !t.cancelled || t.killed {
			s.failf("Kill %+v: cancelled=%v, killed before=%v", a, t.cancelled, t.killed)
		}
		t.killed = true
		s.stats.Kills++
		if t.held {
			s.heldKills = append(s.heldKills, attemptRef{t.spec.ID, t.attempt, t.worker.id})
		}
	case core.Revoke:
		s.checkRevoke(a)
	case core.Requeued:
		t := s.task(a.Task)
		if t != nil && t.worker == nil && t.attempt == a.Attempt && (!t.done || t.rerunning) && a.Reason.Kind == core.ResourceExceeded && s.cfg.BoundedCaches {
			// Its inputs do not fit in the cache of the worker it was
			// placed on, or a fetch for it found the cache full: it waits
			// for space, not counted.
			t.parked = true
			s.stats.Requeues++
			return
		}
		if t != nil && t.worker == nil && t.attempt == a.Attempt && s.fetchFailedFor(t) && (!t.done || t.rerunning) && s.cacheFull() && a.Reason.Kind == core.ResourceExceeded {
			// The input did not fit in the worker's cache: the task
			// waits for space, not counted.
			t.parked = true
			s.stats.Requeues++
			return
		}
		if t != nil && t.worker == nil && t.attempt == a.Attempt && s.fetchFailedFor(t) && (!t.done || t.rerunning) {
			// A task staging on the worker gives up on the input: it is
			// queued again, and that counts against its retries.
			if t.counted >= t.spec.Retries {
				s.failf("Requeued %+v after a failed fetch: no retries left (%d)", a, t.spec.Retries)
			}
			t.counted++
			s.stats.Requeues++
			return
		}
		if f := s.fates[a.Task]; f != nil && f.reconciled && !f.seen && t.worker == nil && t.attempt == a.Attempt {
			f.seen = true
			t.mayRun++ // the operator said it did not take effect
			s.stats.Requeues++
			return
		}
		if t == nil || t.worker == nil || t.attempt != a.Attempt {
			s.failf("Requeued %+v of an attempt that is not running", a)
		}
		f := s.fates[t.spec.ID]
		if f == nil || !f.requeue || f.seen {
			s.failf("Requeued %+v: the model expects %+v", a, f)
		}
		f.seen = true
		if f.counted {
			t.counted++
		}
		if f.safe {
			t.mayRun++ // its command never started
		}
		s.release(t)
		s.stats.Requeues++
	case core.Unknown:
		t := s.task(a.Task)
		if t == nil || t.worker == nil || t.attempt != a.Attempt || !t.spec.AtMostOnce {
			s.failf("%+v of an attempt that is not running, or of a task that is not at-most-once", a)
		}
		f := s.fates[t.spec.ID]
		if f == nil || !f.unknown || f.seen {
			s.failf("%+v: the model expects %+v", a, f)
		}
		f.seen = true
		s.release(t)
		t.unknown = true
		s.unknown = append(s.unknown, t)
		s.stats.Unknown++
	case core.Done:
		s.applyDone(a)
	case core.StaleResult:
		if !s.exact {
			s.failf("unexpected %+v", a)
		}
		s.stats.StaleResults++
	case core.Fetch:
		s.applyFetch(a)
	case core.Stop:
		s.applyStop(a)
	case core.LibraryBroken:
		s.applyBroken(a)
	case core.Rerun:
		s.applyRerun(a)
	case core.Recreated:
		s.applyRecreated(a)
	case core.FileLost:
		s.applyFileLost(a)
	case core.Forget:
		s.applyForget(a)
	case core.Unlink:
		s.applyUnlink(a)
	case core.Release:
		s.applyRelease(a)
	case core.Unplaceable:
		s.applyUnplaceable(a, s.prev)
	case core.Checkpoint:
		s.applyCheckpoint(a)
	case core.Barred:
		s.applyBarred(a)
	case core.LeaseGranted, core.LeaseRefused, core.LeaseEnded:
		s.applyLease(a)
	default:
		s.failf("unknown action %T", a)
	}
}

func (s *sim) applyDispatch(a core.Dispatch) {
	if a.Lib != 0 {
		w := s.workers[a.Worker]
		switch {
		case w == nil:
			s.failf("Dispatch %+v to an unknown or departed worker", a)
		case w.draining:
			s.failf("Dispatch %+v to a draining worker", a)
		}
		s.applyStart(a, w)
		return
	}
	t := s.task(a.Task)
	if t != nil {
		s.checkKeep(a, t)
		s.ckptDispatch(a, t)
	}
	switch {
	case t == nil || !t.submitted:
		s.failf("Dispatch %+v of a task never submitted", a)
	case t.rejected || t.done && !t.rerunning:
		s.failf("Dispatch %+v of a task that has its Done (%s)", a, t.doneKind)
	case t.worker != nil:
		s.failf("Dispatch %+v of a task running as attempt %d on worker %d", a, t.attempt, t.worker.id)
	case t.cancelled:
		s.failf("Dispatch %+v of a cancelled task", a)
	case a.Attempt <= t.attempt:
		s.failf("Dispatch %+v: attempt not above the last one, %d", a, t.attempt)
	case t.unknown:
		s.failf("Dispatch %+v of an at-most-once task in unknown, before a Reconcile", a)
	case t.spec.AtMostOnce && t.mayRun <= 0:
		s.failf("Dispatch %+v: an at-most-once task dispatched again (its last attempt %d may have taken effect)", a, t.attempt)
	}
	if t.spec.AtMostOnce {
		t.mayRun--
	}
	w := s.workers[a.Worker]
	switch {
	case w == nil:
		s.failf("Dispatch %+v to an unknown or departed worker", a)
	case w.draining:
		s.failf("Dispatch %+v to a draining worker", a)
	}
	for _, f := range t.deps {
		fi := s.files[f]
		if fi == nil {
			continue
		}
		if p := fi.producer; p == t || !p.done || p.doneKind != core.Success {
			s.failf("Dispatch %+v before input %d is ready: producer %d done=%v kind=%s", a, f, p.spec.ID, p.done, p.doneKind)
		}
	}
	for _, id := range t.spec.After {
		if p := s.task(id); !p.done || p.doneKind != core.Success {
			s.failf("Dispatch %+v before task %d it runs after succeeded: done=%v kind=%s", a, id, p.done, p.doneKind)
		}
	}
	if s.cfg.dataOn() {
		s.checkInputsOn(a, t.spec.Inputs, w)
	}
	var need core.Resources // a call's are its instance's
	if t.spec.Role == core.Call {
		s.checkCallDispatch(a, t)
	} else {
		if a.Instance != 0 {
			s.failf("Dispatch %+v of a task that is not a call, to an instance", a)
		}
		need = t.spec.Resources
		if a.Ahead {
			s.checkAhead(a, t, w)
		} else if used := w.used.Add(need); !w.total.Fits(used) {
			s.failf("Dispatch %+v over-commits worker %d: %v in use of %v", a, w.id, used, w.total)
		}
		s.takeGPUs(a, w, need.GPUs)
	}
	s.unstick(t)
	t.attempt = a.Attempt
	t.worker = w
	t.last = w.id
	t.killed = false
	t.gpus = slices.Clone(a.GPUs)
	t.ahead, t.startedN = a.Ahead, 0
	w.running[t.spec.ID] = t
	if a.Ahead {
		t.held = true
		w.held = append(w.held, t)
		s.heldN++
		s.stats.Held++
	} else {
		w.used = w.used.Add(need)
		t.runPos = len(s.running)
		s.running = append(s.running, t)
	}
	if t.dataflow {
		s.flow.running++
	}
	s.stats.Dispatches++
}

// takeGPUs checks that Dispatch a names n free GPUs of w, and takes them.
func (s *sim) takeGPUs(a core.Dispatch, w *simWorker, n int64) {
	if int64(len(a.GPUs)) != n {
		s.failf("Dispatch %+v names %d GPUs, the task needs %d", a, len(a.GPUs), n)
	}
	for _, g := range a.GPUs {
		if !slices.Contains(w.devices, g) {
			s.failf("Dispatch %+v: worker %d has no GPU %d (it has %v)", a, w.id, g, w.devices)
		}
		if other, busy := w.gpuUsed[g]; busy {
			s.failf("Dispatch %+v: GPU %d of worker %d is in use by task %d", a, g, w.id, other)
		}
		w.gpuUsed[g] = a.Task
	}
}

func (s *sim) applyDone(a core.Done) {
	t := s.task(a.Task)
	switch {
	case t == nil || !t.submitted:
		s.failf("Done %+v of a task never submitted", a)
	case t.done:
		s.failf("second Done %+v; the first was %s", a, t.doneKind)
	case a.Attempt != t.attempt:
		s.failf("Done %+v: the last attempt is %d", a, t.attempt)
	case a.Worker != t.last:
		s.failf("Done %+v: the last attempt ran on worker %d", a, t.last)
	case t.cancelled && a.Outcome.Kind != core.Cancelled:
		s.failf("Done %+v of a cancelled task", a)
	}
	f := s.fates[t.spec.ID]
	switch {
	case f != nil && f.requeue && f.seen && (s.brokenDone(t, a) || a.Outcome.Kind == core.InputMissing && s.inputFailed(t)):
		// Requeued, and then it can never run: its library broke since
		// (a call), or its input was lost for good with the same worker.
	case f != nil && f.unplaceable && !f.seen && a.Outcome.Kind == core.InputMissing && s.failedWith(t, a.Outcome.Message):
		f.seen = true
	case f != nil:
		if f.requeue || f.seen || f.kind != a.Outcome.Kind {
			s.failf("Done %+v: the model expects %+v", a, f)
		}
		f.seen = true
	case t.worker != nil:
		s.failf("Done %+v ends a running attempt the event does not concern", a)
	case s.brokenDone(t, a):
		// A call of a broken library.
	case a.Outcome.Kind == core.ResourceExceeded && (s.cacheFull() && s.fetchFailedFor(t) || s.cfg.BoundedCaches && t.parked):
		// An input no worker's cache could hold, besides the files kept for the session.
	case a.Outcome.Kind != core.InputMissing:
		s.failf("Done %+v of a task that was not running", a)
	case a.Outcome.Message == "":
		s.failf("Done %+v without a reason", a)
	case s.inputFailed(t):
	case !s.fetchFailedFor(t):
		s.failf("Done %+v, but no input of the task failed", a)
	case t.counted < t.spec.Retries:
		s.failf("Done %+v after a failed fetch, with retries left (%d of %d used)", a, t.counted, t.spec.Retries)
	}
	if t.worker != nil {
		s.release(t)
	}
	s.unstick(t)
	t.unknown = false // cancelled while unknown
	t.done = true
	t.doneKind = a.Outcome.Kind
	t.doneMsg = a.Outcome.Message
	t.doneStep = s.step
	if a.Outcome.Kind != core.Success || len(t.spec.Outputs) == 0 {
		s.mustForget = append(s.mustForget, t) // nothing to recreate
	}
	if !a.Retained { // the Done is the last word of the task
		t.forgotten = true
		s.forgotten = append(s.forgotten, t)
	} else if a.Outcome.Kind != core.Success {
		s.failf("Done %+v retains a task that did not succeed", a)
	}
	s.doneCount++
	if !t.rejected {
		s.liveTasks--
	}
	if a.Dataflow != t.dataflow {
		s.failf("Done %+v: the model counts the task as dataflow: %v", a, t.dataflow)
	}
	if t.dataflow {
		s.flow.done++
		if !t.rejected {
			s.flow.live--
		}
	}
	s.stats.Done[a.Outcome.Kind]++
	if a.Outcome.Kind == core.Success || t.rejected {
		return
	}
	// Its consumers and followers can never run: they must fail in this step.
	for _, c := range t.followers {
		if !c.done {
			s.mustFinish = append(s.mustFinish, c)
		}
	}
	for _, f := range t.spec.Outputs {
		if fi := s.files[f]; fi != nil && fi.producer == t {
			for _, c := range fi.consumers {
				if !c.done {
					s.mustFinish = append(s.mustFinish, c)
				}
			}
		}
	}
}

// inputFailed reports whether t reads its own output, a file whose
// producer ended without success, or a file reported lost.
func (s *sim) inputFailed(t *simTask) bool {
	for _, f := range t.deps {
		if fi := s.files[f]; fi != nil {
			if p := fi.producer; p == t || (p.done && p.doneKind != core.Success) {
				return true
			}
		}
		if df := s.d.decl[f]; df != nil && len(df.lost) > 0 {
			return true
		}
	}
	return !s.afterReady(t, true)
}

// afterReady reports whether every task t runs after has succeeded, or
// with failed set, whether none has failed or been rejected.
func (s *sim) afterReady(t *simTask, failed bool) bool {
	for _, id := range t.spec.After {
		p := s.task(id)
		if failed && (p.rejected || p.done && p.doneKind != core.Success) || !failed && (!p.done || p.doneKind != core.Success) {
			return false
		}
	}
	return true
}

// release ends t's running attempt in the model.
func (s *sim) release(t *simTask) {
	w := t.worker
	held := t.held
	switch {
	case t.inst != nil:
		delete(t.inst.calls, t.spec.ID)
		t.inst = nil
	case held:
		t.held = false
		w.held = slices.DeleteFunc(w.held, func(x *simTask) bool { return x == t })
		s.heldN--
	default:
		w.used = w.used.Sub(t.spec.Resources)
	}
	delete(w.running, t.spec.ID)
	for _, g := range t.gpus {
		delete(w.gpuUsed, g)
	}
	t.gpus = nil
	t.worker = nil
	if !held {
		last := s.running[len(s.running)-1]
		s.running[t.runPos], last.runPos = last, t.runPos
		s.running = s.running[:len(s.running)-1]
		t.runPos = -1
	}
	if t.dataflow {
		s.flow.running--
	}
	ref := attemptRef{t.spec.ID, t.attempt, w.id}
	if len(s.history) < historySize {
		s.history = append(s.history, ref)
	} else {
		s.history[s.histPos] = ref
		s.histPos = (s.histPos + 1) % historySize
	}
	if w.draining && !w.gone && len(w.running) == 0 {
		s.leaving = append(s.leaving, w)
	}
}

// applyForget checks that the core forgets only a task it retained at its
// Done, that ran again to recreate files.
func (s *sim) applyForget(a core.Forget) {
	t := s.task(a.Task)
	switch {
	case t == nil || !t.submitted:
		s.failf("%+v of a task never submitted", a)
	case t.forgotten:
		s.failf("%+v: forgotten twice (or its Done was not Retained)", a)
	case !t.done:
		s.failf("%+v of a task without a Done", a)
	}
	t.forgotten = true
	s.forgotten = append(s.forgotten, t)
}

// checkForgotten checks, once the step is over, that what the core forgot
// no longer runs, and that it forgot every task that ended for good.
func (s *sim) checkForgotten() {
	for _, t := range s.forgotten {
		if t.rerunning || t.worker != nil {
			s.failf("task %d was forgotten while it runs (again: %v)", t.spec.ID, t.rerunning)
		}
	}
	for _, t := range s.mustForget {
		if !t.forgotten && !t.rerunning {
			s.failf("task %d ended for good (%s, or no outputs) but was not forgotten", t.spec.ID, t.doneKind)
		}
	}
}

// afterStep checks that every expectation of the step was met and that the
// core's counts agree with the model.
func (s *sim) afterStep(acts []core.Action) {
	if s.cfg.Ahead > 0 {
		s.startHeld()
	}
	if len(s.d.reruns) > 0 {
		s.checkReruns()
	}
	s.checkForgotten()
	s.checkStuck()
	if s.cfg.KeepFraction > 0 {
		s.ckptAfterStep(acts)
	}
	if s.cfg.LeaseRate > 0 {
		s.checkLeases()
	}
	if len(s.expired) > 0 {
		s.checkExpired()
	}
	switch ev := s.ev.(type) {
	case core.LibraryInstalled:
		s.checkInstall(s.lib(ev.Lib), acts)
	case core.WorkerJoined:
		for _, l := range s.l.libs {
			s.checkDeployed(l)
		}
	}
	for id, f := range s.fates {
		if !f.seen {
			s.failf("task %d: no action for the expected %+v; got %+v", id, *f, acts)
		}
	}
	for _, t := range s.mustFinish {
		if !t.done {
			s.failf("task %d can never run (an input failed, or it claims a claimed file) but got no Done; got %+v", t.spec.ID, acts)
		}
	}
	waiting, ready, running, finished := s.c.Counts()
	staging := s.c.Staging()
	s.checkDataflow()
	if s.cfg.libsOn() {
		s.checkLibCounts()
	} else if running != len(s.running)+s.heldN || finished != s.doneCount+s.ls.direct || waiting+ready+staging != s.liveTasks+s.d.rerunning-len(s.running)-s.heldN {
		s.failf("Counts() = waiting %d ready %d running %d finished %d, staging %d; model: queued %d running %d (%d of them held) finished %d",
			waiting, ready, running, finished, staging, s.liveTasks+s.d.rerunning-len(s.running)-s.heldN, len(s.running)+s.heldN, s.heldN, s.doneCount)
	}
	if _, tick := s.ev.(core.Tick); tick {
		// A lease that expires on a Tick frees slots, which calls take
		// then (legitimately); an instance started for them may fit now.
		expired := slices.ContainsFunc(acts, func(a core.Action) bool { _, ok := a.(core.LeaseEnded); return ok })
		for _, a := range acts {
			if d, ok := a.(core.Dispatch); ok && !expired {
				if l := s.lib(d.Lib); l != nil && l.spec.EveryWorker {
					continue // a Tick deploys instances on every worker with room
				}
				if d.Ahead {
					// A Tick tops up every worker's held tasks; between
					// Ticks a worker's list is topped up at its own
					// events (checkAhead checks that no core was free).
					s.stats.TickHeld++
					continue
				}
				s.stats.TickDispatches++
				// With data, a Tick legitimately starts a fetch that was
				// waiting for a source, and a lost input makes its
				// producer run again.
				if s.cfg.StrictPlacement && !s.cfg.dataOn() {
					s.failf("Tick placed task %d: the incremental placement had missed it", d.Task)
				}
			}
		}
	}
	if s.step%256 == 0 || s.cfg.dataOn() && s.step%max(4, s.cfg.Workers/8) == 0 {
		s.checkWorkers()
	}
	if s.cfg.StrictPlacement && s.step%max(8, s.cfg.Tasks/250) == 0 {
		s.checkPlacement()
		s.checkUnplaceable()
	}
}

// checkPlacement fails if a task that is ready in the model fits the free
// resources of an open worker. With data, free resources are the core's
// (tasks staging on a worker hold resources the model cannot see), and
// tasks staging are not ready.
func (s *sim) checkPlacement() {
	var infos []core.WorkerInfo
	staging := make(map[core.TaskID]bool)
	if s.cfg.dataOn() {
		infos = s.c.Workers()
		for _, info := range infos {
			for _, id := range info.Running {
				staging[id] = true
			}
		}
	}
	var shapes []*simTask // the first ready task of each shape
	seen := make(map[core.Resources]bool)
	for _, t := range s.tasks[:s.next] {
		if t.done && !t.rerunning || t.rejected || t.parked || t.unknown || t.worker != nil || staging[t.spec.ID] || seen[t.spec.Resources] || !s.inputsReady(t) || t.spec.Role == core.Call {
			continue
		}
		seen[t.spec.Resources] = true
		shapes = append(shapes, t)
	}
	for _, t := range shapes {
		if infos != nil {
			for _, info := range infos {
				if !info.Draining && info.Free.Fits(t.spec.Resources) {
					state, attempt, _ := s.c.TaskState(t.spec.ID)
					s.failf("task %d (%s, attempt %d, inputs %v, needs %v) is ready and fits worker %d (free %v) but was not placed",
						t.spec.ID, state, attempt, t.deps, t.spec.Resources, info.ID, info.Free)
				}
			}
			continue
		}
		for _, w := range s.live {
			if !w.draining && w.total.Sub(w.used).Fits(t.spec.Resources) {
				s.failf("task %d is ready and fits worker %d (free %v) but was not placed", t.spec.ID, w.id, w.total.Sub(w.used))
			}
		}
	}
}

// inputsReady reports whether every task t runs after has succeeded, and
// every input of t is external, a URL or unpacked, or produced and neither
// being made again nor lost.
func (s *sim) inputsReady(t *simTask) bool {
	for _, f := range t.deps {
		if fi := s.files[f]; fi != nil && (!s.fileReady(fi, f) || s.barredBy(t, f)) {
			return false
		}
	}
	return s.afterReady(t, false)
}

// checkWorkers compares the core's view of the workers with the model's:
// the same dispatched tasks, plus tasks staging there (data runs), whose
// resources are reserved too and never over-commit the worker; and the
// files the core thinks each worker holds are those it really holds.
func (s *sim) checkWorkers() {
	got := s.c.Workers()
	if len(got) != len(s.workers) {
		s.failf("Workers() lists %d workers, the model %d", len(got), len(s.workers))
	}
	staging := 0
	var fetchesTo map[core.WorkerID]int
	if s.cfg.dataOn() {
		fetchesTo = make(map[core.WorkerID]int)
		for _, f := range s.d.fetches {
			fetchesTo[f.a.Worker]++
		}
	}
	for _, info := range got {
		w := s.workers[info.ID]
		if w == nil {
			s.failf("Workers() lists worker %d, which the model does not have", info.ID)
		}
		ids := make([]core.TaskID, 0, len(w.running))
		for id := range w.running {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		insts := slices.Sorted(maps.Keys(w.insts))
		if slices.Equal(info.Running, ids) && slices.Equal(info.Instances, insts) {
			// Nothing staging there: the model knows every reservation.
			if free := w.total.Sub(w.used); info.Total != w.total || info.Free != free || info.Draining != w.draining {
				s.failf("worker %d: got %+v, want total %v free %v draining %v running %v instances %v", info.ID, info, w.total, free, w.draining, ids, insts)
			}
			s.checkHoldings(info, w, fetchesTo[w.id])
			continue
		}
		var reserved core.Resources
		var extra []core.TaskID
		var extraInsts []core.InstanceID
		instStaging := false // an instance staging there: its library is unknown
		for _, id := range info.Instances {
			if inst := w.insts[id]; inst != nil {
				reserved = reserved.Add(inst.lib.spec.Resources)
			} else if s.l.seen[id] {
				s.failf("worker %d: Workers() lists instance %d, which ended or runs elsewhere", info.ID, id)
			} else {
				instStaging = true
				extraInsts = append(extraInsts, id)
			}
		}
		if !slices.Equal(slices.DeleteFunc(slices.Clone(info.Instances), func(id core.InstanceID) bool { return slices.Contains(extraInsts, id) }), insts) {
			s.failf("worker %d: got %+v, want instances %v (and instances staging)", info.ID, info, insts)
		}
		staging += len(extraInsts)
		// Held ahead or not, a task placed there is the model's: the
		// order of what it holds is checked apart (startHeld).
		placed := append(slices.Clone(info.Running), info.Ahead...)
		slices.Sort(placed)
		for _, id := range placed {
			t := s.task(id)
			if t == nil {
				s.failf("worker %d: Workers() lists unknown task %d", info.ID, id)
			}
			if t.spec.Role != core.Call && !t.held {
				reserved = reserved.Add(t.spec.Resources)
			}
			if w.running[id] != nil {
				continue
			}
			if t.worker != nil || !t.submitted || t.rejected || t.done && !t.rerunning {
				s.failf("worker %d: Workers() lists task %d as staging there, but it is not live and queued in the model (running on %v, done %v)", info.ID, id, t.worker != nil, t.done)
			}
			extra = append(extra, id)
		}
		staging += len(extra)
		if !slices.Equal(slices.DeleteFunc(placed, func(id core.TaskID) bool { return slices.Contains(extra, id) }), ids) {
			s.failf("worker %d: got %+v, want running %v (and tasks staging)", info.ID, info, ids)
		}
		if instStaging {
			// At least what the model knows is reserved.
			if info.Total != w.total || !w.total.Sub(reserved).Fits(info.Free) || !w.total.Fits(reserved) || info.Draining != w.draining {
				s.failf("worker %d: got %+v, want total %v free at most %v (%v reserved, and instances staging) draining %v", info.ID, info, w.total, w.total.Sub(reserved), reserved, w.draining)
			}
		} else if info.Total != w.total || info.Free != w.total.Sub(reserved) || !w.total.Fits(reserved) || info.Draining != w.draining {
			s.failf("worker %d: got %+v, want total %v free %v (%v reserved) draining %v", info.ID, info, w.total, w.total.Sub(reserved), reserved, w.draining)
		}
		s.checkHoldings(info, w, fetchesTo[w.id])
	}
	if staging != s.c.Staging() {
		s.failf("Workers() lists %d tasks staging, Staging() says %d", staging, s.c.Staging())
	}
}

// checkHoldings compares the files and transfers the core sees on w with
// what w really holds and the fetches the harness has not answered.
func (s *sim) checkHoldings(info core.WorkerInfo, w *simWorker, in int) {
	if !s.cfg.dataOn() {
		return
	}
	var bytes int64
	for _, f := range w.holds.list {
		bytes += s.d.decl[f].size
	}
	n := len(w.holds.list)
	for _, f := range s.unheard(w) {
		n++
		bytes += s.d.decl[f].size
	}
	if info.CacheFiles != n || info.CacheBytes != bytes || info.TransfersIn != in || info.TransfersOut != s.d.peerOut[w.id] {
		var diff []string
		for f := range s.d.decl {
			seen := slices.Contains(s.c.Replicas(f), w.id)
			if real := s.believed(w, f); seen != real {
				diff = append(diff, fmt.Sprintf("file %d: the core sees it %v, really %v (evicted %v, released %v)", f, seen, real, w.evicted.has(f), w.loose.has(f)))
			}
		}
		s.failf("%v worker %d: core sees %d files (%d bytes), %d fetches in, %d out; it really holds %d files, and %d evicted it has not heard of (%d bytes), fetches in %d, out %d", diff,
			w.id, info.CacheFiles, info.CacheBytes, info.TransfersIn, info.TransfersOut, len(w.holds.list), n-len(w.holds.list), bytes, in, s.d.peerOut[w.id])
	}
}

// checkEnd checks that every submitted task has exactly one Done and that
// the workers are idle.
func (s *sim) checkEnd() {
	s.checkWorkers()
	if s.next != s.cfg.Tasks+s.d.probes || len(s.tasks) != s.next {
		s.failf("submitted %d tasks of %d (and %d probes)", s.next, s.cfg.Tasks, s.d.probes)
	}
	var missing []core.TaskID
	for _, t := range s.tasks {
		if !t.done || t.rerunning {
			missing = append(missing, t.spec.ID)
		}
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
		s.failf("%d tasks never got a Done (or still run again): %v", len(missing), missing[:min(len(missing), 20)])
	}
	if s.doneCount != s.next {
		s.failf("%d Done actions for %d tasks", s.doneCount, s.next)
	}
	if w, r, run, _ := s.c.Counts(); w+r+run+s.c.Staging() != len(s.l.live) {
		s.failf("core still holds tasks: waiting %d ready %d running %d staging %d (%d library instances)", w, r, run, s.c.Staging(), len(s.l.live))
	}
	for _, w := range s.workers {
		// Only instances, idle, may be left: checkLibEnd.
		var held core.Resources
		gpus := 0
		for _, inst := range w.insts {
			held = held.Add(inst.lib.spec.Resources)
			gpus += len(inst.gpus)
		}
		if len(w.running) != 0 || w.used != held || len(w.gpuUsed) != gpus {
			s.failf("worker %d still runs %d tasks (%v in use, %v by %d instances)", w.id, len(w.running), w.used, held, len(w.insts))
		}
	}
}

// flowCounts are the model's counts of dataflow tasks.
type flowCounts struct {
	live    int // submitted, accepted and not done
	running int // in sim.running (run again to recreate a file too)
	rerun   int // run again to recreate a file (see setRerunning)
	done    int // Done, rejected ones too
}

// classify decides, by the model's own rule, whether t (just submitted,
// after every output of its batch was claimed) is a dataflow task: a
// plain task that reads a file a task produces (a claimed output, or a
// declared temp file) or writes a declared temp file.
func (s *sim) classify(t *simTask) {
	if t.spec.Role != core.Plain {
		return
	}
	for _, f := range t.spec.Inputs {
		if df := s.d.decl[f]; s.files[f] != nil || df != nil && df.temp {
			t.dataflow = true
		}
	}
	for _, f := range t.spec.Outputs {
		// A sync checkpoint sends its outputs to the manager, as Upload.
		if df := s.d.decl[f]; df != nil && df.temp && t.spec.Keep != core.KeepCheckpointSync {
			t.dataflow = true
		}
	}
	if t.dataflow && !t.rejected {
		s.flow.live++
	}
}

// setRerunning marks t as run again to recreate a lost output, or no
// longer, and counts it.
func (s *sim) setRerunning(t *simTask, on bool) {
	n := 1
	if !on {
		n = -1
	}
	t.rerunning = on
	s.d.rerunning += n
	if t.dataflow {
		s.flow.rerun += n
	}
}

// checkDataflow fails unless the core's Tally of dataflow tasks matches
// the model.
func (s *sim) checkDataflow() {
	got := s.c.Tally().Dataflow
	queued := s.flow.live + s.flow.rerun - s.flow.running
	if got.Running != s.flow.running || got.Finished != s.flow.done || got.Waiting+got.Ready+got.Staging != queued {
		s.failf("Tally().Dataflow = %+v; model: queued %d running %d finished %d", got, queued, s.flow.running, s.flow.done)
	}
}
