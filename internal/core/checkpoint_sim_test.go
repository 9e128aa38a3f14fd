package core_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"trellis/internal/core"
)

// ckptSim drives one core with fake workers that lose everything they
// hold, and a checkpoint store that answers Checkpoint actions, and checks
// the invariants of checkpoint.go after every step.
type ckptSim struct {
	t       *testing.T
	rng     *rand.Rand
	c       *core.Core
	specs   map[core.TaskID]core.Task
	running map[core.TaskID]core.Dispatch
	fetches []core.Fetch
	asked   []core.Checkpoint // checkpoints asked for, not answered
	holds   map[core.WorkerID][]core.FileID
	stored  map[core.FileID]bool // committed: at the checkpoint store
	ended   map[core.TaskID]bool
	next    core.WorkerID
	// The journal, as the manager keeps it: each task's end (a sync
	// checkpoint with it), and each checkpoint committed.
	journal   []core.Event
	replaying bool
	commits   int
	reruns    int
}

func (s *ckptSim) step(ev core.Event) {
	acts := s.c.Step(ev)
	for _, a := range acts {
		switch a := a.(type) {
		case core.Dispatch:
			if a.Task == 0 {
				continue
			}
			spec := s.specs[a.Task]
			if spec.Effectful || spec.AtMostOnce {
				for _, f := range spec.Inputs {
					if p := s.specs[core.TaskID(f-1000)]; p.Nondeterministic && !s.c.Checkpointed(f) {
						s.t.Fatalf("after %#v: effectful task %d dispatched while its nondeterministic input %d is not checkpointed", ev, a.Task, f)
					}
				}
			}
			s.running[a.Task] = a
		case core.Fetch:
			s.fetches = append(s.fetches, a)
		case core.Checkpoint:
			s.asked = append(s.asked, a)
		case core.Rerun:
			if s.stored[a.File] {
				s.t.Fatalf("after %#v: file %d, checkpointed, is recomputed (task %d runs again)", ev, a.File, a.Task)
			}
			s.reruns++
		case core.Done:
			if s.replaying {
				continue
			}
			if s.ended[a.Task] {
				s.t.Fatalf("task %d: a second Done", a.Task)
			}
			s.ended[a.Task] = true
			rec := core.TaskRecovered{Task: a.Task, Attempt: a.Attempt, Outcome: a.Outcome}
			if f := core.FileID(1000 + a.Task); a.Outcome.Kind == core.Success && s.specs[a.Task].Keep == core.KeepCheckpointSync {
				rec.Outputs = []core.OutputInfo{{File: f, Size: 5, Manager: true}}
			}
			s.journal = append(s.journal, rec)
		}
	}
	if c, ok := ev.(core.CheckpointCommitted); ok && !s.replaying && s.c.Checkpointed(c.File) {
		s.stored[c.File] = true
		s.journal = append(s.journal, core.CheckpointCommitted{File: c.File, Size: c.Size})
	}
}

// restart loses the manager and every worker: a new core replays the
// journal, then new workers join.
func (s *ckptSim) restart(replay ...core.Event) {
	s.c = core.New()
	s.running, s.fetches, s.asked = map[core.TaskID]core.Dispatch{}, nil, nil
	s.holds = map[core.WorkerID][]core.FileID{}
	s.replaying = true
	for _, ev := range append(replay, s.journal...) {
		s.step(ev)
	}
	s.replaying = false
	for range 3 {
		s.join()
	}
}

func (s *ckptSim) join() {
	s.next++
	s.holds[s.next] = nil
	s.step(join(s.next, res(2000, 1000)))
}

func (s *ckptSim) alive() []core.WorkerID {
	var ws []core.WorkerID
	for w := range s.holds {
		ws = append(ws, w)
	}
	slices.Sort(ws)
	return ws
}

