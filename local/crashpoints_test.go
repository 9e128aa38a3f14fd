package local

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/journal"
	"trellis/internal/journal/journaltest"
	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// crashLife is one life of a manager with --state and one worker, in
// process: it (re)submits the request by keys in session s1 and waits for
// every task's Done; it returns each task's stdout by key.
func crashLife(t *testing.T, state string, req *pb.SubmitRequest) map[string]string {
	t.Helper()
	return life(t, manager.Config{StateDir: state}, req, nil, nil)
}

// life is crashLife with a configuration (its listen address, secret and
// adopt window are set here); onEnd, when set, is called with each task's
// end as the client receives it, and done with the manager once every
// task has ended.
func life(t *testing.T, cfg manager.Config, req *pb.SubmitRequest, onEnd func(*pb.TaskEvent), done func(*manager.Manager)) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.Listen, cfg.Secret, cfg.AdoptWindow = "127.0.0.1:0", "s", time.Millisecond
	m, err := manager.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mctx, stopManager := context.WithCancel(ctx)
	mdone := make(chan struct{})
	go func() { defer close(mdone); m.Run(mctx) }() // exits when stopManager is called
	defer func() { stopManager(); <-mdone }()
	w, err := worker.New(worker.Config{Manager: m.Addr(), Secret: "s", Name: "w", Workdir: t.TempDir(),
		Resources: resources.Resources{MilliCores: 2000, MemoryMB: 1024, DiskMB: 1024},
		Connect:   func(ctx context.Context) worker.Stream { return m.ConnectWorker(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { defer close(wdone); w.Run(wctx) }() // exits when stopWorker is called
	defer func() { stopWorker(); <-wdone }()
	if _, err := m.Handler().Submit(ctx, connect.NewRequest(req)); err != nil {
		t.Fatalf("submit again by keys: %v", err)
	}
	out := make(map[string]string)
	wctx2, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	m.WatchEvents(wctx2, &pb.WatchRequest{Session: "s1"}, func(b *pb.TaskEvents) error {
		for _, ev := range b.Events {
			if ev.State == pb.TaskState_TASK_STATE_DONE {
				if onEnd != nil {
					onEnd(ev)
				}
				if ev.Outcome.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS {
					t.Errorf("task %s: %v %s", ev.Key, ev.Outcome.GetKind(), ev.Outcome.GetMessage())
				}
				out[ev.Key] = string(ev.Outcome.GetStdout())
			}
		}
		if len(out) == len(req.Tasks) {
			stopWatch()
		}
		return nil
	})
	if len(out) != len(req.Tasks) {
		t.Fatalf("%d of %d tasks ended within 30 s", len(out), len(req.Tasks))
	}
	if done != nil {
		done(m)
	}
	return out
}

// TestCrashPoints (the crash-point enumeration): a manager with
// --state and a worker run five tasks that log their idempotency key when
// they run. Then, for every prefix of that journal, as if the manager had
// been killed right after its last record became durable, a new manager
// starts on it, a new worker joins, and the client submits again by keys:
// every task ends with the same stdout; a task whose end the prefix holds
// does not run again, and every other runs exactly once.
func TestCrashPoints(t *testing.T) {
	state := t.TempDir()
	req, first, lines := firstLife(t, state)
	recs := journaltest.Read(t, state)
	check := func(t *testing.T, dir string, n int) { checkRecovery(t, dir, n, req, first, lines) }
	journaltest.CrashPoints(t, state, func(t *testing.T, dir string, n int) {
		check(t, dir, n)
		// The same prefix with a snapshot (compaction): after all of its
		// records when n is odd, after half of them (and the rest as
		// records) when n is even. The manager must recover the same.
		k := n
		if n%2 == 0 {
			k = n / 2
		}
		if k == 0 {
			return
		}
		t.Run(fmt.Sprint("snapshot-after-", k), func(t *testing.T) {
			dir := t.TempDir()
			journaltest.WriteCompacted(t, dir, recs[:n], k, manager.FoldJournal)
			check(t, dir, n)
		})
	})
}

// firstLife runs, in a manager with --state state, five tasks that log
// their idempotency key to a file when they run (lines reads it), and
// returns the request and each task's stdout by key.
func firstLife(t *testing.T, state string) (req *pb.SubmitRequest, first map[string]string, lines func() []string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "runs.log")
	req = &pb.SubmitRequest{Session: "s1"}
	for i := range 5 {
		key := fmt.Sprintf("k%d", i)
		req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: key, Key: key, Resources: &pb.Resources{Cores: 1},
			Command: fmt.Sprintf(`printf '%%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> %s; echo out %d`, log, i)})
	}
	first = crashLife(t, state, req)
	lines = func() []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(string(b))
	}
	if n := len(lines()); n != 5 {
		t.Fatalf("the first life ran %d tasks; want 5", n)
	}
	return req, first, lines
}

