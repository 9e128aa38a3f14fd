package manager

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"trellis/internal/inproc"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// joinAs connects a worker of two cores and incarnation inc to m, listing
// the attempts it still runs from run runID, and reads its welcome.
func joinAs(ctx context.Context, t *testing.T, m *Manager, inc, runID string, running ...*pb.RunningAttempt) (*inproc.End[*pb.WorkerMessage, *pb.ManagerMessage], *pb.Welcome) {
	t.Helper()
	w := m.ConnectWorker(ctx)
	hello := &pb.Hello{Name: "w", Protocol: proto.Protocol, Resources: &pb.Resources{Cores: 2, MemoryMb: 1000, DiskMb: 1000},
		Incarnation: inc, RunId: runID, Running: running}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	first, err := w.Receive()
	if err != nil || first.GetWelcome() == nil {
		t.Fatalf("first message %v, %v; want a welcome", first, err)
	}
	return w, first.GetWelcome()
}

// runs reads the worker's stream until n Runs came (batched or not).
func runs(t *testing.T, w *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage], n int) []*pb.Run {
	t.Helper()
	var got []*pb.Run
	for len(got) < n {
		msg, err := w.Receive()
		if err != nil {
			t.Fatalf("the stream ended after %d Runs: %v; want %d", len(got), err, n)
		}
		for _, m := range append(msg.GetBatch().GetMsgs(), msg) {
			if r := m.GetRun(); r != nil {
				got = append(got, r)
			}
		}
	}
	return got
}

func report(w *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage], t *testing.T, task uint64, attempt uint32, epoch uint64, kind pb.ResultKind, exit int32) {
	t.Helper()
	d := &pb.AttemptDone{TaskId: task, Attempt: attempt, Epoch: epoch, Outcome: &pb.Outcome{Kind: kind, ExitCode: exit}}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: d}}); err != nil {
		t.Fatal(err)
	}
}

