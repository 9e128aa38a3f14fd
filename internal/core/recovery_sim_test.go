package core_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"trellis/internal/core"
)

// record is what a journal keeps: a submitted batch, or a task's end.
type record struct {
	batch []core.Task
	done  *core.TaskRecovered
}

// life drives one core with fake workers, journaling as the manager does.
type life struct {
	t       *testing.T
	rng     *rand.Rand
	c       *core.Core
	running map[core.TaskID]core.Dispatch
	fetches []core.Fetch
	atMgr   map[core.FileID]bool // outputs the workers upload to the manager
	journal []record
	dones   []core.Done // in this life
	reruns  map[core.TaskID]bool
	ended   map[core.TaskID]bool // Done in any life
	redone  map[core.TaskID]bool // Done in a life before this one
}

func (l *life) step(ev core.Event) []core.Action {
	acts := l.c.Step(ev)
	for _, a := range acts {
		switch a := a.(type) {
		case core.Dispatch:
			if a.Task == 0 {
				continue
			}
			if l.redone[a.Task] && !l.reruns[a.Task] {
				l.t.Fatalf("task %d, which ended before the restart, was dispatched again without a Rerun", a.Task)
			}
			l.running[a.Task] = a
		case core.Fetch:
			l.fetches = append(l.fetches, a)
		case core.Rerun:
			l.reruns[a.Task] = true
		case core.Done:
			if l.ended[a.Task] {
				l.t.Fatalf("task %d: a second Done %+v", a.Task, a)
			}
			l.ended[a.Task] = true
			l.dones = append(l.dones, a)
			rec := core.TaskRecovered{Task: a.Task, Attempt: a.Attempt, Outcome: a.Outcome}
			if a.Outcome.Kind == core.Success {
				f := core.FileID(1000 + a.Task)
				if l.atMgr[f] {
					rec.Outputs = []core.OutputInfo{{File: f, Size: 5, Manager: true, Inline: true}}
				}
			}
			l.journal = append(l.journal, record{done: &rec})
		}
	}
	return acts
}

// finishOne ends a random running attempt, or serves a random fetch.
func (l *life) finishOne() bool {
	if len(l.fetches) > 0 && l.rng.IntN(2) == 0 {
		i := l.rng.IntN(len(l.fetches))
		f := l.fetches[i]
		l.fetches = append(l.fetches[:i], l.fetches[i+1:]...)
		l.step(core.TransferDone{Transfer: f.Transfer, OK: true, Size: 5})
		return true
	}
	if len(l.running) == 0 {
		if len(l.fetches) > 0 {
			return l.finishOne()
		}
		return false
	}
	ids := make([]core.TaskID, 0, len(l.running))
	for id := range l.running {
		ids = append(ids, id)
	}
	slicesSort(ids)
	d := l.running[ids[l.rng.IntN(len(ids))]]
	delete(l.running, d.Task)
	ev := core.TaskFinished{Task: d.Task, Attempt: d.Attempt, Worker: d.Worker, Outcome: core.Outcome{Kind: core.Success}}
	if l.rng.IntN(8) == 0 {
		ev.Outcome = core.Outcome{Kind: core.Failed, Message: "exit status 1"}
	} else {
		f := core.FileID(1000 + d.Task)
		ev.Outputs = []core.OutputInfo{{File: f, Size: 5, Kept: !l.atMgr[f], Manager: l.atMgr[f], Inline: l.atMgr[f]}}
	}
	l.step(ev)
	return true
}

func slicesSort(ids []core.TaskID) {
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
}

