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
//
// A Revoke (core.stealFor) reaches the holder a while later (answerRevoke):
// if it still holds the task, it hands it back; if it started it, or it
// ended, nothing. Without data or libraries, after each step no worker
// that holds nothing has room for a task held on another unless a Revoke
// for it is on its way (checkNoIdleRoom).

// revokeRef is a Revoke on its way: of an attempt, for a worker.
type revokeRef struct {
	attemptRef
	thief core.WorkerID
}

// checkRevoke checks a Revoke: the task is held on the worker named, not
// revoked already, and the worker it is for, another open one that holds
// nothing, has room for it.
func (s *sim) checkRevoke(a core.Revoke) {
	t := s.task(a.Task)
	switch {
	case s.cfg.Ahead == 0:
		s.failf("Revoke %+v with ahead off", a)
	case t == nil || !t.held || t.worker == nil || t.worker.id != a.Worker || t.attempt != a.Attempt:
		s.failf("Revoke %+v of an attempt not held there", a)
	case slices.ContainsFunc(s.revokes, func(r revokeRef) bool { return r.task == a.Task && r.attempt == a.Attempt }):
		s.failf("Revoke %+v again", a)
	}
	x := s.workers[a.For]
	if x != nil {
		s.startOn(x) // what the step freed there started when it freed, before this came
	}
	if x == nil || x.gone || x.draining || x.id == a.Worker || len(x.held) > 0 {
		s.failf("Revoke %+v for a worker that is gone, drains, is the holder, or holds tasks itself", a)
	}
	if !s.cfg.dataOn() && !s.cfg.libsOn() && !x.total.Sub(x.used).Fits(t.spec.Resources) {
		s.failf("Revoke %+v for worker %d, which has no room for it (free %v, needs %v)", a, x.id, x.total.Sub(x.used), t.spec.Resources)
	}
	s.revokes = append(s.revokes, revokeRef{attemptRef{a.Task, a.Attempt, a.Worker}, a.For})
	s.stats.Revokes++
}

// answerRevoke delivers the first Revoke on its way: a worker that still
// holds the attempt hands it back, as a real one does.
func (s *sim) answerRevoke() {
	r := s.revokes[0]
	s.revokes = s.revokes[1:]
	if t := s.task(r.task); t.held && !t.killed && t.attempt == r.attempt && t.worker != nil && t.worker.id == r.worker && !t.worker.gone {
		s.stats.HandedBackHeld++
		s.do(core.TaskReturned{Task: r.task, Attempt: r.attempt, Worker: r.worker})
	}
}

// checkNoIdleRoom fails if a worker that holds nothing has room for a task
// held on another, unless a Revoke is on its way for the worker or for the
// task: else the task would wait behind the holder's running ones while a
// core idles.
func (s *sim) checkNoIdleRoom() {
	if s.cfg.Ahead == 0 || s.heldN == 0 || s.cfg.dataOn() || s.cfg.libsOn() {
		return
	}
	for _, x := range s.live {
		if x.draining || len(x.held) > 0 || slices.ContainsFunc(s.revokes, func(r revokeRef) bool { return r.thief == x.id }) {
			continue
		}
		room := x.total.Sub(x.used)
		for _, v := range s.live {
			for _, t := range v.held {
				revoked := slices.ContainsFunc(s.revokes, func(r revokeRef) bool { return r.task == t.spec.ID && r.attempt == t.attempt })
				if v != x && !t.killed && !revoked && room.Fits(t.spec.Resources) {
					s.failf("worker %d has room (%v) for task %d, held on worker %d, and no Revoke is on its way", x.id, room, t.spec.ID, v.id)
				}
			}
		}
	}
}

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
	s.checkNoIdleRoom()
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
