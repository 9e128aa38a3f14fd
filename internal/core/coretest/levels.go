package coretest

// Levels and sessions: with Config.LevelFraction set, declared files get
// cache levels and are declared by client sessions that end at random.
// The model checks every Unlink: it names files the worker really holds,
// of task level, or of workflow level whose every declaring session has
// ended, and that no unfinished task reads (nor a producer running again);
// the fake worker deletes them, and checkWorkers then finds that the core
// forgot those replicas. Keep checks every Dispatch.Keep: it names every
// temp output and no output the harness never declared.

import (
	"fmt"
	"slices"

	"trellis/internal/core"
)

var (
	unlinkedLevels = []core.Level{core.LevelTask, core.LevelWorkflow}
	keptLevels     = []core.Level{0, core.LevelWorker, core.LevelForever}
)

// level draws the level of a new declared file, when levels are on.
func (s *sim) level(df *dataFile) core.Level {
	if s.cfg.LevelFraction == 0 {
		return 0
	}
	if s.rng.Float64() < s.cfg.LevelFraction {
		df.level = pick(s.rng, unlinkedLevels)
	} else {
		df.level = pick(s.rng, keptLevels)
	}
	return df.level
}

// redeclare has the next batch's session declare f too, now and then,
// when levels are on (a Kind 0 spec: the session only). It returns f.
func (s *sim) redeclare(f core.FileID) core.FileID {
	if s.cfg.LevelFraction > 0 && s.rng.IntN(4) == 0 {
		s.d.specs = append(s.d.specs, core.FileSpec{ID: f})
	}
	return f
}

// declare sends the pending declarations, from a live session when levels
// are on.
func (s *sim) declare() {
	ev := core.FilesDeclared{Files: s.d.specs}
	if s.cfg.LevelFraction > 0 {
		if len(s.d.sessions) == 0 || s.rng.IntN(8) == 0 {
			s.d.nextSession++
			s.d.sessions = append(s.d.sessions, fmt.Sprintf("session-%d", s.d.nextSession))
		}
		ev.Session = pick(s.rng, s.d.sessions)
		for _, spec := range ev.Files {
			if df := s.d.decl[spec.ID]; df != nil && !slices.Contains(df.sessions, ev.Session) {
				df.sessions = append(df.sessions, ev.Session)
			}
		}
	}
	s.do(ev)
	s.d.specs = nil
}

// endSession ends a random live session.
func (s *sim) endSession() {
	if len(s.d.sessions) == 0 {
		return
	}
	i := s.rng.IntN(len(s.d.sessions))
	sess := s.d.sessions[i]
	s.d.sessions = slices.Delete(s.d.sessions, i, i+1)
	s.d.ended[sess] = true
	s.stats.SessionsEnded++
	s.do(core.SessionEnded{Session: sess})
}

// endSessions ends every live session, once the run has settled.
func (s *sim) endSessions() {
	for len(s.d.sessions) > 0 {
		s.endSession()
	}
}

func (s *sim) applyUnlink(a core.Unlink) {
	w := s.addressee(a, a.Worker, a.Files)
	if w == nil {
		return
	}
	for _, f := range a.Files {
		df := s.d.decl[f]
		if df == nil {
			s.failf("%+v of file %d, which the harness never declared", a, f)
			continue
		}
		switch df.level {
		case core.LevelTask:
			if g, t := s.readBelow(f, df.depth); t != nil {
				s.failf("%+v of file %d of depth %d, while unfinished task %d reads file %d written from it", a, f, df.depth, t.spec.ID, g)
			}
		case core.LevelWorkflow:
			for _, sess := range df.sessions {
				if !s.d.ended[sess] {
					s.failf("%+v of workflow-level file %d, declared by live session %s (of %v)", a, f, sess, df.sessions)
				}
			}
			if len(df.sessions) == 0 {
				s.failf("%+v of workflow-level file %d, which no session declared", a, f)
			}
		default:
			s.failf("%+v of file %d of level %d, which workers keep", a, f, df.level)
		}
		if t := s.reader(f); t != nil {
			s.failf("%+v of file %d, which unfinished task %d reads (running on %v, running again %v)", a, f, t.spec.ID, t.worker, t.rerunning)
		}
		if !w.holds.has(f) && !w.evicted.has(f) {
			s.failf("%+v of file %d, which the worker does not hold (holders %v)", a, f, df.at)
		}
		s.unhold(w, f)
		w.loose.remove(f)
		w.evicted.remove(f) // the core forgets it: the report to come changes nothing
		df.unlinked = true
		s.stats.Unlinked++
	}
}

// reader returns an unfinished task that depends on f, or nil.
func (s *sim) reader(f core.FileID) *simTask {
	for _, t := range s.tasks {
		if t.submitted && (!t.done || t.rerunning && s.stillRerun(t)) && slices.Contains(t.deps, f) {
			return t
		}
	}
	return nil
}

// stillRerun reports whether the core still runs t again: one it gave up
// in this step (it no longer knows it) reads nothing more, though the
// model ends its run again only once the step is over (checkReruns).
func (s *sim) stillRerun(t *simTask) bool {
	_, _, known := s.c.TaskState(t.spec.ID)
	return known
}

// readBelow returns a temp file written by a task that read f, n levels
// down, and an unfinished task that reads it, or nil: a file that, lost,
// would be made again from f. It follows the readers that wrote a temp
// file not at the manager and that the core did not forget (Forget: its
// re-run failed, so what it wrote cannot be made again from f).
func (s *sim) readBelow(f core.FileID, n int32) (core.FileID, *simTask) {
	if n <= 0 {
		return 0, nil
	}
	for _, r := range s.tasks {
		if !r.submitted || r.forgotten || !slices.Contains(r.deps, f) || !s.lineage(r) {
			continue
		}
		for _, g := range r.spec.Outputs {
			if df := s.d.decl[g]; df == nil || !df.temp || df.manager {
				continue // not made again from f
			}
			if t := s.reader(g); t != nil {
				return g, t
			}
			if g2, t := s.readBelow(g, n-1); t != nil {
				return g2, t
			}
		}
	}
	return 0, nil
}

// lineage reports whether the core keeps t to re-run it: it wrote a temp
// file with no copy at the manager.
func (s *sim) lineage(t *simTask) bool {
	for _, g := range t.spec.Outputs {
		if df := s.d.decl[g]; df != nil && df.temp && !df.manager {
			return true
		}
	}
	return false
}

// checkKeep checks the outputs Dispatch a says t's worker keeps: every
// temp output, and no output never declared.
func (s *sim) checkKeep(a core.Dispatch, t *simTask) {
	for _, f := range t.spec.Outputs {
		df := s.d.decl[f]
		if df == nil || t.spec.Keep == core.KeepCheckpointSync && df.temp {
			continue // sent to the manager: kept only while a task reads it (see ckpt.go)
		}
		if kept := slices.Contains(a.Keep(), f); kept != df.temp {
			s.failf("Dispatch %+v keeps output %d: %v, want %v (temp)", a, f, kept, df.temp)
		}
	}
}
