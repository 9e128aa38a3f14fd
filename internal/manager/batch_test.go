package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
		var tasks []*pb.TaskSpec
		for i := range 16 {
			tasks = append(tasks, &pb.TaskSpec{Name: "t", Key: fmt.Sprintf("r%d-%d", round, i), Command: "true", Resources: &pb.Resources{Cores: 1}})
		}
		if _, err := submit(t, m, tasks...); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := joinWorkerOf(ctx, t, m, 8)
		batchOfRuns := func(what string) []*pb.Run {
			t.Helper()
			msg, err := w.Receive()
			if err != nil {
				t.Fatalf("round %d: %s: receive: %v", round, what, err)
			}
			var got []*pb.Run
			for _, inner := range msg.GetBatch().GetMsgs() {
				got = append(got, inner.GetRun())
			}
			if len(got) != 8 || got[0] == nil || got[7] == nil {
				t.Fatalf("round %d: %s: one message of %d Runs (%T), want one batch of 8", round, what, len(got), msg.Msg)
			}
			return got
		}
		first := batchOfRuns("runs of the join")
		var reports []*pb.WorkerMessage
		for _, r := range first {
			d := &pb.AttemptDone{TaskId: r.TaskId, Attempt: r.Attempt, Epoch: r.Epoch, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}
			reports = append(reports, &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: d}})
		}
		if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Batch{Batch: &pb.WorkerBatch{Msgs: reports}}}); err != nil {
			t.Fatal(err)
		}
		batchOfRuns("runs answering a batch of reports")
		cancel()
		w.Close()
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
	msgs := make(chan []*pb.TaskEvent, 100)
	go m.WatchEvents(ctx, &pb.WatchRequest{Session: "s1"}, func(b *pb.TaskEvents) error { // exits when the test ends (ctx)
		if len(b.Events) > 0 {
			msgs <- b.Events
		}
		return nil
	})
	nextMessage := func(round int, what string, want map[pb.TaskState]int) {
		t.Helper()
		var evs []*pb.TaskEvent
		select {
		case evs = <-msgs:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: %s: no events in 10 s", round, what)
		}
		got := make(map[pb.TaskState]int)
		for _, ev := range evs {
			got[ev.State]++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d: %s: one message of events by state (-want +got):\n%s", round, what, diff)
		}
	}
	runsAndReports := func(round int, what string) {
		t.Helper()
		msg, err := w.Receive()
		if err != nil {
			t.Fatalf("round %d: %s: receive: %v", round, what, err)
		}
		var reports []*pb.WorkerMessage
		for _, inner := range msg.GetBatch().GetMsgs() {
			r := inner.GetRun()
			d := &pb.AttemptDone{TaskId: r.TaskId, Attempt: r.Attempt, Epoch: r.Epoch, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}
			reports = append(reports, &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: d}})
		}
		if len(reports) != 8 {
			t.Fatalf("round %d: %s: %d runs in one message, want 8", round, what, len(reports))
		}
		if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Batch{Batch: &pb.WorkerBatch{Msgs: reports}}}); err != nil {
			t.Fatal(err)
		}
	}
	running, done := pb.TaskState_TASK_STATE_RUNNING, pb.TaskState_TASK_STATE_DONE
	for round := range 20 {
		var tasks []*pb.TaskSpec
		for i := range 16 {
			tasks = append(tasks, &pb.TaskSpec{Name: "t", Key: fmt.Sprintf("r%d-%d", round, i), Command: "true", Resources: &pb.Resources{Cores: 1}})
		}
		if _, err := submit(t, m, tasks...); err != nil {
			t.Fatal(err)
		}
		nextMessage(round, "the submit's runs", map[pb.TaskState]int{running: 8})
		runsAndReports(round, "first runs")
		nextMessage(round, "a batch of reports and the runs after it", map[pb.TaskState]int{done: 8, running: 8})
		runsAndReports(round, "second runs")
		nextMessage(round, "the last batch of reports", map[pb.TaskState]int{done: 8})
	}
}
