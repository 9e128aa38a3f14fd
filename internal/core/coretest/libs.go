package coretest

// Libraries and calls: the libraries the run installs, the instances the
// core starts and the fake workers host (they start, fail to start, crash
// and stop), the calls they run, and the invariants on slots, instances and
// broken libraries. All of it is off unless Config.Libraries is set, so
// that runs without it replay as before.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"trellis/internal/core"
)

// simLib is the model of one installed library.
type simLib struct {
	spec     core.LibraryInstalled
	bad      bool     // its instances always fail to start, with setup
	setup    string   // the set-up failure of a bad library
	failures []string // set-up failures the harness reported since the last install
	broken   []string // reasons of its LibraryBroken actions since the last install
	live     int      // instances dispatched and not ended
	calls    []*simTask
}

// slots is how many calls an instance of l runs at once.
func (l *simLib) slots() int { return int(max(l.spec.Slots, 1)) }

// simInst is the model of a dispatched library instance.
type simInst struct {
	id       core.InstanceID
	lib      *simLib
	worker   *simWorker
	attempt  uint32
	gpus     []int32
	ready    bool // InstanceReady came
	stopping bool // a Stop was sent
	calls    map[core.TaskID]*simTask
	livePos  int // in libState.live
	pendPos  int // in libState.pending, or -1
}

// libState is the harness's bookkeeping of libraries and instances.
type libState struct {
	libs    []*simLib                    // installed, by LibID-1
	insts   map[core.InstanceID]*simInst // dispatched and not ended
	live    []*simInst                   // the same, for random picks
	pending []*simInst                   // starting or stopping: the worker owes a report
	seen    map[core.InstanceID]bool     // every instance ever dispatched
	ended   []instRef                    // ended instances, a ring, for stale reports
	endPos  int

	roomBefore bool // a LibraryInstalled step: an open worker had room for an instance before it
}

func newLibState() libState {
	return libState{insts: make(map[core.InstanceID]*simInst), seen: make(map[core.InstanceID]bool)}
}

// instRef names an attempt of an instance.
type instRef struct {
	inst    core.InstanceID
	attempt uint32
	worker  core.WorkerID
}

// libsOn reports whether the run installs libraries.
func (c Config) libsOn() bool { return c.Libraries > 0 }

// uninstalled is a library no run installs.
const uninstalled core.LibID = 1 << 20

var (
	libCores  = []int64{250, 500, 1000, 2000}
	libMemory = []int64{256, 1024, 4096}
)

// installLib installs the next library. Libraries installed once tasks were
// submitted may read a file a task produces.
func (s *sim) installLib() {
	r := s.rng
	l := &simLib{spec: core.LibraryInstalled{
		Lib:         core.LibID(len(s.l.libs) + 1),
		Resources:   core.Resources{MilliCores: pick(r, libCores), MemoryMB: pick(r, libMemory)},
		Slots:       int32(r.IntN(5)), // 0 means 1
		Max:         int32(r.IntN(4)), // 0: as many as calls need
		EveryWorker: r.IntN(5) == 0,
	}}
	if s.cfg.GPUFraction > 0 && r.IntN(6) == 0 {
		l.spec.Resources.GPUs = 1
	}
	if r.IntN(3) == 0 {
		l.spec.Eager = int32(1 + r.IntN(2))
		if l.spec.Max > 0 {
			l.spec.Eager = min(l.spec.Eager, l.spec.Max)
		}
	}
	if s.pickSubmitted > 0 && r.Float64() < s.cfg.LibInputFraction {
		l.spec.Inputs = append(l.spec.Inputs, s.pickable[s.pickSubmitted-1-r.IntN(min(s.pickSubmitted, 64))])
	}
	if r.IntN(8) == 0 {
		l.spec.Inputs = append(l.spec.Inputs, externalFiles+core.FileID(r.IntN(1000)))
	}
	if i := len(s.l.libs); i%2 == 1 && i/2 < s.cfg.BrokenLibraries {
		l.bad = true
		l.setup = fmt.Sprintf("set-up failed: library %d: no module named model%d", l.spec.Lib, r.IntN(100))
	}
	s.l.libs = append(s.l.libs, l)
	s.stats.Libraries++
	s.do(l.spec)
}

