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
// no open worker had room for it.
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
	case len(w.held) >= s.cfg.Ahead:
		s.failf("Dispatch %+v ahead to worker %d, which holds %d already, the most", a, w.id, len(w.held))
	case len(w.insts) > 0:
		s.failf("Dispatch %+v ahead to worker %d, which hosts library instances", a, w.id)
	}
	if s.cfg.dataOn() || s.cfg.libsOn() {
		return // tasks and instances staging hold resources the model does not see
	}
	for _, x := range s.live {
		if !x.draining && len(x.held) == 0 && x.total.Sub(x.used).Fits(need) {
			s.failf("Dispatch %+v ahead to worker %d while worker %d has room (free %v)", a, w.id, x.id, x.total.Sub(x.used))
		}
	}
}

// startHeld starts, on each worker not draining, the held tasks that fit,
// first first; then it checks that the core holds what each worker holds.
func (s *sim) startHeld() {
	for _, w := range s.live {
		s.startOn(w)
		got := s.c.Ahead(w.id)
		want := make([]core.TaskID, len(w.held))
		for i, t := range w.held {
			want[i] = t.spec.ID
		}
		if !slices.Equal(got, want) {
			s.failf("worker %d holds %v ahead; the core says %v", w.id, want, got)
		}
	}
}

// startOn starts the held tasks of w that fit, first first, unless w drains.
func (s *sim) startOn(w *simWorker) {
	for !w.draining && len(w.held) > 0 {
		t := w.held[0]
		used := w.used.Add(t.spec.Resources)
		if !w.total.Fits(used) {
			return
		}
		w.held = w.held[1:]
		s.heldN--
		t.held = false
		w.used = used
		t.runPos = len(s.running)
		s.running = append(s.running, t)
	}
}