// TestRecoveryReplay kills a core at a random step, builds a new one from
// what the journal holds (batches submitted, then each task's end, in the
// order they happened), and lets new workers finish. The replay repeats
// every Done of the first life, in order (but the worker, which is gone),
// and dispatches nothing; no task
// ends twice; a task that ended runs again only for lineage (Rerun), when
// its output lived in the lost workers and a task still needs it; every
// task ends.
func TestRecoveryReplay(t *testing.T) {
	var replayed, reruns int // over all seeds: the test must reach both
	for seed := uint64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			const tasks = 40
			r := res(1000, 100)
			l := &life{t: t, rng: rng, c: core.New(), running: map[core.TaskID]core.Dispatch{},
				atMgr: map[core.FileID]bool{}, reruns: map[core.TaskID]bool{}, ended: map[core.TaskID]bool{}}
			l.step(join(1, res(2000, 200)))
			l.step(join(2, res(2000, 200)))
			var batches [][]core.Task
			next := core.TaskID(1)
			for next <= tasks {
				var batch []core.Task
				for n := 1 + rng.IntN(5); n > 0 && next <= tasks; n-- {
					tk := files(task(next, r), nil, ids(core.FileID(1000+next)))
					l.atMgr[core.FileID(1000+next)] = rng.IntN(2) == 0
					if next > 1 && rng.IntN(2) == 0 {
						tk.Inputs = ids(core.FileID(1000 + 1 + core.TaskID(rng.IntN(int(next-1)))))
					}
					if next > 1 && rng.IntN(4) == 0 {
						// Among the batch's own tasks: earlier batches' may be forgotten.
						if first := next - core.TaskID(len(batch)); first < next {
							tk.After = []core.TaskID{first + core.TaskID(rng.IntN(int(next-first)))}
						}
					}
					batch = append(batch, tk)
					next++
				}
				batches = append(batches, batch)
			}
			// Life 1, killed after cut steps.
			cut := rng.IntN(3 * tasks)
			for i, b := 0, 0; i < cut; i++ {
				if b < len(batches) && (rng.IntN(3) == 0 || len(l.running) == 0) {
					l.journal = append(l.journal, record{batch: batches[b]})
					l.step(submit(batches[b]...))
					b++
				} else if !l.finishOne() && b == len(batches) {
					break
				}
			}
			first := l.dones

			// Life 2: replay, then new workers.
			redone := l.ended
			l2 := &life{t: t, rng: rng, c: core.New(), running: map[core.TaskID]core.Dispatch{},
				atMgr: l.atMgr, reruns: map[core.TaskID]bool{}, ended: map[core.TaskID]bool{}, redone: redone}
			submitted := 0
			for _, rec := range l.journal {
				var acts []core.Action
				if rec.batch != nil {
					acts = l2.step(submit(rec.batch...))
					submitted++
				} else {
					acts = l2.step(*rec.done)
				}
				for _, a := range acts {
					switch a.(type) {
					case core.Done, core.Unplaceable:
					default:
						t.Fatalf("replay of %+v: action %#v, want only Done", rec, a)
					}
				}
			}
			if diff := cmp.Diff(first, l2.dones, cmpopts.IgnoreFields(core.Done{}, "Worker")); diff != "" {
				t.Fatalf("the replay's Dones differ from the first life's (-first +replay):\n%s", diff)
			}
			replayed += len(first)
			l2.ended = map[core.TaskID]bool{}
			for id := range redone {
				l2.ended[id] = true
			}
			l2.dones = nil
			l2.step(join(11, res(2000, 200)))
			l2.step(join(12, res(2000, 200)))
			for _, b := range batches[submitted:] {
				l2.step(submit(b...))
			}
			for steps := 0; l2.finishOne(); steps++ {
				if steps > 100*tasks {
					t.Fatalf("no end after %d steps", steps)
				}
			}
			reruns += len(l2.reruns)
			if got := len(l2.ended); got != tasks {
				t.Errorf("%d tasks ended, want %d (first life: %d, cut at step %d)", got, tasks, len(redone), cut)
			}
		})
	}
	if replayed == 0 || reruns == 0 {
		t.Errorf("over all seeds: %d Dones replayed, %d tasks run again for lineage; want both above 0", replayed, reruns)
	}
	t.Logf("over all seeds: %d Dones replayed, %d tasks run again for lineage", replayed, reruns)
}