// genCall makes spec a call of a random installed library (rarely of one
// that never starts, whose calls fail, and so do the tasks that read their
// outputs). Its resources are its instance's: half of the calls name some
// anyway, which the core must ignore.
func (s *sim) genCall(spec *core.Task) {
	l := s.l.libs[s.rng.IntN(len(s.l.libs))]
	if l.bad {
		l = s.l.libs[s.rng.IntN(len(s.l.libs))]
	}
	spec.Role, spec.Lib = core.Call, l.spec.Lib
	if s.rng.IntN(100) == 0 {
		spec.Lib = uninstalled // a client's mistake: it fails at once
	}
	if s.rng.IntN(2) == 0 {
		spec.Resources = core.Resources{}
	}
}

func (s *sim) lib(id core.LibID) *simLib {
	if id == 0 || int(id) > len(s.l.libs) {
		return nil
	}
	return s.l.libs[id-1]
}

func (s *sim) addPending(inst *simInst) {
	inst.pendPos = len(s.l.pending)
	s.l.pending = append(s.l.pending, inst)
}

func (s *sim) removePending(inst *simInst) {
	if inst.pendPos < 0 {
		return
	}
	last := s.l.pending[len(s.l.pending)-1]
	s.l.pending[inst.pendPos], last.pendPos = last, inst.pendPos
	s.l.pending = s.l.pending[:len(s.l.pending)-1]
	inst.pendPos = -1
}

// endInst forgets a dispatched instance: its resources go back. Its calls
// are settled by the fates of the event.
func (s *sim) endInst(inst *simInst) {
	s.removePending(inst)
	delete(s.l.insts, inst.id)
	last := s.l.live[len(s.l.live)-1]
	s.l.live[inst.livePos], last.livePos = last, inst.livePos
	s.l.live = s.l.live[:len(s.l.live)-1]
	inst.lib.live--
	w := inst.worker
	delete(w.insts, inst.id)
	w.used = w.used.Sub(inst.lib.spec.Resources)
	for _, g := range inst.gpus {
		delete(w.gpuUsed, g)
	}
	ref := instRef{inst.id, inst.attempt, w.id}
	if len(s.l.ended) < historySize {
		s.l.ended = append(s.l.ended, ref)
	} else {
		s.l.ended[s.l.endPos] = ref
		s.l.endPos = (s.l.endPos + 1) % historySize
	}
}

// Events.

// expectLib records how a library event must play out. It reports false
// for events that are not about libraries.
func (s *sim) expectLib(ev core.Event) bool {
	switch ev := ev.(type) {
	case core.LibraryInstalled:
		l := s.lib(ev.Lib)
		l.failures, l.broken = nil, nil // installing again clears a broken library
		s.l.roomBefore = false
		for _, w := range s.live {
			s.l.roomBefore = s.l.roomBefore || s.roomFor(l, w)
		}
	case core.InstanceReady:
		inst := s.instance(ev.Instance, ev.Attempt, ev.Worker)
		if inst == nil {
			return true
		}
		if inst.ready {
			// A duplicate report: the instance is ready already.
			s.exact = true
			s.want = append(s.want, core.StaleResult{Instance: ev.Instance, Attempt: ev.Attempt, Worker: ev.Worker})
			return true
		}
		inst.ready = true
		s.removePending(inst)
		s.stats.InstancesReady++
	case core.InstanceEnded:
		inst := s.instance(ev.Instance, ev.Attempt, ev.Worker)
		if inst == nil {
			return true
		}
		// Its calls end with it: retried within their retries, or done.
		kind := core.Failed
		if ev.Outcome.Kind == core.ResourceExceeded || ev.Outcome.Kind == core.WorkerLost {
			kind = ev.Outcome.Kind
		}
		for _, id := range slices.Sorted(maps.Keys(inst.calls)) { // in order: expectRetry may reorder s.running
			t := inst.calls[id]
			if t.cancelled {
				s.fates[t.spec.ID] = &fate{kind: core.Cancelled}
			} else {
				s.expectRetry(t, kind, true)
			}
		}
		if !inst.ready && !inst.stopping {
			inst.lib.failures = append(inst.lib.failures, ev.Outcome.Message)
		}
		s.endInst(inst)
	default:
		return false
	}
	return true
}

