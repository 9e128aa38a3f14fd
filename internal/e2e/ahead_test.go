package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"trellis"
	"trellis/internal/txnlog"
)

// With --ahead, a busy 1-core worker holds tasks beyond its core. A held
// task that is cancelled ends cancelled and never runs; the worker is then
// killed with SIGKILL, and its running and held tasks run again on another
// worker with the right outputs, byte for byte.
func TestAheadHeldTasksKilledAndCancelled(t *testing.T) {
	c := newCluster(t, "--ahead", "2")
	victim := c.worker("victim", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)

	dir := t.TempDir()
	marker := func(i int) string { return filepath.Join(dir, fmt.Sprintf("ran-%d", i)) }
	var tasks []*trellis.Task
	for i := range 3 {
		// The first attempt of each sleeps long: the victim is killed
		// while task 0 runs and task 1 is held behind it.
		tk := trellis.NewTask(fmt.Sprintf("touch %s; [ $TRELLIS_ATTEMPT = 1 ] && sleep 60; echo task-%d attempt $TRELLIS_ATTEMPT > out.txt", marker(i), i))
		tk.AddOutput(trellis.Output(filepath.Join(dir, fmt.Sprintf("out-%d.txt", i))), "out.txt")
		tasks = append(tasks, tk)
	}
	hs, err := cl.Submit(context.Background(), tasks...)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the victim to run one task and hold two", func() bool {
		s, err := cl.Status(context.Background())
		return err == nil && len(s.Workers) == 1 && len(s.Workers[0].Running) == 1 && len(s.Workers[0].Ahead) == 2
	})
	waitFor(t, 20*time.Second, "task 0 to start", func() bool {
		_, err := os.Stat(marker(0))
		return err == nil
	})
	if _, err := os.Stat(marker(1)); err == nil {
		t.Fatal("task 1 started beside task 0 on a worker of one core")
	}

	// Cancel the last held task: it ends cancelled, and never ran.
	if err := hs[2].Cancel(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, hs[2], 20*time.Second); r.Kind != trellis.Cancelled {
		t.Errorf("held task 2 cancelled ended %v (%v), want cancelled", r.Kind, r.Err())
	}
	if _, err := os.Stat(marker(2)); err == nil {
		t.Error("held task 2 ran, though it was cancelled before it started")
	}

	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	c.worker("rescuer", nil, "--cores", "1")
	for i, h := range hs[:2] {
		r := waitResult(t, h, time.Minute)
		if !r.OK() {
			t.Fatalf("task %d: %v", i, r.Err())
		}
		if r.Worker != "rescuer" || r.Attempts != 2 {
			t.Errorf("task %d finished on %s in attempt %d, want the rescuer, attempt 2", i, r.Worker, r.Attempts)
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out-%d.txt", i)))
		want := fmt.Sprintf("task-%d attempt %d\n", i, r.Attempts)
		if err != nil || string(got) != want {
			t.Errorf("out-%d.txt = %q, %v; want %q", i, got, err, want)
		}
	}
	s, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Succeeded != 2 || s.Failed != 1 || s.Finished != 3 { // the cancelled one counts as failed
		t.Errorf("status: %d succeeded, %d failed, %d finished; want 2, 1 (cancelled), 3", s.Succeeded, s.Failed, s.Finished)
	}
}

