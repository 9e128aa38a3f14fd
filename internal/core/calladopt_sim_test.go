package core_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"trellis/internal/core"
)

// TestCallAdoptionReplay: calls of one library run on two workers; the
// manager is killed at a random step. A new core replays the journal
// (install, submit, each call's Dispatched and end), then each worker comes
// back, or not, with the instances and calls it still runs (a random part
// of them died meanwhile). An independent model, from what the first life
// left running, predicts which calls are adopted (their attempt runs on in
// an instance that came back), which at-most-once calls go to unknown, and
// which calls run again. Checked: exactly the predicted calls are adopted
// and never dispatched again; no at-most-once call is dispatched again
// without a Reconcile; no call ends twice; every call ends.
func TestCallAdoptionReplay(t *testing.T) {
	var adopted, rerun, unknowns int // over all seeds: the test must reach each
	for seed := uint64(1); seed <= 300; seed++ {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			a, r, u := callAdoptionLife(t, seed)
			adopted, rerun, unknowns = adopted+a, rerun+r, unknowns+u
		})
	}
	if adopted == 0 || rerun == 0 || unknowns == 0 {
		t.Errorf("over all seeds: %d calls adopted, %d run again, %d unknown; want each above 0", adopted, rerun, unknowns)
	}
	t.Logf("over all seeds: %d calls adopted, %d run again, %d unknown", adopted, rerun, unknowns)
}

type callRun struct {
	d      core.Dispatch
	inc    string
	amo    bool
	stayed bool // still running when its worker comes back
}

