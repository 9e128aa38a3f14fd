package coretest

import (
	"slices"

	"trellis/internal/core"
)

// Tasks held ahead (Config.Ahead, core.SetAhead). A Dispatch with Ahead
// goes to the worker's queue of held tasks, not to its resources; after
// each step each worker that is not draining starts the first held task
// while it fits beside what runs, as a real worker does, and the core's
// list of held tasks (Core.Ahead) must be the worker's, in order: the core
// mirrors the worker. A draining worker hands its held tasks back at once.

// checkAhead checks a Dispatch with Ahead of t to w: the core may hold t
// there, and (without staging, so that the model knows every reservation)
// no open worker had room for it, one that holds tasks included: each has
// started the held tasks that what the step freed there let start.
func (s *sim) checkAhead(a core.Dispatch, t *simTask, w *simWorker) {
	s.startOn(w) // what the step freed there started when it freed, before this came
	need := t.spec.Resources
	switch {
	case s.cfg.Ahead == 0:
		s.failf("Dispatch %+v ahead, with ahead off", a)
	case t.spec.Role != core.Plain || need.GPUs > 0 || t.spec.AtMostOnce:
		s.failf("Dispatch %+v ahead of a task that may not be held (role %v, %d GPUs, at most once %v)", a, t.spec.Role, need.GPUs, t.spec.AtMostOnce)
	case !w.total.Fits(need):
		s.failf("Dispatch %+v ahead to worker %d, which could never run it (%v of %v)", a, w.id, need, w.total)
	case !w.ahead:
		s.failf("Dispatch %+v ahead to worker %d, which did not say it holds tasks (an older worker would start it at once)", a, w.id)
	case len(w.held) >= s.cfg.Ahead:
		s.failf("Dispatch %+v ahead to worker %d, which holds %d already, the most", a, w.id, len(w.held))
	case len(w.insts) > 0:
		s.failf("Dispatch %+v ahead to worker %d, which hosts library instances", a, w.id)
	}
	for _, x := range w.running {
		if !x.spec.Resources.Fits(need) {
			// An end there might not start it: cores would idle while
			// tasks are held on other workers.
			s.failf("Dispatch %+v ahead (needs %v) to worker %d, where task %d needs less (%v)", a, need, w.id, x.spec.ID, x.spec.Resources)
		}
	}
	if s.cfg.dataOn() || s.cfg.libsOn() {
		return // tasks and instances staging hold resources the model does not see
	}
	for _, x := range s.live {
		s.startOn(x) // as on w: else another worker's held task, started this step, looks like room
		if !x.draining && x.total.Sub(x.used).Fits(need) {
			s.failf("Dispatch %+v ahead to worker %d while worker %d has room (free %v)", a, w.id, x.id, x.total.Sub(x.used))
		}
	}
}

// startHeld starts, on each worker not draining, the held tasks that fit,
// first first; then it checks that the core holds what each worker holds.
func (s *sim) startHeld() {
	for _, w := range s.live {
		s.startOn(w)
		if slices.ContainsFunc(w.held, func(t *simTask) bool { return t.killed }) {
			continue // the core learns what started once the killed one's report comes
		}
		got := s.c.Ahead(w.id)
		want := make([]core.TaskID, len(w.held))
		for i, t := range w.held {
			want[i] = t.spec.ID
		}
		if !slices.Equal(got, want) {
			s.failf("worker %d holds %v ahead; the core says %v", w.id, want, got)
		}
	}
	s.checkHeldCounts()
}

// checkHeldCounts fails unless the core's count of held tasks (Tally's
// Held) agrees with the tasks its workers hold (Ahead).
func (s *sim) checkHeldCounts() {
	n := 0
	for _, w := range s.c.Workers() {
		n += len(w.Ahead)
	}
	tally := s.c.Tally()
	if held := tally.Tasks.Held + tally.Dataflow.Held + tally.Calls.Held + tally.Instances.Held; held != n {
		s.failf("Tally counts %d tasks held ahead (%+v); the workers hold %d", held, tally, n)
	}
}

// startOn starts the held tasks of w that fit, first first, unless w drains.
// A killed one has ended there (its report is on its way: heldKills): the
// next starts if it fits, as on a real worker.
func (s *sim) startOn(w *simWorker) {
	for i := 0; !w.draining && i < len(w.held); {
		t := w.held[i]
		if t.killed {
			i++
			continue
		}
		used := w.used.Add(t.spec.Resources)
		if !w.total.Fits(used) {
			return
		}
		w.held = slices.Delete(w.held, i, i+1)
		s.heldN--
		t.held = false
		w.used = used
		t.runPos = len(s.running)
		s.running = append(s.running, t)
	}
}

// reportHeldKill sends the report of the first held task killed: a real
// worker ends it cancelled at once, without starting it.
func (s *sim) reportHeldKill() {
	ref := s.heldKills[0]
	s.heldKills = s.heldKills[1:]
	if t := s.task(ref.task); t.held && t.killed && t.attempt == ref.attempt && t.worker.id == ref.worker {
		s.do(core.TaskFinished{Task: ref.task, Attempt: ref.attempt, Worker: ref.worker,
			Outcome: core.Outcome{Kind: core.Cancelled, Message: "cancelled before it started (held ahead)"}})
	}
}