// A manager with --state and --ahead is killed with SIGKILL while its
// 1-core worker runs one task and holds two (each journaled as
// dispatched). Restarted on the same --state, it adopts the running
// attempt; the held ones, which the worker dropped with its broken
// connection and does not report, run again: every task starts once and
// ends with its own output.
func TestAheadHeldTasksAfterRestart(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	started, gate := filepath.Join(dir, "started.log"), filepath.Join(dir, "gate")
	c := newCluster(t, "--state", state, "--ahead", "2")
	c.worker("w1", nil, "--cores", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.client()
	c.waitWorkers(cl, 1)
	var tasks []*trellis.Task
	for i := range 3 {
		tk := trellis.NewTask(fmt.Sprintf(`echo %d >> "$STARTED"; while [ ! -e "$GATE" ]; do sleep 0.05; done; echo "task-%d attempt $TRELLIS_ATTEMPT"`, i, i))
		tk.Name, tk.Key, tk.Env = fmt.Sprintf("t%d", i), fmt.Sprintf("t%d", i), []string{"STARTED=" + started, "GATE=" + gate}
		tasks = append(tasks, tk)
	}
	hs, err := cl.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "one task to start and two to be held", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(fileLines(started)) == 1 && len(s.Workers) == 1 && len(s.Workers[0].Running) == 1 && len(s.Workers[0].Ahead) == 2 &&
			s.Journal != nil && s.Journal.Durable >= 5 // start, submit, three dispatches
	})
	c.manager.signal(t, 9)
	c.manager.wait(t, 10*time.Second)
	c.manager = start(t, nil, "manager", "--listen", c.addr, "--secret-file", c.secretFile, "--state", state, "--ahead", "2")
	waitFor(t, time.Minute, "the manager to adopt the running attempt", func() bool {
		return strings.Contains(c.manager.Output(), "adopted an attempt dispatched before the restart")
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	first := fileLines(started)[0]
	for i, h := range hs {
		r, err := h.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		attempt := 2 // held, dropped, dispatched again
		if fmt.Sprint(i) == first {
			attempt = 1 // adopted
		}
		if want := fmt.Sprintf("task-%d attempt %d\n", i, attempt); !r.OK() || string(r.Stdout) != want {
			t.Errorf("task %d: %s %q (%s); want success with %q", i, r.Kind, r.Stdout, r.Message, want)
		}
	}
	if got := fileLines(started); len(got) != 3 {
		t.Errorf("tasks started %q; want each of the three once", got)
	}
}

// TestAheadHeldTaskRunningWhenStarted: a task held ahead is RUNNING (its
// transaction log record, its start time) when its worker starts it, after
// the task before it ended, not when it was sent.
func TestAheadHeldTaskRunningWhenStarted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "txn.jsonl")
	c := newCluster(t, "--ahead", "2", "--txn-log", path)
	c.worker("w1", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("first", "sleep 0.5"), named("held", "true"))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if r := waitResult(t, h, time.Minute); !r.OK() {
			t.Fatalf("%v", r.Err())
		}
	}
	var recs []txnlog.Record
	waitFor(t, 10*time.Second, "the log to show both tasks done", func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		recs, _ = txnlog.Read(f)
		done := 0
		for _, r := range recs {
			if r.Event == txnlog.TaskDone {
				done++
			}
		}
		return done == 2
	})
	var got []string
	names := make(map[uint64]string)
	for _, r := range recs {
		switch r.Event {
		case txnlog.TaskSubmitted:
			names[r.Task] = r.Name
		case txnlog.TaskRunning, txnlog.TaskDone:
			got = append(got, r.Event+" "+names[r.Task])
		}
	}
	want := []string{"task_running first", "task_done first", "task_running held", "task_done held"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("task records of the transaction log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAheadHeldTaskQueuedInStatus: a task held ahead waits for a core as
// a queued one does: trellis status counts it queued, not running, and
// lists it under its worker apart from what runs. The demand a factory
// sizes itself by counts it waiting: a worker that joins takes it back.
func TestAheadHeldTaskQueuedInStatus(t *testing.T) {
	c := newCluster(t, "--ahead", "1")
	c.worker("w1", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("long", "sleep 60"), named("held", "sleep 60"), named("queued", "sleep 60"))
	if err != nil {
		t.Fatal(err)
	}
	var st *trellis.Status
	waitFor(t, 20*time.Second, "one task running and two queued", func() bool {
		st, err = cl.Status(ctx)
		return err == nil && st.Running == 1 && st.Ready == 2
	})
	if len(st.Workers) != 1 || !slices.Equal(st.Workers[0].Running, []uint64{hs[0].ID}) || !slices.Equal(st.Workers[0].Ahead, []uint64{hs[1].ID}) {
		t.Errorf("workers %+v; want w1 running task %d and holding %d ahead", st.Workers, hs[0].ID, hs[1].ID)
	}
	if len(st.Demand) != 1 || st.Demand[0].Waiting != 2 || st.Demand[0].Running != 1 {
		t.Errorf("demand %+v; want 2 waiting (one held ahead: a worker that joins takes it back) and 1 running", st.Demand)
	}
	for _, h := range hs {
		if err := h.Cancel(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A worker that joins while another holds a task ahead behind a long one
// takes it back: the manager revokes it, the holder hands it back, and it
// runs on the newcomer at once (attempt 2), while the long one still runs.
func TestAheadHeldTaskTakenBack(t *testing.T) {
	c := newCluster(t, "--ahead", "1")
	c.worker("busy", nil, "--cores", "1")
	cl := c.client()
	c.waitWorkers(cl, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hs, err := cl.Submit(ctx, named("long", "sleep 60"), named("held", `echo "held attempt $TRELLIS_ATTEMPT"`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "busy to run one task and hold the other", func() bool {
		s, err := cl.Status(ctx)
		return err == nil && len(s.Workers) == 1 && len(s.Workers[0].Running) == 1 && slices.Equal(s.Workers[0].Ahead, []uint64{hs[1].ID})
	})
	c.worker("late", nil, "--cores", "1")
	r := waitResult(t, hs[1], 30*time.Second)
	if !r.OK() || r.Worker != "late" || r.Attempts != 2 || string(r.Stdout) != "held attempt 2\n" {
		t.Errorf("held task: ok %v (%v) on %q, attempt %d, stdout %q; want success on late, attempt 2, \"held attempt 2\\n\"",
			r.OK(), r.Err(), r.Worker, r.Attempts, r.Stdout)
	}
	s, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Running != 1 || s.Succeeded != 1 {
		t.Errorf("status: %d running, %d succeeded; want the long task still running, the held one done", s.Running, s.Succeeded)
	}
	if err := hs[0].Cancel(ctx); err != nil {
		t.Fatal(err)
	}
}