// TestFormat1Upgrade: a state directory whose journal is in format 1 (as
// trellis wrote it before segments: journal.db alone), holding the
// records of a life that ran five tasks, opens in a new manager, which
// converts it: every task ends with the stdout of that life, and none
// runs again. The same with the first half of the records in a format 1
// snapshot.
func TestFormat1Upgrade(t *testing.T) {
	state := t.TempDir()
	req, first, lines := firstLife(t, state)
	recs := journaltest.Read(t, state)
	half := len(recs) / 2
	folded, err := manager.FoldJournal(recs[:half])
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		upto       int
		snap, recs [][]byte
	}{
		{name: "records", recs: recs},
		{name: "snapshot and records", upto: half, snap: folded, recs: recs[half:]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			journaltest.WriteFormat1(t, dir, uint64(tt.upto), tt.snap, tt.recs)
			before := len(lines())
			got := crashLife(t, dir, req)
			if ran := lines()[before:]; len(ran) != 0 {
				t.Errorf("after the upgrade, tasks ran again: %v", ran)
			}
			if diff := cmp.Diff(first, got); diff != "" {
				t.Errorf("stdout after the upgrade (-first life +after):\n%s", diff)
			}
			if _, err := os.Stat(filepath.Join(dir, journal.DirName)); err != nil {
				t.Errorf("no journal directory after the upgrade: %v", err)
			}
		})
	}
}

// checkRecovery is TestCrashPoints' check of one crash point: a manager on
// dir, which holds what the journal held after record n (a snapshot
// perhaps, and records), ends every task with the stdout of the first
// life (first), and runs again exactly the tasks whose end dir lacks.
func checkRecovery(t *testing.T, dir string, n int, req *pb.SubmitRequest, first map[string]string, lines func() []string) {

	ended := make(map[string]bool) // keys whose end the prefix holds
	for _, b := range journaltest.Read(t, dir) {
		var rec pb.JournalRecord
		if err := goproto.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		if d := rec.GetDone(); d != nil {
			ended[fmt.Sprintf("k%d", d.TaskId-1)] = true // IDs follow the one submit's order
		}
	}
	before := len(lines())
	got := crashLife(t, dir, req)
	ran := make(map[string]int)
	for _, line := range lines()[before:] {
		_, key, _ := strings.Cut(line, "/")
		ran[key]++
	}
	for _, task := range req.Tasks {
		k := task.Key
		want := 1
		if ended[k] {
			want = 0
		}
		if ran[k] != want {
			t.Errorf("after %d records: task %s ran %d times; want %d (its end in the journal: %v)", n, k, ran[k], want, ended[k])
		}
		if got[k] != first[k] {
			t.Errorf("after %d records: task %s printed %q; want %q", n, k, got[k], first[k])
		}
	}
}

// TestJournalBounded runs 3,000 tasks through a manager whose journal is
// compacted every 300 records: the journal then holds (in its snapshot
// and after it) about one record per task, where without compaction it
// holds two (each dispatch and each end), and a manager restarted on it
// has every task's end and runs none again.
func TestJournalBounded(t *testing.T) {
	const tasks, batch, every = 3000, 100, 300
	state := t.TempDir()
	runs := filepath.Join(t.TempDir(), "runs.log") // each run appends a line
	var reqs []*pb.SubmitRequest
	all := &pb.SubmitRequest{Session: "s1"}
	for i := 0; i < tasks; i += batch {
		req := &pb.SubmitRequest{Session: "s1"}
		for k := i; k < i+batch; k++ {
			key := fmt.Sprint("t", k)
			req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: key, Key: key, Command: "echo >> " + runs, Resources: &pb.Resources{Cores: 0.25}})
		}
		reqs = append(reqs, req)
		all.Tasks = append(all.Tasks, req.Tasks...)
	}
	// A bound that holds with compaction, and not without (about twice
	// the tasks): a snapshot of one Started, the submits and an end per
	// task, and what may come after it before the next is due.
	const folded = 1 + tasks/batch + tasks
	const bound = folded + max(every, folded/4)
	life(t, manager.Config{StateDir: state, SnapshotRecords: every}, reqs[0], nil, func(m *manager.Manager) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, req := range reqs[1:] {
			if _, err := m.Handler().Submit(ctx, connect.NewRequest(req)); err != nil {
				t.Fatal(err)
			}
		}
		ended := 0
		m.WatchEvents(ctx, &pb.WatchRequest{Session: "s1"}, func(b *pb.TaskEvents) error {
			for _, ev := range b.Events {
				if ev.State == pb.TaskState_TASK_STATE_DONE {
					ended++
				}
			}
			if ended >= tasks {
				cancel()
			}
			return nil
		})
		if ended < tasks {
			t.Fatalf("%d of %d tasks ended within 60 s", ended, tasks)
		}
		// Poll (the compactor runs each second) until a snapshot folds
		// the journal down to the bound; a deadline fails the test.
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			snap, err := m.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			j := snap.Status.Journal
			if kept := j.SnapshotRecords + j.SinceSnapshot; kept <= bound && j.SnapshotFolded > 0 {
				t.Logf("%d records written, %d kept: a snapshot of %d (%d bytes) folding records 1..%d, and %d after it",
					j.Durable, kept, j.SnapshotRecords, j.SnapshotBytes, j.SnapshotFolded, j.SinceSnapshot)
				if j.Durable <= bound {
					t.Errorf("%d records written: the test needs more than the bound (%d) to test it", j.Durable, bound)
				}
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
				continue
			}
			t.Fatalf("the journal keeps %d records (a snapshot of %d, and %d after it); want at most %d",
				j.SnapshotRecords+j.SinceSnapshot, j.SnapshotRecords, j.SinceSnapshot, bound)
		}
	})
	lines := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "\n")
	}
	before := lines()
	again := life(t, manager.Config{StateDir: state}, all, nil, nil)
	if len(again) != tasks {
		t.Errorf("after a restart on the compacted journal, %d of %d tasks ended", len(again), tasks)
	}
	if ran := lines() - before; ran != 0 {
		t.Errorf("after a restart on the compacted journal, %d tasks ran again; want none", ran)
	}
}