func callAdoptionLife(t *testing.T, seed uint64) (adopted, rerun, unknowns int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const calls = 24
	const window = 30 * time.Second
	lib := core.LibraryInstalled{Lib: 3, Resources: res(1000, 100), Slots: 2}
	incs := map[core.WorkerID]string{1: "A", 2: "B"}
	amo := map[core.TaskID]bool{}
	var batch []core.Task
	for id := core.TaskID(1); id <= calls; id++ {
		c := callOf(id, 3, 1)
		if rng.IntN(3) == 0 {
			c = atMostOnce(c)
			amo[id] = true
		}
		batch = append(batch, c)
	}

	// Life 1.
	c1 := core.New()
	running := map[core.TaskID]core.Dispatch{}
	instOn := map[core.InstanceID]core.WorkerID{}
	var starting []core.Dispatch
	dispatched := map[core.TaskID]core.Dispatch{} // journaled: the last dispatch of each call
	ended := map[core.TaskID]core.Done{}
	var journal []core.Event
	step1 := func(ev core.Event) {
		for _, a := range c1.Step(ev) {
			switch a := a.(type) {
			case core.Dispatch:
				switch {
				case a.Lib != 0:
					starting = append(starting, a)
					instOn[a.Instance] = a.Worker
				default:
					running[a.Task] = a
					dispatched[a.Task] = a
					journal = append(journal, core.TaskAdrift{Task: a.Task, Attempt: a.Attempt, Where: incs[a.Worker], Until: window})
				}
			case core.Done:
				if _, ok := ended[a.Task]; ok {
					t.Fatalf("life 1: call %d ended twice", a.Task)
				}
				ended[a.Task] = a
				delete(running, a.Task)
				journal = append(journal, core.TaskRecovered{Task: a.Task, Attempt: a.Attempt, Outcome: a.Outcome})
			case core.Requeued:
				delete(running, a.Task)
			}
		}
	}
	step1(join(1, res(2000, 200)))
	step1(join(2, res(2000, 200)))
	step1(lib)
	step1(submit(batch...))
	cut := rng.IntN(3 * calls)
	for i := 0; i < cut; i++ {
		switch {
		case len(starting) > 0 && rng.IntN(2) == 0:
			d := starting[0]
			starting = starting[1:]
			step1(core.InstanceReady{Instance: d.Instance, Attempt: d.Attempt, Worker: d.Worker})
		case len(running) > 0:
			ids := sortedIDs(running)
			d := running[ids[rng.IntN(len(ids))]]
			step1(ok(d.Task, d.Attempt, d.Worker))
		}
	}

	// What the workers keep: every ready instance, but a random one dies;
	// its calls die with it. A random call ends while the manager is away
	// (its report is lost with nothing to adopt: it is not listed).
	back := map[core.WorkerID]bool{1: rng.IntN(4) != 0, 2: rng.IntN(4) != 0}
	keptInsts := map[core.WorkerID][]core.KeptInstance{}
	alive := map[core.InstanceID]bool{}
	notReady := map[core.InstanceID]bool{}
	for _, d := range starting {
		notReady[d.Instance] = true
	}
	for id, w := range instOn {
		if notReady[id] || rng.IntN(5) == 0 {
			continue // not started, or died
		}
		alive[id] = true
		keptInsts[w] = append(keptInsts[w], core.KeptInstance{Instance: id, Attempt: 1, Lib: 3})
	}
	keptCalls := map[core.WorkerID][]core.AttemptRef{}
	expectAdopted := map[core.TaskID]bool{}
	expectUnknown := map[core.TaskID]bool{}
	for _, id := range sortedIDs(running) {
		d := running[id]
		stays := alive[d.Instance] && rng.IntN(6) != 0
		if stays {
			keptCalls[d.Worker] = append(keptCalls[d.Worker], core.AttemptRef{Task: id, Attempt: d.Attempt, Instance: d.Instance})
		}
		switch {
		case stays && back[d.Worker]:
			expectAdopted[id] = true
		case amo[id]:
			expectUnknown[id] = true
		}
	}

	// Life 2: replay, then the workers that come back, then a new one.
	done1 := map[core.TaskID]bool{}
	for id := range ended {
		done1[id] = true
	}
	c2 := core.New()
	c2.SetInstanceBase(1 << 40)
	reconciled := map[core.TaskID]bool{}
	gotAdopted := map[core.TaskID]bool{}
	gotUnknown := map[core.TaskID]bool{}
	running2 := map[core.TaskID]core.Dispatch{}
	var starting2 []core.Dispatch
	step2 := func(ev core.Event) {
		for _, a := range c2.Step(ev) {
			switch a := a.(type) {
			case core.Dispatch:
				switch {
				case a.Lib != 0:
					if a.Instance <= 1<<40 {
						t.Fatalf("life 2 started instance %d, not above its base", a.Instance)
					}
					starting2 = append(starting2, a)
				case expectAdopted[a.Task]:
					t.Fatalf("call %d, adopted, was dispatched again: %+v", a.Task, a)
				case amo[a.Task] && !reconciled[a.Task] && dispatched[a.Task].Attempt > 0:
					t.Fatalf("at-most-once call %d, dispatched in life 1, was dispatched again without a reconcile", a.Task)
				case done1[a.Task]:
					t.Fatalf("call %d ended in life 1 and was dispatched again", a.Task)
				default:
					running2[a.Task] = a
				}
			case core.Adopted:
				gotAdopted[a.Task] = true
				running2[a.Task] = core.Dispatch{Task: a.Task, Attempt: a.Attempt, Worker: a.Worker}
			case core.Unknown:
				gotUnknown[a.Task] = true
			case core.Done:
				if _, ok := ended[a.Task]; ok {
					t.Fatalf("call %d ended twice: %+v", a.Task, a)
				}
				ended[a.Task] = a
				delete(running2, a.Task)
			case core.Requeued:
				delete(running2, a.Task)
			}
		}
	}
	c2.Step(lib)
	c2.Step(submit(batch...))
	for _, ev := range journal {
		if d, ok := ev.(core.TaskRecovered); ok {
			c2.Step(d)
			continue
		}
		c2.Step(ev)
	}
	for _, w := range []core.WorkerID{1, 2} {
		if back[w] {
			j := join(10+w, res(2000, 200))
			j.Incarnation, j.Instances, j.Running = incs[w], keptInsts[w], keptCalls[w]
			step2(j)
		}
	}
	for _, id := range keys(gotUnknown) { // the operator says: run it again
		reconciled[id] = true
		step2(core.Reconcile{Task: id, Verdict: core.VerdictRerun})
	}
	step2(core.Tick{Now: window})
	step2(join(20, res(2000, 200)))
	for n := 0; len(ended) < calls; n++ {
		if n > 50*calls {
			t.Fatalf("no end after %d steps: %d of %d calls ended", n, len(ended), calls)
		}
		for _, id := range keys(gotUnknown) {
			if !reconciled[id] {
				reconciled[id] = true
				step2(core.Reconcile{Task: id, Verdict: core.VerdictRerun})
			}
		}
		switch {
		case len(starting2) > 0:
			d := starting2[0]
			starting2 = starting2[1:]
			step2(core.InstanceReady{Instance: d.Instance, Attempt: d.Attempt, Worker: d.Worker})
		case len(running2) > 0:
			ids := sortedIDs(running2)
			d := running2[ids[0]]
			step2(ok(d.Task, d.Attempt, d.Worker))
		default:
			step2(core.Tick{Now: window + time.Duration(n+1)*time.Second})
		}
	}
	if !sameSet(gotAdopted, expectAdopted) {
		t.Errorf("adopted %v, want %v", keys(gotAdopted), keys(expectAdopted))
	}
	if !sameSet(gotUnknown, expectUnknown) {
		t.Errorf("unknown %v, want %v", keys(gotUnknown), keys(expectUnknown))
	}
	return len(gotAdopted), len(running) - len(gotAdopted) - len(gotUnknown), len(gotUnknown)
}

func sortedIDs(m map[core.TaskID]core.Dispatch) []core.TaskID {
	ids := make([]core.TaskID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func sameSet(a, b map[core.TaskID]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[core.TaskID]bool) []core.TaskID {
	ks := make([]core.TaskID, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}
