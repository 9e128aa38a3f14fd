package coretest

// Unplaceable tasks: the model of which queued tasks no open worker could
// run even idle, built from the Unplaceable actions, and the checks that
// they come exactly when the reason appears, changes or clears, and that
// Tick ends those that waited longer than their UnplaceableTimeout.

import (
	"slices"
	"time"

	"trellis/internal/core"
)

// tickEvery is how far the simulated clock moves at each Tick.
const tickEvery = time.Second

// tick sends a Tick, one tickEvery after the last one.
func (s *sim) tick() []core.Action {
	s.now += tickEvery
	return s.do(core.Tick{Now: s.now})
}

// unplaceableLimit picks the UnplaceableTimeout of a new task: none for
// most, a few ticks for Config.UnplaceableFraction of them.
func (s *sim) unplaceableLimit() time.Duration {
	if s.cfg.UnplaceableFraction == 0 || s.rng.Float64() >= s.cfg.UnplaceableFraction {
		return 0
	}
	return time.Duration(1+s.rng.IntN(4)) * tickEvery
}

// fitsOpen reports whether an open worker could run a task needing need,
// were it idle.
func (s *sim) fitsOpen(need core.Resources) bool {
	for _, w := range s.live {
		if !w.draining && w.total.Fits(need) {
			return true
		}
	}
	return false
}

// shapeOf is the resources a task needs to be placed: a call's are its
// library's, for an instance.
func (s *sim) shapeOf(t *simTask) (core.Resources, bool) {
	if t.spec.Role != core.Call {
		return t.spec.Resources, true
	}
	l := s.lib(t.spec.Lib)
	if l == nil {
		return core.Resources{}, false
	}
	return l.spec.Resources, true
}

// applyUnplaceable checks that an Unplaceable names queued tasks whose
// reason appears, changes or clears, and records it. prev is the action
// before it in the step (nil for the first): an Unplaceable of the same
// reason there should have taken these tasks too, as one action tells the
// tasks judged or queued together.
func (s *sim) applyUnplaceable(a core.Unplaceable, prev core.Action) {
	if len(a.Tasks) == 0 {
		s.failf("%+v names no task", a)
	}
	if p, ok := prev.(core.Unplaceable); ok && p.Why == a.Why {
		s.failf("%+v right after %+v, of the same reason: one action should tell them all", a, p)
	}
	s.stats.UnplaceableActions++
	for _, id := range a.Tasks {
		s.tellOne(id, a.Why)
	}
}

// tellOne checks that queued task id may be told why (see
// applyUnplaceable), and records it.
func (s *sim) tellOne(id core.TaskID, why string) {
	t := s.task(id)
	switch {
	case t == nil || !t.submitted || t.rejected:
		s.failf("Unplaceable %q of task %d, never submitted", why, id)
		return
	case t.done && !t.rerunning:
		s.failf("Unplaceable %q of task %d, which has its Done (%s)", why, id, t.doneKind)
	case t.worker != nil:
		s.failf("Unplaceable %q of task %d, running as attempt %d on worker %d", why, id, t.attempt, t.worker.id)
	case why == t.stuck:
		s.failf("Unplaceable %q of task %d: told the same again (an Unplaceable comes only when the reason appears, changes or clears)", why, id)
	}
	if why != "" {
		if need, ok := s.shapeOf(t); ok && s.fitsOpen(need) {
			s.failf("Unplaceable %q of task %d, but an open worker could run what it needs, %v", why, id, need)
		}
	}
	s.setStuck(t, why)
	if why == "" {
		s.stats.UnplaceableCleared++
	} else {
		s.stats.Unplaceable++
	}
}

// setStuck records t's reason ("": none), timed from the next Tick when
// it appears.
func (s *sim) setStuck(t *simTask, why string) {
	switch {
	case why == "" && t.stuck != "":
		delete(s.stuck, t)
	case why != "" && t.stuck == "":
		s.stuck[t] = true
		t.stuckSince = -1
	}
	t.stuck = why
}

// expectTick sets the fates of the tasks that a Tick at now must end:
// those unplaceable for their UnplaceableTimeout, counted from the first
// Tick after they were told.
func (s *sim) expectTick(now time.Duration) {
	for t := range s.stuck {
		if t.stuckSince < 0 {
			t.stuckSince = now
		}
		limit := t.spec.UnplaceableTimeout
		if limit == 0 || now-t.stuckSince < limit {
			continue
		}
		s.setStuck(t, "")
		s.stats.UnplaceableTimedOut++
		if t.rerunning {
			// No second Done: a FileLost of its outputs with no copy
			// left, or nothing (checkReruns); checkExpired checks that
			// the core let it go.
			s.expired = append(s.expired, t)
			continue
		}
		t.timedOut = true
		s.fates[t.spec.ID] = &fate{kind: core.ResourceExceeded, unplaceable: true}
	}
}

// checkExpired checks that the tasks run again to recreate files that a
// Tick ended are gone from the core.
func (s *sim) checkExpired() {
	for _, t := range s.expired {
		if _, _, known := s.c.TaskState(t.spec.ID); known {
			s.failf("task %d, run again to recreate files, was unplaceable for its timeout, but the core still has it", t.spec.ID)
		}
	}
	s.expired = s.expired[:0]
}

// checkStuck checks, after every step, that the tasks told unplaceable
// still are: queued, and no open worker could run them.
func (s *sim) checkStuck() {
	for t := range s.stuck {
		switch need, _ := s.shapeOf(t); {
		case t.worker != nil || t.done && !t.rerunning:
			s.failf("task %d is unplaceable in the model but runs or is done", t.spec.ID)
		case s.fitsOpen(need):
			s.failf("task %d needs %v, which an open worker has now, but was not told its reason %q cleared", t.spec.ID, need, t.stuck)
		}
	}
}

// checkUnplaceable checks that every queued task (not a call) whose
// inputs are ready and that no open worker could run was told why.
func (s *sim) checkUnplaceable() {
	fits := make(map[core.Resources]bool)
	for _, t := range s.tasks[:s.next] {
		if t.done && !t.rerunning || t.rejected || t.unknown || t.worker != nil || t.spec.Role == core.Call || t.stuck != "" || !s.inputsReady(t) {
			continue
		}
		fit, ok := fits[t.spec.Resources]
		if !ok {
			fit = s.fitsOpen(t.spec.Resources)
			fits[t.spec.Resources] = fit
		}
		if !fit {
			state, _, _ := s.c.TaskState(t.spec.ID)
			s.failf("task %d (%s) needs %v, which no open worker has, but was not told why it waits", t.spec.ID, state, t.spec.Resources)
		}
	}
}

// unstick forgets the reason of a task that was dispatched or ended: the
// core does not tell it cleared.
func (s *sim) unstick(t *simTask) {
	if t.stuck != "" {
		s.setStuck(t, "")
	}
}

// withoutUnplaceable returns acts less the Unplaceable actions, which
// applyUnplaceable checks apart from the exact expectations of a step.
func withoutUnplaceable(acts []core.Action) []core.Action {
	if !slices.ContainsFunc(acts, func(a core.Action) bool { _, ok := a.(core.Unplaceable); return ok }) {
		return acts
	}
	return slices.DeleteFunc(slices.Clone(acts), func(a core.Action) bool { _, ok := a.(core.Unplaceable); return ok })
}
