package manager

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// TestCancelWorkflowAcrossRestart: workflow labels come back with the
// journal after a restart with --state: a cancel by workflow then finds
// the tasks submitted before it, cancels only those, and stays done after
// one more restart. A label no task carries is NotFound.
func TestCancelWorkflowAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, stop := startWithState(t, dir)
	task := func(key, wf string) *pb.TaskSpec {
		return &pb.TaskSpec{Name: key, Key: key, Command: "true", Resources: &pb.Resources{Cores: 1}, Workflow: wf}
	}
	if _, err := submit(t, m, task("a1", "alpha"), task("a2", "alpha"), task("b1", "beta")); err != nil {
		t.Fatal(err)
	}
	stop()

	m2, stop2 := startWithState(t, dir)
	resp, err := m2.Handler().Cancel(ctx, connect.NewRequest(&pb.CancelRequest{Workflow: "alpha"}))
	if err != nil || resp.Msg.Cancelled != 2 {
		t.Fatalf("Cancel(workflow alpha) after the restart: %v, %v; want 2 cancelled", resp, err)
	}
	_, err = m2.Handler().Cancel(ctx, connect.NewRequest(&pb.CancelRequest{Workflow: "gamma"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Cancel(workflow gamma): %v, want NotFound", err)
	}
	_, err = m2.Handler().Cancel(ctx, connect.NewRequest(&pb.CancelRequest{Workflow: "bad\x01label"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("Cancel(workflow with a control character): %v, want InvalidArgument", err)
	}
	stop2()

	m3, _ := startWithState(t, dir)
	snap, err := m3.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.Status; st.Ready != 1 || st.Finished != 2 || st.Failed != 2 {
		t.Errorf("after another restart: ready %d, finished %d, failed %d; want 1 (beta's), 2, 2 (alpha's, cancelled)", st.Ready, st.Finished, st.Failed)
	}
	resp, err = m3.Handler().Cancel(ctx, connect.NewRequest(&pb.CancelRequest{Workflow: "alpha"}))
	if err != nil || resp.Msg.Cancelled != 0 {
		t.Errorf("Cancel(workflow alpha) again: %v, %v; want 0 cancelled, no error (it is known, all ended)", resp, err)
	}
}