// instance returns the dispatched instance a report names, or nil after
// setting up the StaleResult the core must answer with.
func (s *sim) instance(id core.InstanceID, attempt uint32, wid core.WorkerID) *simInst {
	inst := s.l.insts[id]
	if inst == nil || inst.attempt != attempt || inst.worker.id != wid {
		s.exact = true
		s.want = append(s.want, core.StaleResult{Instance: id, Attempt: attempt, Worker: wid})
		return nil
	}
	return inst
}

// answerInstance has a fake worker report on a random instance that owes a
// report: a starting one is ready, or fails to start (always, for a bad
// library; now and then, while faults are on); a stopping one ends.
func (s *sim) answerInstance(faults bool) {
	inst := s.l.pending[s.rng.IntN(len(s.l.pending))]
	id, attempt, w := inst.id, inst.attempt, inst.worker.id
	switch {
	case inst.stopping:
		s.do(core.InstanceEnded{Instance: id, Attempt: attempt, Worker: w, Outcome: core.Outcome{Kind: core.Success, Message: "stopped"}})
	case inst.lib.bad:
		s.stats.SetupFailures++
		s.do(core.InstanceEnded{Instance: id, Attempt: attempt, Worker: w, Outcome: core.Outcome{Kind: core.Failed, ExitCode: 1, Message: inst.lib.setup}})
	case faults && s.rng.Float64() < s.cfg.SetupFailRate:
		s.stats.SetupFailures++
		s.do(core.InstanceEnded{Instance: id, Attempt: attempt, Worker: w, Outcome: core.Outcome{Kind: core.Failed, ExitCode: 1, Message: "set-up failed: import timed out"}})
	default:
		s.do(core.InstanceReady{Instance: id, Attempt: attempt, Worker: w})
	}
}

// crashInstance has a random ready instance die with the calls it runs:
// its process fails, or exceeds its memory.
func (s *sim) crashInstance() {
	if len(s.l.live) == 0 {
		return
	}
	inst := s.l.live[s.rng.IntN(len(s.l.live))]
	if !inst.ready {
		return
	}
	s.stats.InstanceCrashes++
	o := core.Outcome{Kind: core.Failed, ExitCode: 2, Message: "exit status 2: segmentation fault"}
	if s.rng.IntN(3) == 0 {
		o = core.Outcome{Kind: core.ResourceExceeded, Message: "memory limit exceeded"}
	}
	s.do(core.InstanceEnded{Instance: inst.id, Attempt: inst.attempt, Worker: inst.worker.id, Outcome: o})
}

