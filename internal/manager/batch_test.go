package manager

import (
	"context"
	"fmt"
	"testing"

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