// TestAdoptAfterRestart: a manager with --state dispatched two tasks to a
// worker and stopped. Restarted, it takes epoch 2; the worker comes back
// running one of them: that attempt is adopted (no Run again) and its
// report of epoch 1 counts. The other runs again as attempt 2, and a late
// report of its attempt 1 (old attempt, old epoch) is ignored.
func TestAdoptAfterRestart(t *testing.T) {
	dir := t.TempDir()
	m, stop := startWithState(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	w, welcome := joinAs(ctx, t, m, "I1", "")
	if welcome.RunId == "" || welcome.Epoch != 1 {
		t.Fatalf("welcome of run %q epoch %d; want a run ID and epoch 1", welcome.RunId, welcome.Epoch)
	}
	// A retry each: the manager may see the worker leave before it stops
	// (a loaded machine), and without one would fail both tasks then, and
	// journal it, instead of leaving them to the next life to adopt. A
	// requeue is not journaled: the next life finds them dispatched.
	ids, err := submit(t, m,
		&pb.TaskSpec{Name: "a", Key: "a", Command: "true", Resources: &pb.Resources{Cores: 1}, Retries: 1},
		&pb.TaskSpec{Name: "b", Key: "b", Command: "true", Resources: &pb.Resources{Cores: 1}, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs(t, w, 2) {
		if r.Attempt != 1 || r.Epoch != 1 {
			t.Fatalf("Run of task %d attempt %d epoch %d; want attempt 1 of epoch 1", r.TaskId, r.Attempt, r.Epoch)
		}
	}
	cancel()
	w.Close()
	stop()

	m2, _ := startWithState(t, dir)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	a, b := ids[0], ids[1]
	w2, welcome2 := joinAs(ctx2, t, m2, "I1", welcome.RunId, &pb.RunningAttempt{TaskId: b, Attempt: 1, Epoch: 1})
	defer w2.Close()
	if welcome2.RunId != welcome.RunId || welcome2.Epoch != 2 {
		t.Fatalf("welcome after the restart: run %q epoch %d; want run %q epoch 2", welcome2.RunId, welcome2.Epoch, welcome.RunId)
	}
	if r := nextRun(t, w2); r.TaskId != a || r.Attempt != 2 || r.Epoch != 2 {
		t.Fatalf("after the restart: Run of task %d attempt %d epoch %d; want task %d attempt 2 epoch 2 (b adopted)", r.TaskId, r.Attempt, r.Epoch, a)
	}
	report(w2, t, a, 1, 1, pb.ResultKind_RESULT_KIND_SUCCESS, 0) // stale: attempt 1 was not adopted
	report(w2, t, a, 2, 2, pb.ResultKind_RESULT_KIND_FAILED, 3)
	report(w2, t, b, 1, 7, pb.ResultKind_RESULT_KIND_FAILED, 9)  // an epoch never seen: ignored
	report(w2, t, b, 1, 1, pb.ResultKind_RESULT_KIND_SUCCESS, 0) // adopted: counts
	got := map[string][2]int32{}
	watchUntil(t, m2, func(ev *pb.TaskEvent) bool {
		if ev.State == pb.TaskState_TASK_STATE_DONE {
			got[ev.Key] = [2]int32{int32(ev.Outcome.GetKind()), ev.Outcome.GetExitCode()}
		}
		return len(got) == 2
	})
	want := map[string][2]int32{"a": {int32(pb.ResultKind_RESULT_KIND_FAILED), 3}, "b": {int32(pb.ResultKind_RESULT_KIND_SUCCESS), 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ends (kind, exit) mismatch (-want +got):\n%s", diff)
	}
}

// TestAtMostOnceUnknownAcrossRestart: an at-most-once task dispatched
// before a restart, whose worker comes back without it, is not run again:
// it is listed in unknown until the operator reconciles it. --done is
// refused for a task with outputs; --rerun runs it once more, as a new
// attempt; the verdict survives another restart.
func TestAtMostOnceUnknownAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	m, stop := startWithState(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	w, welcome := joinAs(ctx, t, m, "I1", "")
	ids, err := submit(t, m, &pb.TaskSpec{Name: "pay", Key: "pay", Command: "true", Resources: &pb.Resources{Cores: 1},
		Effects: pb.Effects_EFFECTS_AT_MOST_ONCE, Outputs: []*pb.FileRef{{Name: "receipt", Path: "r"}}})
	if err != nil {
		t.Fatal(err)
	}
	runs(t, w, 1)
	cancel()
	w.Close()
	stop()

	m2, stop2 := startWithState(t, dir)
	before, err := m2.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := before.Status.GetAdrift(); n != 1 {
		t.Fatalf("status after the restart, before the worker is back: %d adrift; want 1", n)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	w2, _ := joinAs(ctx2, t, m2, "I1", welcome.RunId) // without the attempt
	watchUntil(t, m2, func(ev *pb.TaskEvent) bool { return strings.HasPrefix(ev.Note, "unknown: ") })
	snap, err := m2.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Status.GetUnknownTasks(); len(got) != 1 || got[0].TaskId != ids[0] || got[0].Attempt != 1 {
		t.Fatalf("status lists %v in unknown; want task %d, attempt 1", got, ids[0])
	}
	reconcile := func(m *Manager, v pb.Verdict) error {
		_, err := m.Handler().Reconcile(context.Background(), connect.NewRequest(&pb.ReconcileRequest{TaskId: ids[0], Verdict: v}))
		return err
	}
	if err := reconcile(m2, pb.Verdict_VERDICT_DONE); err == nil || !strings.Contains(err.Error(), "cannot be marked done") {
		t.Errorf("--done of a task with outputs: %v; want it refused", err)
	}
	if err := reconcile(m2, pb.Verdict_VERDICT_RERUN); err != nil {
		t.Fatal(err)
	}
	if r := runs(t, w2, 1)[0]; r.TaskId != ids[0] || r.Attempt != 2 {
		t.Fatalf("after --rerun: Run of task %d attempt %d; want task %d attempt 2", r.TaskId, r.Attempt, ids[0])
	}
	if err := reconcile(m2, pb.Verdict_VERDICT_FAILED); err == nil {
		t.Error("a second verdict on a task that runs again: accepted; want it refused")
	}
	cancel2()
	w2.Close()
	stop2()

	// Replayed: the rerun stands, and attempt 2 is adrift in its turn.
	m3, _ := startWithState(t, dir)
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	w3, _ := joinAs(ctx3, t, m3, "I1", welcome.RunId, &pb.RunningAttempt{TaskId: ids[0], Attempt: 2, Epoch: 2})
	defer w3.Close()
	report(w3, t, ids[0], 2, 2, pb.ResultKind_RESULT_KIND_FAILED, 4)
	evs := watchUntil(t, m3, func(ev *pb.TaskEvent) bool { return ev.State == pb.TaskState_TASK_STATE_DONE })
	if o := evs[len(evs)-1].Outcome; o.GetExitCode() != 4 {
		t.Errorf("after the second restart: outcome %v; want attempt 2's failure (exit 4), adopted", o)
	}
}