// staleLibStep sends a library report the core must ignore, or installs a
// library again with the same spec. It reports false if it sent nothing.
func (s *sim) staleLibStep() bool {
	r := s.rng
	switch r.IntN(4) {
	case 0: // a report of an ended instance
		if len(s.l.ended) > 0 {
			h := s.l.ended[r.IntN(len(s.l.ended))]
			if r.IntN(2) == 0 {
				s.do(core.InstanceReady{Instance: h.inst, Attempt: h.attempt, Worker: h.worker})
			} else {
				s.do(core.InstanceEnded{Instance: h.inst, Attempt: h.attempt, Worker: h.worker, Outcome: core.Outcome{Kind: core.Failed, Message: "late"}})
			}
			return true
		}
	case 1: // a second InstanceReady, or a report from the wrong worker
		if len(s.l.live) > 0 {
			inst := s.l.live[r.IntN(len(s.l.live))]
			if inst.ready {
				s.do(core.InstanceReady{Instance: inst.id, Attempt: inst.attempt, Worker: inst.worker.id})
			} else {
				s.do(core.InstanceEnded{Instance: inst.id, Attempt: inst.attempt, Worker: inst.worker.id + 1, Outcome: core.Outcome{Kind: core.Failed, Message: "wrong worker"}})
			}
			return true
		}
	case 2: // an instance the core never made
		s.do(core.InstanceReady{Instance: core.InstanceID(1 << 40), Attempt: 1, Worker: 1})
		return true
	case 3: // a library installed again, as a client would: a broken one works again
		if len(s.l.libs) > 0 {
			l := s.l.libs[r.IntN(len(s.l.libs))]
			s.stats.Reinstalls++
			s.do(l.spec)
			return true
		}
	}
	return false
}

// Actions.

// applyStart checks the Dispatch of a library instance and records it.
func (s *sim) applyStart(a core.Dispatch, w *simWorker) {
	l := s.lib(a.Lib)
	switch {
	case l == nil:
		s.failf("Dispatch %+v of an instance of a library never installed", a)
	case a.Instance == 0 || s.l.seen[a.Instance]:
		s.failf("Dispatch %+v: not a new instance ID", a)
	case a.Attempt != 1 || a.Task != 0:
		s.failf("Dispatch %+v of an instance: want attempt 1 and no task", a)
	case len(l.broken) > 0:
		s.failf("Dispatch %+v of an instance of library %d, which broke: %q", a, l.spec.Lib, l.broken)
	case l.spec.Max > 0 && l.live >= int(l.spec.Max):
		s.failf("Dispatch %+v: library %d has %d instances already, at most %d", a, l.spec.Lib, l.live, l.spec.Max)
	}
	for _, f := range s.depsOf(l.spec.Inputs) {
		if fi := s.files[f]; fi != nil {
			if p := fi.producer; !p.done || p.doneKind != core.Success {
				s.failf("Dispatch %+v before the library's input %d is ready: producer %d done=%v kind=%s", a, f, p.spec.ID, p.done, p.doneKind)
			}
		}
	}
	if s.cfg.dataOn() {
		s.checkInputsOn(a, l.spec.Inputs, w)
	}
	need := l.spec.Resources
	if used := w.used.Add(need); !w.total.Fits(used) {
		s.failf("Dispatch %+v over-commits worker %d: %v in use of %v (instance of library %d)", a, w.id, used, w.total, l.spec.Lib)
	}
	s.takeGPUs(a, w, need.GPUs)
	inst := &simInst{id: a.Instance, lib: l, worker: w, attempt: a.Attempt, gpus: slices.Clone(a.GPUs),
		calls: make(map[core.TaskID]*simTask), livePos: len(s.l.live)}
	s.l.seen[inst.id] = true
	s.l.insts[inst.id] = inst
	s.l.live = append(s.l.live, inst)
	s.addPending(inst)
	l.live++
	w.used = w.used.Add(need)
	w.insts[inst.id] = inst
	s.stats.InstancesStarted++
}

