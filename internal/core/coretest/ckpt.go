package coretest

// Keep annotations and checkpoints (core/checkpoint.go): with
// Config.KeepFraction set in a data run, tasks get a random Keep (lineage,
// replicas, a checkpoint made with the report or after it), and some are
// nondeterministic or have effects. The fake manager answers the core's
// Checkpoint actions: a copy is committed when the worker named really
// holds the file, else (or now and then, while faults are on) it fails.
// The model checks, from the actions and the real holdings:
//   - the commit barrier (rule 3): a task with effects is dispatched only
//     when every input a nondeterministic task wrote has a copy at the
//     manager (checkpointed, or uploaded with its producer's report);
//   - lineage stops at a checkpoint (rule 6): no Rerun names a file with a
//     copy at the manager (applyRerun: such a file is available);
//   - a synchronous checkpoint is made before its task counts as done: at
//     the Done success of a task kept by a sync checkpoint, the core holds
//     every output it reported at the manager;
//   - a Checkpoint names a produced file that is ready, not at the manager
//     yet, kept by an async checkpoint or written by a nondeterministic
//     task, and a live worker that holds it (or evicted it unreported); one
//     at a time per file;
//   - a Barred names an unfinished task with effects that reads the file,
//     written by a nondeterministic task and not at the manager; a
//     Checkpoint of it is asked for, unless one is, or no live worker
//     holds it;
//   - a commit counts (Core.Checkpointed) exactly when it answers the last
//     Checkpoint of the file, from a worker that still holds it;
// and at the end, that every async-kept output that a live worker holds is
// checkpointed.

import (
	"slices"

	"trellis/internal/core"
)

// ckptState is the fake manager's side of checkpoints.
type ckptState struct {
	asked   map[core.FileID]core.WorkerID // the last Checkpoint of each file, unanswered and its copy still there
	pending []core.Checkpoint             // unanswered, in the order asked
	keep    map[core.TaskID][]core.FileID // the outputs the last dispatch of each task keeps
}

// genKeep gives a generated task a random Keep, and makes it
// nondeterministic or effectful now and then (Config.KeepFraction).
func (s *sim) genKeep(spec *core.Task) {
	r := s.rng
	if !s.cfg.dataOn() || s.cfg.KeepFraction == 0 || r.Float64() >= s.cfg.KeepFraction {
		return
	}
	spec.Nondeterministic = r.IntN(2) == 0
	spec.Effectful = r.IntN(3) == 0
	spec.Keep = pick(r, []core.Keep{core.KeepLineage, core.KeepReplicate, core.KeepCheckpointSync, core.KeepCheckpointAsync})
	if spec.Keep == core.KeepReplicate {
		spec.Replicas = 2
	}
}

// keptOutputs applies a generated task's Keep to the model of its outputs.
func (s *sim) keptOutputs(spec core.Task) {
	for _, f := range spec.Outputs {
		if df := s.d.decl[f]; df != nil && spec.Keep == core.KeepReplicate {
			df.want = max(df.want, spec.Replicas)
		}
	}
}

// ckptDispatch checks the commit barrier at a task's dispatch, and
// remembers which outputs the worker keeps.
func (s *sim) ckptDispatch(a core.Dispatch, t *simTask) {
	if s.k.keep == nil {
		s.k.keep = make(map[core.TaskID][]core.FileID)
	}
	s.k.keep[t.spec.ID] = a.Keep()
	if !t.spec.Effectful && !t.spec.AtMostOnce {
		return
	}
	for _, f := range t.deps {
		if s.uncommitted(f) {
			s.failf("Dispatch %+v of a task with effects, while its input %d, written by nondeterministic task %d, has no copy at the manager (the commit barrier)",
				a, f, s.files[f].producer.spec.ID)
		}
	}
}

// uncommitted reports whether f was written by a nondeterministic task
// and has no copy at the manager.
func (s *sim) uncommitted(f core.FileID) bool {
	fi, df := s.files[f], s.d.decl[f]
	return fi != nil && df != nil && fi.producer.spec.Nondeterministic && !df.manager
}

// barredBy reports whether t, which has effects, may not read its input
// f yet: the model's view of the commit barrier, for inputsReady.
func (s *sim) barredBy(t *simTask, f core.FileID) bool {
	return (t.spec.Effectful || t.spec.AtMostOnce) && s.uncommitted(f)
}

// syncOutput makes the report of an output of a task kept by a sync
// checkpoint: sent to the manager with the report, kept on the worker
// only when the dispatch said so.
func (s *sim) syncOutput(t *simTask, o *core.OutputInfo, df *dataFile) {
	o.Manager, o.Inline = true, df.size < 1<<16
	o.Kept = slices.Contains(s.k.keep[t.spec.ID], o.File)
	df.manager, df.inline = true, o.Inline
}

func (s *sim) applyCheckpoint(a core.Checkpoint) {
	fi, df, w := s.files[a.File], s.d.decl[a.File], s.workers[a.Worker]
	switch {
	case fi == nil || df == nil || df.kind != core.Produced:
		s.failf("%+v of a file no task produces", a)
	case df.manager:
		s.failf("%+v of a file with a copy at the manager already", a)
	case !fi.producer.done || fi.producer.doneKind != core.Success:
		// (Its producer may run again for another of its outputs.)
		s.failf("%+v of a file whose producer %d never succeeded (done %v, %s)", a, fi.producer.spec.ID, fi.producer.done, fi.producer.doneKind)
	case fi.producer.spec.Keep != core.KeepCheckpointAsync && !fi.producer.spec.Nondeterministic:
		s.failf("%+v of an output of task %d, kept by %s and deterministic: nothing asks for it", a, fi.producer.spec.ID, fi.producer.spec.Keep)
	case w == nil:
		s.failf("%+v from an unknown or departed worker", a)
	case !w.holds.has(a.File) && !w.evicted.has(a.File):
		s.failf("%+v from a worker that does not hold the file (holders %v)", a, df.at)
	}
	if prev, ok := s.k.asked[a.File]; ok {
		s.failf("%+v while the Checkpoint of the file from worker %d is unanswered", a, prev)
	}
	if s.k.asked == nil {
		s.k.asked = make(map[core.FileID]core.WorkerID)
	}
	s.k.asked[a.File] = a.Worker
	s.k.pending = append(s.k.pending, a)
}