// TestJournalFaults is RECOVERY.md's scenario 8: while a workflow of 200
// tasks runs, a tenth of the journal's commits fail (the write fails, the
// fsync fails, or the write lands and reports a timeout), until 150 tasks
// have ended. No client hears of a task's end before its Done record is
// durable (a commit reported it written), no record is written twice, and
// every task ends.
func TestJournalFaults(t *testing.T) {
	const tasks = 200
	req := &pb.SubmitRequest{Session: "s1"}
	for i := range tasks {
		key := fmt.Sprint("t", i)
		req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: key, Key: key, Command: "echo " + key, Resources: &pb.Resources{Cores: 0.25}})
	}
	var (
		mu       sync.Mutex
		durable  = make(map[uint64]bool) // tasks whose Done a commit reported written
		ended    int                     // ends the client heard of
		early    []uint64                // ends heard before their record was durable
		faulting = true
		rng      = rand.New(rand.NewPCG(8, 0))
	)
	faulty := journaltest.NewFaulty(func([]journal.Record) journaltest.Fault {
		mu.Lock()
		defer mu.Unlock()
		if !faulting || rng.IntN(10) > 0 {
			return journaltest.None
		}
		return journaltest.Fault(1 + rng.IntN(3))
	})
	wrap := func(s journal.Store) journal.Store {
		return commitHook{faulty.Wrap(s), func(recs []journal.Record) {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				var rec pb.JournalRecord
				if err := goproto.Unmarshal(r.Data, &rec); err != nil {
					t.Errorf("record %d: %v", r.Seq, err)
				}
				if d := rec.GetDone(); d != nil {
					durable[d.TaskId] = true
				}
			}
		}}
	}
	onEnd := func(ev *pb.TaskEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !durable[ev.TaskId] {
			early = append(early, ev.TaskId)
		}
		if ended++; ended == tasks*3/4 {
			faulting = false
		}
	}
	state := t.TempDir()
	out := life(t, manager.Config{StateDir: state, JournalWrap: wrap}, req, onEnd, nil)
	for _, task := range req.Tasks {
		if want := task.Key + "\n"; out[task.Key] != want {
			t.Errorf("task %s printed %q, want %q", task.Key, out[task.Key], want)
		}
	}
	if ok, failed := faulty.Counts(); failed == 0 {
		t.Fatalf("no fault was injected in %d commits: the test tests nothing", ok)
	} else {
		t.Logf("%d commits failed, %d succeeded", failed, ok)
	}
	if len(early) > 0 {
		t.Errorf("the client heard of the end of tasks %v before their Done record was durable", early)
	}
	// Every record once: one submit, one end per task, one dispatch per
	// attempt.
	submits, dones, dispatches := 0, make(map[uint64]int), make(map[string]int)
	for _, b := range journaltest.Read(t, state) {
		var rec pb.JournalRecord
		if err := goproto.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.GetSubmitted() != nil:
			submits++
		case rec.GetDone() != nil:
			dones[rec.GetDone().TaskId]++
		case rec.GetDispatched() != nil:
			d := rec.GetDispatched()
			dispatches[fmt.Sprint(d.TaskId, "/", d.Attempt)]++
		}
	}
	if submits != 1 {
		t.Errorf("%d Submitted records, want 1", submits)
	}
	for id := uint64(1); id <= tasks; id++ {
		if dones[id] != 1 {
			t.Errorf("task %d has %d Done records, want 1", id, dones[id])
		}
	}
	for k, n := range dispatches {
		if n != 1 {
			t.Errorf("attempt %s has %d Dispatched records, want 1", k, n)
		}
	}
}

// commitHook calls committed with each batch a commit reports written.
type commitHook struct {
	journal.Store
	committed func([]journal.Record)
}

func (c commitHook) Commit(recs []journal.Record) error {
	err := c.Store.Commit(recs)
	if err == nil {
		c.committed(recs)
	}
	return err
}