// checkCallDispatch checks that call t is dispatched to a ready instance of
// its library on the worker named, with a free slot, and records it there.
func (s *sim) checkCallDispatch(a core.Dispatch, t *simTask) {
	inst := s.l.insts[a.Instance]
	switch {
	case a.Instance == 0 || a.Lib != 0:
		s.failf("Dispatch %+v of a call: want an instance and no library", a)
	case inst == nil:
		s.failf("Dispatch %+v to an instance that is not running (never started, or ended)", a)
	case inst.worker.id != a.Worker:
		s.failf("Dispatch %+v: the instance runs on worker %d", a, inst.worker.id)
	case inst.lib.spec.Lib != t.spec.Lib:
		s.failf("Dispatch %+v of a call of library %d to an instance of library %d", a, t.spec.Lib, inst.lib.spec.Lib)
	case !inst.ready:
		s.failf("Dispatch %+v to an instance that is not ready", a)
	case inst.stopping:
		s.failf("Dispatch %+v to an instance that was told to stop", a)
	case len(inst.calls)+s.leased(inst) >= inst.lib.slots():
		s.failf("Dispatch %+v over-commits the instance: %d calls run and %d slots are leased of its %d", a, len(inst.calls), s.leased(inst), inst.lib.slots())
	case len(a.GPUs) != 0:
		s.failf("Dispatch %+v of a call names GPUs: its instance holds them", a)
	}
	inst.calls[t.spec.ID] = t
	t.inst = inst
	s.stats.CallDispatches++
}

// applyStop checks a Stop: only an idle, ready instance is stopped.
func (s *sim) applyStop(a core.Stop) {
	inst := s.l.insts[a.Instance]
	switch {
	case inst == nil || inst.worker.id != a.Worker:
		s.failf("%+v of an instance that does not run there", a)
	case !inst.ready || inst.stopping:
		s.failf("%+v of an instance that is not ready, or stopping already (ready %v, stopping %v)", a, inst.ready, inst.stopping)
	case len(inst.calls) > 0 || s.leased(inst) > 0:
		s.failf("%+v of an instance that runs %d calls and leases %d slots", a, len(inst.calls), s.leased(inst))
	}
	inst.stopping = true
	s.addPending(inst)
	s.stats.Stops++
}

// applyBroken checks a LibraryBroken: it comes once (until the library is
// installed again), its reason names a start failure of the library (a
// set-up failure the workers reported, or an input it can never have), and
// the calls waiting for it must fail in this step.
func (s *sim) applyBroken(a core.LibraryBroken) {
	l := s.lib(a.Lib)
	if l == nil {
		s.failf("%+v of a library never installed", a)
	}
	rest, _ := strings.CutPrefix(a.Why, "library failed to start ")
	count, why, _ := strings.Cut(rest, " times: ")
	if n, err := strconv.Atoi(count); err != nil || n < core.StartFailures {
		s.failf("%+v: want a reason \"library failed to start N times: ...\", N at least %d", a, core.StartFailures)
	}
	if !slices.Contains(l.failures, why) && !s.libInputFailed(l, why) {
		s.failf("%+v names no start failure of the library: set-up failures reported %q", a, l.failures)
	}
	if len(l.broken) > 0 {
		s.failf("%+v: the library broke already, with %q, and was not installed again since", a, l.broken)
	}
	l.broken = append(l.broken, a.Why)
	s.stats.LibrariesBroken++
	for _, t := range l.calls {
		if t.done || t.worker != nil || !s.inputsReady(t) {
			continue
		}
		if state, _, _ := s.c.TaskState(t.spec.ID); state == core.Staging {
			continue // in a slot of a ready instance, bringing its inputs
		}
		s.mustFinish = append(s.mustFinish, t)
	}
}

// libInputFailed reports whether why is the reason an input of l can never
// be had: its producer failed, it was lost, or it could not be brought.
func (s *sim) libInputFailed(l *simLib, why string) bool {
	if strings.HasPrefix(why, "fetch ") {
		return true
	}
	for _, f := range s.depsOf(l.spec.Inputs) {
		if df := s.d.decl[f]; df != nil && slices.Contains(df.lost, why) {
			return true
		}
		if fi := s.files[f]; fi != nil {
			p := fi.producer
			if p.done && p.doneKind != core.Success && why == fmt.Sprintf("input produced by task %d is missing: that task ended with %s", p.spec.ID, p.doneKind) {
				return true
			}
		}
	}
	return false
}