func (s *sim) applyBarred(a core.Barred) {
	t := s.task(a.Task)
	switch {
	case t == nil || t.done && !t.rerunning || t.worker != nil:
		s.failf("%+v of a task that does not wait", a)
	case !t.spec.Effectful && !t.spec.AtMostOnce:
		s.failf("%+v of a task without effects", a)
	case !slices.Contains(t.deps, a.File):
		s.failf("%+v: the task does not read the file", a)
	case !s.uncommitted(a.File):
		s.failf("%+v of a file a deterministic task wrote, or with a copy at the manager", a)
	}
	s.stats.Barred++
}

// ckptUnheld: w no longer really holds f, so a commit of the Checkpoint
// asked from it would not count.
func (s *sim) ckptUnheld(w *simWorker, f core.FileID) {
	if s.k.asked[f] == w.id {
		delete(s.k.asked, f)
	}
}

// ckptAfterStep checks what a step did to checkpoints: a Barred file is
// being checkpointed (or has no copy to checkpoint); the outputs of a task
// kept by a sync checkpoint are at the manager when it is done.
func (s *sim) ckptAfterStep(acts []core.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case core.Barred:
			if _, ok := s.k.asked[a.File]; !ok && len(s.d.decl[a.File].at) > 0 && !s.evictedSomewhere(a.File) {
				s.failf("%+v, but no Checkpoint of the file is asked for, though workers %v hold it", a, s.d.decl[a.File].at)
			}
		case core.Done:
			t := s.task(a.Task)
			if a.Outcome.Kind != core.Success || t == nil || t.spec.Keep != core.KeepCheckpointSync {
				continue
			}
			if ev, ok := s.ev.(core.TaskFinished); ok {
				for _, o := range ev.Outputs {
					if !s.c.Checkpointed(o.File) {
						s.failf("%+v of a task kept by a sync checkpoint, but its output %d is not at the manager", a, o.File)
					}
				}
				s.stats.SyncCheckpoints++
			}
		}
	}
}

// evictedSomewhere reports whether a live worker evicted f without
// telling the core yet (the core may have asked it for the checkpoint).
func (s *sim) evictedSomewhere(f core.FileID) bool {
	for _, w := range s.live {
		if w.evicted.has(f) {
			return true
		}
	}
	return false
}

// answerCheckpoint answers a random unanswered Checkpoint: committed when
// its worker really holds the file, else failed. With faults, one it
// holds fails now and then, and one it no longer holds is committed late:
// the copy was made before the worker lost the file (or was lost), and the
// commit comes after. The model
// decides whether the commit counts (only as the answer to the file's last
// Checkpoint, from a worker that still holds it), and checks the core
// agrees.
func (s *sim) answerCheckpoint(faults bool) {
	i := s.rng.IntN(len(s.k.pending))
	a := s.k.pending[i]
	s.k.pending = slices.Delete(s.k.pending, i, i+1)
	w := s.workers[a.Worker]
	held := w != nil && w.holds.has(a.File)
	last := s.k.asked[a.File] == a.Worker
	if last {
		delete(s.k.asked, a.File)
	}
	late := !held && faults
	if !held && !late || faults && s.rng.Float64() < s.cfg.TransferFailRate {
		s.stats.CheckpointFailures++
		s.do(core.CheckpointFailed{File: a.File, Worker: a.Worker, Why: "upload failed"})
		return
	}
	df := s.d.decl[a.File]
	was, inline := df.manager, df.size < 1<<16
	counts := last && held && !was
	if counts { // before the step: it may fetch from the manager's copy
		df.manager, df.inline = true, inline
		s.stats.Checkpoints++
	}
	s.do(core.CheckpointCommitted{File: a.File, Worker: a.Worker, Size: df.size, Inline: inline})
	if got := s.c.Checkpointed(a.File); got != df.manager {
		s.failf("after CheckpointCommitted %+v: Checkpointed = %v, want %v (the last Checkpoint of the file: %v)", a, got, df.manager, last)
	}
}

// ckptEnd answers every checkpoint left, with the Ticks that ask again
// for the failed ones, and checks that every output kept by an async
// checkpoint that a live worker holds is at the manager.
func (s *sim) ckptEnd() {
	for range 4 {
		for len(s.k.pending) > 0 {
			s.answerCheckpoint(false)
		}
		s.tick()
		if s.liveTasks+s.d.rerunning > 0 || len(s.running) > 0 {
			s.quiesce() // the Tick made a lost file again
		}
	}
	for _, t := range s.tasks {
		if t.spec.Keep != core.KeepCheckpointAsync || !t.done || t.doneKind != core.Success || t.rerunning {
			continue
		}
		for _, f := range t.spec.Outputs {
			if df := s.d.decl[f]; df != nil && df.temp && len(df.at) > 0 && !df.manager {
				s.failf("output %d of task %d, kept by an async checkpoint and held by workers %v, was never checkpointed", f, t.spec.ID, df.at)
			}
		}
	}
}
