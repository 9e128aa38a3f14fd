package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/inproc"
	pb "trellis/internal/proto/trellisv1"
)

// TestOneStepOneWrite: what one step of the loop queues for a worker
// leaves in one message. A worker of 8 cores that joins while 16 tasks
// wait gets its welcome, then 8 Runs in one batch; its 8 reports in one
// batch are answered by the other 8 Runs in one batch. Each round is
// checked: a sender woken at each Run would send the first one alone.
func TestOneStepOneWrite(t *testing.T) {
	m := startManager(t)
	for round := range 20 {
		if _, err := submit(t, m, roundTasks(round, 16)...); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := joinWorkerOf(ctx, t, m, 8)
		first := receiveRuns(t, w, round, "runs of the join", 8)
		reportSuccess(t, w, first)
		receiveRuns(t, w, round, "runs answering a batch of reports", 8)
		cancel()
		w.Close()
	}
}

// roundTasks returns n one-core tasks keyed by round and index.
func roundTasks(round, n int) []*pb.TaskSpec {
	var tasks []*pb.TaskSpec
	for i := range n {
		tasks = append(tasks, &pb.TaskSpec{Name: "t", Key: fmt.Sprintf("r%d-%d", round, i), Command: "true", Resources: &pb.Resources{Cores: 1}})
	}
	return tasks
}

// receiveRuns reads the worker's next message, which must be one batch
// of want Runs, and returns them.
func receiveRuns(t *testing.T, w *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage], round int, what string, want int) []*pb.Run {
	t.Helper()
	msg, err := w.Receive()
	if err != nil {
		t.Fatalf("round %d: %s: receive: %v", round, what, err)
	}
	var got []*pb.Run
	for _, inner := range msg.GetBatch().GetMsgs() {
		if r := inner.GetRun(); r != nil {
			got = append(got, r)
		}
	}
	if len(got) != want || len(got) != len(msg.GetBatch().GetMsgs()) {
		t.Fatalf("round %d: %s: one message of %d Runs (%T), want one batch of %d", round, what, len(got), msg.Msg, want)
	}
	return got
}

// reportSuccess reports every run a success, in one batch.
func reportSuccess(t *testing.T, w *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage], runs []*pb.Run) {
	t.Helper()
	var reports []*pb.WorkerMessage
	for _, r := range runs {
		d := &pb.AttemptDone{TaskId: r.TaskId, Attempt: r.Attempt, Epoch: r.Epoch, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}
		reports = append(reports, &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: d}})
	}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Batch{Batch: &pb.WorkerBatch{Msgs: reports}}}); err != nil {
		t.Fatal(err)
	}
}

// TestOneStepOneEventMessage: what one step of the loop tells a client
// leaves in one message of its Watch stream. A worker of 8 cores runs 16
// tasks of a submit: the submit's step tells 8 RUNNING, the step of the
// worker's batch of 8 reports tells 8 DONE and 8 RUNNING, and the last
// batch 8 DONE, each in one message. Each round is checked: a watcher
// woken at the first event of a step would send it alone.
func TestOneStepOneEventMessage(t *testing.T) {
	m := startManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := joinWorkerOf(ctx, t, m, 8)
	// The session's watch channel, as a Watch stream's reader waits on it:
	// when it fires, everything the step told must be there to read.
	sess, err := m.clients.Get("s1")
	if err != nil {
		t.Fatal(err)
	}
	woken, stop := sess.Watch()
	defer stop()
	var cursor uint64
	nextMessage := func(round int, what string, want map[pb.TaskState]int) {
		t.Helper()
		select {
		case <-woken:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: %s: no wake in 10 s", round, what)
		}
		evs := sess.After(cursor)
		if len(evs) > 0 {
			cursor = evs[len(evs)-1].Seq
		}
		got := make(map[pb.TaskState]int)
		for _, ev := range evs {
			got[ev.State]++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d: %s: one message of events by state (-want +got):\n%s", round, what, diff)
		}
	}
	// once the worker has a step's runs, that step is over: a second wake
	// of it would mean its events were told in two messages.
	noSecondWake := func(round int, what string) {
		t.Helper()
		select {
		case <-woken:
			t.Fatalf("round %d: %s: a second wake in one step", round, what)
		default:
		}
	}
	running, done := pb.TaskState_TASK_STATE_RUNNING, pb.TaskState_TASK_STATE_DONE
	for round := range 20 {
		if _, err := submit(t, m, roundTasks(round, 16)...); err != nil {
			t.Fatal(err)
		}
		nextMessage(round, "the submit's runs", map[pb.TaskState]int{running: 8})
		runs := receiveRuns(t, w, round, "first runs", 8)
		noSecondWake(round, "the submit's runs")
		reportSuccess(t, w, runs)
		nextMessage(round, "a batch of reports and the runs after it", map[pb.TaskState]int{done: 8, running: 8})
		runs = receiveRuns(t, w, round, "second runs", 8)
		noSecondWake(round, "a batch of reports and the runs after it")
		reportSuccess(t, w, runs)
		nextMessage(round, "the last batch of reports", map[pb.TaskState]int{done: 8})
	}
}