// brokenDone reports whether Done a of call t, which was not running, is
// the failure of a broken library (its reason is that of a LibraryBroken),
// or of one never installed.
func (s *sim) brokenDone(t *simTask, a core.Done) bool {
	if t.spec.Role != core.Call || a.Outcome.Kind != core.Failed {
		return false
	}
	l := s.lib(t.spec.Lib)
	if l == nil && a.Outcome.Message != fmt.Sprintf("library %d is not installed", t.spec.Lib) ||
		l != nil && !slices.Contains(l.broken, a.Outcome.Message) {
		return false
	}
	t.libBroken = true
	return true
}

// callFailsAtOnce reports whether t, just submitted, is a call that can
// never run although its inputs exist: its library is broken, or was never
// installed. It must not wait.
func (s *sim) callFailsAtOnce(t *simTask) bool {
	if t.spec.Role != core.Call || !s.inputsReady(t) {
		return false
	}
	l := s.lib(t.spec.Lib)
	return l == nil || len(l.broken) > 0
}

// Checks.

// roomFor reports whether open worker w has room for an instance of l.
func (s *sim) roomFor(l *simLib, w *simWorker) bool {
	need := l.spec.Resources
	// (Nothing is placed on a worker that holds tasks ahead, which has no
	// free cores: ahead.go.)
	return !w.draining && w.total.Sub(w.used).Fits(need) && int64(len(w.devices)-len(w.gpuUsed)) >= need.GPUs
}

// checkInstall checks that installing l started the Eager instances it
// asks for, if a worker had room for one, and deployed an EveryWorker
// library.
func (s *sim) checkInstall(l *simLib, acts []core.Action) {
	if !s.canStart(l) {
		return
	}
	started := 0
	for _, a := range acts {
		if d, ok := a.(core.Dispatch); ok && d.Lib == l.spec.Lib {
			started++
		}
	}
	if l.spec.Eager > 0 && l.live < int(l.spec.Eager) && s.l.roomBefore && started == 0 {
		s.failf("library %d installed with Eager %d (%d instances run): a worker had room, but none started", l.spec.Lib, l.spec.Eager, l.live)
	}
	s.checkDeployed(l)
}

// canStart reports whether, without data (where the model knows every
// reservation), the core must start instances of l when it is asked to:
// l works, and its inputs exist.
func (s *sim) canStart(l *simLib) bool {
	if s.cfg.dataOn() || len(l.broken) > 0 {
		return false
	}
	for _, f := range s.depsOf(l.spec.Inputs) {
		if fi := s.files[f]; fi != nil && (!fi.producer.done || fi.producer.doneKind != core.Success) {
			return false
		}
	}
	return true
}

// checkDeployed checks, after an install or a join, that an EveryWorker
// library without Max (which instances waiting for a place count against)
// has an instance on every open worker that has room for one.
func (s *sim) checkDeployed(l *simLib) {
	if !l.spec.EveryWorker || l.spec.Max > 0 || !s.canStart(l) {
		return
	}
	for _, w := range s.live {
		has := false
		for _, inst := range w.insts {
			has = has || inst.lib == l
		}
		if !has && s.roomFor(l, w) {
			s.failf("library %d is wanted on every worker (%d instances run): worker %d has room (%v free) but no instance", l.spec.Lib, l.live, w.id, w.total.Sub(w.used))
		}
	}
}

// withoutDeploys returns the actions of a WorkerJoined less the instances
// it deploys on other workers, and the fetches of their inputs: a worker
// joining, even again, is when the core tries again to have an instance of
// an EveryWorker library on every worker with room.
func (s *sim) withoutDeploys(acts []core.Action) []core.Action {
	if _, join := s.ev.(core.WorkerJoined); !join || !s.cfg.libsOn() {
		return acts
	}
	var out []core.Action
	for _, a := range acts {
		switch a := a.(type) {
		case core.Dispatch:
			if l := s.lib(a.Lib); l != nil && l.spec.EveryWorker {
				continue
			}
		case core.Fetch:
			continue
		}
		out = append(out, a)
	}
	return out
}

