package manager

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// nextKill reads the worker's stream until a Kill comes, for at most 10 s.
func nextKill(t *testing.T, w interface {
	Receive() (*pb.ManagerMessage, error)
}) *pb.Kill {
	t.Helper()
	got := make(chan *pb.Kill, 1)
	go func() { // exits when a Kill comes or the stream ends (the test closes it)
		defer close(got)
		for {
			msg, err := w.Receive()
			if err != nil {
				return
			}
			msgs := append([]*pb.ManagerMessage{msg}, msg.GetBatch().GetMsgs()...)
			for _, m := range msgs {
				if k := m.GetKill(); k != nil {
					got <- k
					return
				}
			}
		}
	}()
	select {
	case k, ok := <-got:
		if !ok {
			t.Fatal("the stream ended before a Kill came")
		}
		return k
	case <-time.After(10 * time.Second):
		t.Fatal("no Kill within 10 s")
		return nil
	}
}

// TestEndedSessionsCancelTheirTasks: a session's running task is killed
// when its client ends the session, or when its client's last Watch stream
// has been closed for the grace; the session is gone then, and a Submit or
// Watch of it is refused saying why.
func TestEndedSessionsCancelTheirTasks(t *testing.T) {
	for _, tc := range []struct{ name, why string }{
		{"EndSession", "session s1 was ended by its client"},
		{"away for the grace", "session s1 was ended by the manager: its client was away for more than 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ctx := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s", ClientGrace: time.Second})
			w := joinWorker(ctx, t, m)
			defer w.Close()
			events, err := m.WatchSession("s1", 0) // the client is there
			if err != nil {
				t.Fatal(err)
			}
			if _, err := submit(t, m, &pb.TaskSpec{Name: "t", Key: "t", Command: "sleep 300", Resources: &pb.Resources{Cores: 1}}); err != nil {
				t.Fatal(err)
			}
			run := nextRun(t, w)
			if tc.name == "EndSession" {
				if _, err := m.Handler().EndSession(ctx, connect.NewRequest(&pb.EndSessionRequest{Session: "s1"})); err != nil {
					t.Fatal(err)
				}
			}
			events.Close(time.Now()) // the client goes
			if k := nextKill(t, w); k.TaskId != run.TaskId || k.Attempt != run.Attempt {
				t.Errorf("Kill of task %d attempt %d; want task %d attempt %d", k.TaskId, k.Attempt, run.TaskId, run.Attempt)
			}
			_, err = submit(t, m, &pb.TaskSpec{Name: "u", Key: "u", Command: "true", Resources: &pb.Resources{Cores: 1}})
			if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("Submit to the ended session: %v; want failed precondition saying %q", err, tc.why)
			}
			if _, err := m.WatchSession("s1", 0); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("Watch of the ended session: %v; want failed precondition saying %q", err, tc.why)
			}
		})
	}
}