// act does one random thing; it reports false when nothing is left to do.
func (s *ckptSim) act(faults bool) bool {
	switch r := s.rng.IntN(10); {
	case faults && r == 0 && len(s.holds) > 1:
		ws := s.alive()
		w := ws[s.rng.IntN(len(ws))]
		delete(s.holds, w)
		for id, d := range s.running {
			if d.Worker == w {
				delete(s.running, id)
			}
		}
		s.step(core.WorkerLeft{Worker: w, Reason: "killed"})
		s.join()
		return true
	case r <= 3 && len(s.asked) > 0:
		i := s.rng.IntN(len(s.asked))
		a := s.asked[i]
		s.asked = slices.Delete(s.asked, i, i+1)
		switch {
		case !slices.Contains(s.holds[a.Worker], a.File):
			s.step(core.CheckpointFailed{File: a.File, Worker: a.Worker, Why: "not there"})
		case faults && s.rng.IntN(4) == 0:
			s.step(core.CheckpointFailed{File: a.File, Worker: a.Worker, Why: "upload failed"})
		default:
			s.commits++
			s.step(committed(a.File, a.Worker, 5))
		}
		return true
	case r <= 6 && len(s.fetches) > 0:
		i := s.rng.IntN(len(s.fetches))
		f := s.fetches[i]
		s.fetches = slices.Delete(s.fetches, i, i+1)
		if _, ok := s.holds[f.Worker]; ok {
			s.holds[f.Worker] = append(s.holds[f.Worker], f.File)
		}
		s.step(fetched(f.Transfer, 5))
		return true
	case len(s.running) > 0:
		ids := make([]core.TaskID, 0, len(s.running))
		for id := range s.running {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		d := s.running[ids[s.rng.IntN(len(ids))]]
		delete(s.running, d.Task)
		f := core.FileID(1000 + d.Task)
		sync := s.specs[d.Task].Keep == core.KeepCheckpointSync
		s.holds[d.Worker] = append(s.holds[d.Worker], f)
		s.step(core.TaskFinished{Task: d.Task, Attempt: d.Attempt, Worker: d.Worker, Outcome: core.Outcome{Kind: core.Success},
			Outputs: []core.OutputInfo{{File: f, Size: 5, Kept: true, Manager: sync}}})
		if sync {
			s.stored[f] = true
		}
		return true
	case len(s.asked) > 0 || len(s.fetches) > 0:
		return s.act(faults)
	}
	s.step(core.Tick{Now: 1})
	return len(s.running) > 0 || len(s.asked) > 0 || len(s.fetches) > 0
}

// TestCheckpointSim: chains and fans of tasks with random Keep,
// determinism and effects, while workers are lost with every file they
// hold and checkpoints fail; in half the seeds the manager is lost too, with
// every worker, and a new core replays the journal (each task's end and
// each checkpoint committed). After every step: no effectful task is
// dispatched while a nondeterministic input it reads is not
// checkpointed; no checkpointed file is recomputed (no Rerun names it);
// no task ends twice. At the end every task has ended.
//
// The same invariants, and more, are checked in every seed of coretest's
// data simulations (Config.KeepFraction; TestSimulationData). This test
// stays for what coretest does not do: the loss of the manager with every
// worker, and a new core that replays the journal.
func TestCheckpointSim(t *testing.T) {
	var commits, reruns, restarts int
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			s := &ckptSim{t: t, rng: rng, c: core.New(), specs: map[core.TaskID]core.Task{},
				running: map[core.TaskID]core.Dispatch{}, holds: map[core.WorkerID][]core.FileID{},
				stored: map[core.FileID]bool{}, ended: map[core.TaskID]bool{}}
			for range 3 {
				s.join()
			}
			const tasks = 30
			var decl []core.FileSpec
			var batch []core.Task
			for id := core.TaskID(1); id <= tasks; id++ {
				tk := core.Task{ID: id, Resources: res(1000, 100), Retries: 100, Outputs: ids(core.FileID(1000 + id)),
					Nondeterministic: rng.IntN(2) == 0, Effectful: rng.IntN(3) == 0,
					Keep: []core.Keep{core.KeepLineage, core.KeepReplicate, core.KeepCheckpointSync, core.KeepCheckpointAsync}[rng.IntN(4)]}
				if tk.Keep == core.KeepReplicate {
					tk.Replicas = 2
				}
				for n := rng.IntN(3); n > 0 && id > 1; n-- {
					f := core.FileID(1000 + 1 + core.TaskID(rng.IntN(int(id-1))))
					if !slices.Contains(tk.Inputs, f) {
						tk.Inputs = append(tk.Inputs, f)
					}
				}
				s.specs[id] = tk
				decl = append(decl, core.FileSpec{ID: core.FileID(1000 + id), Kind: core.Produced, Upload: tk.Keep == core.KeepCheckpointSync})
				batch = append(batch, tk)
			}
			s.step(core.FilesDeclared{Files: decl})
			s.step(submit(batch...))
			cut := -1 // half the seeds restart the manager with every worker once
			if seed%2 == 0 {
				cut = rng.IntN(4 * tasks)
			}
			for steps := 0; ; steps++ {
				if steps > 200*tasks {
					t.Fatalf("no end after %d steps: %d tasks ended", steps, len(s.ended))
				}
				if steps == cut {
					s.restart(core.FilesDeclared{Files: decl}, submit(batch...))
					restarts++
				}
				if !s.act(steps < 60*tasks) && len(s.ended) == tasks {
					break
				}
			}
			commits += s.commits
			reruns += s.reruns
		})
	}
	if commits == 0 || reruns == 0 || restarts == 0 {
		t.Errorf("over all seeds: %d checkpoints committed, %d producers run again, %d restarts; want all above 0", commits, reruns, restarts)
	}
	t.Logf("over all seeds: %d checkpoints committed, %d producers run again, %d restarts", commits, reruns, restarts)
}