// checkLibCounts checks the core's counts against the model with
// instances: dispatched ones run, and the others (waiting for a place or
// their inputs) are queued beyond the model's tasks. Without data, at most
// max(Eager, 1) of a library's instances wait for a place at a time.
func (s *sim) checkLibCounts() {
	waiting, ready, running, finished := s.c.Counts()
	queued := waiting + ready + s.c.Staging()
	model := s.liveTasks + s.d.rerunning - len(s.running) - s.heldN // held tasks count as running (ahead.go)
	extra := queued - model
	bound := -1
	if !s.cfg.dataOn() {
		bound = 0
		for _, l := range s.l.libs {
			bound += int(max(l.spec.Eager, 1))
		}
	}
	if running != len(s.running)+s.heldN+len(s.l.live) || finished != s.doneCount+s.ls.direct || extra < 0 || bound >= 0 && extra > bound {
		s.failf("Counts() = waiting %d ready %d running %d finished %d, staging %d; model: queued %d (plus at most %d instances) running %d (and %d instances) finished %d",
			waiting, ready, running, finished, s.c.Staging(), model, bound, len(s.running)+s.heldN, len(s.l.live), s.doneCount)
	}
}

// checkLibEnd checks, once the run has settled, that the instances left
// are ready and idle, and that every call of a library that never starts
// ended without running: failed with the reason of a LibraryBroken, which
// names the library's set-up failure (or cancelled, or an input of its own
// failed).
func (s *sim) checkLibEnd() {
	for _, inst := range s.l.live {
		if !inst.ready || inst.stopping || len(inst.calls) > 0 {
			s.failf("instance %d of library %d at the end: ready %v, stopping %v, %d calls", inst.id, inst.lib.spec.Lib, inst.ready, inst.stopping, len(inst.calls))
		}
	}
	if w, r, run, _ := s.c.Counts(); w+r+s.c.Staging() != 0 || run != len(s.l.live) {
		s.failf("core still holds tasks: waiting %d ready %d running %d (%d instances) staging %d", w, r, run, len(s.l.live), s.c.Staging())
	}
	for _, l := range s.l.libs {
		if !l.bad {
			continue
		}
		for _, t := range l.calls {
			switch {
			case t.attempt != 0:
				s.failf("call %d of library %d, which never starts, ran (attempt %d)", t.spec.ID, l.spec.Lib, t.attempt)
			case t.doneKind == core.Failed && t.libBroken && (strings.HasSuffix(t.doneMsg, " times: "+l.setup) || s.libInputFailed(l, t.doneMsg[strings.Index(t.doneMsg, " times: ")+len(" times: "):])):
				s.stats.CallsBroken++
			case t.doneKind == core.Cancelled || t.doneKind == core.InputMissing || t.rejected:
			case t.doneKind == core.ResourceExceeded && t.timedOut:
				// Unplaceable for its limit before the library broke.
			default:
				s.failf("call %d of library %d, which never starts, ended %s %q; the library broke with %q", t.spec.ID, l.spec.Lib, t.doneKind, t.doneMsg, l.broken)
			}
		}
	}
}

func (s *sim) describeLibs() string {
	var b strings.Builder
	for _, l := range s.l.libs {
		fmt.Fprintf(&b, "\n\tlibrary %d %+v: bad %v, %d instances, broken %q", l.spec.Lib, l.spec, l.bad, l.live, l.broken)
	}
	for _, inst := range s.l.live {
		fmt.Fprintf(&b, "\n\tinstance %d of library %d on worker %d: ready %v stopping %v calls %d", inst.id, inst.lib.spec.Lib, inst.worker.id, inst.ready, inst.stopping, len(inst.calls))
	}
	return b.String()
}
