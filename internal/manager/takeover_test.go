package manager

import (
	"context"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "trellis/internal/proto/trellisv1"
)

// TestSessionTakenOver: a client of a resumable session is killed after it
// acknowledged the ends of its finished tasks; a new client process names
// the same session and submits the same tasks by key. It gets the same
// task IDs, learns which had finished, and their ends come again, from the
// manager's memory and, after a restart with --state (and a second
// client that acknowledged every end of the new epoch), from the journal.
// A session that is not resumable sends nothing again.
func TestSessionTakenOver(t *testing.T) {
	dir := t.TempDir()
	m, stop := startWithState(t, dir)
	tasks := []*pb.TaskSpec{missingInput("a"), missingInput("b"),
		{Name: "w", Key: "w", Command: "true", Resources: &pb.Resources{Cores: 1}}} // no worker: it waits
	resubmit := func(m *Manager, session string) *pb.SubmitResponse {
		t.Helper()
		resp, err := m.Handler().Submit(context.Background(), connect.NewRequest(&pb.SubmitRequest{Session: session, Tasks: tasks, Resumable: session == "s1"}))
		if err != nil {
			t.Fatalf("submit in %s: %v", session, err)
		}
		return resp.Msg
	}
	// readAll reads the session's events after cursor until it has want
	// ends (or 5 s pass), acknowledging them by a second Watch from the
	// last, as a client that applied them does; it returns the keys ended.
	readAll := func(m *Manager, session string, after uint64, want int) (ended []string, last uint64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		last = after
		m.WatchEvents(ctx, &pb.WatchRequest{Session: session, After: after}, func(b *pb.TaskEvents) error {
			for _, ev := range b.Events {
				last = ev.Seq
				if ev.State == pb.TaskState_TASK_STATE_DONE {
					ended = append(ended, ev.Key)
				}
			}
			if len(ended) >= want {
				cancel()
			}
			return nil
		})
		if r, err := m.WatchSession(session, last); err == nil { // acknowledges up to last
			r.Close(time.Now())
		}
		slices.Sort(ended)
		return ended, last
	}
	first := resubmit(m, "s1")
	plain := resubmit(m, "s2")
	if got, _ := readAll(m, "s1", 0, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first client's ends: %v, want [a b]", got)
	}
	if got, _ := readAll(m, "s2", 0, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first client's ends in the plain session: %v, want [a b]", got)
	}

	// A new client takes the session over: the acknowledged ends come again.
	again := resubmit(m, "s1")
	want := &pb.SubmitResponse{TaskIds: first.TaskIds, Resubmitted: true, Finished: first.TaskIds[:2]}
	if diff := cmp.Diff(want, again, protocmp.Transform()); diff != "" {
		t.Errorf("resubmit in the resumable session (-want +got):\n%s", diff)
	}
	if got, _ := readAll(m, "s1", 0, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("ends sent again to the new client: %v, want [a b]", got)
	}
	if r := resubmit(m, "s2"); !r.Resubmitted || !slices.Equal(r.TaskIds, plain.TaskIds) {
		t.Errorf("resubmit in the plain session: %v, want the same tasks", r)
	}
	// A task submitted after that resubmit ends after anything it sent
	// again: its end alone proves that nothing was.
	if _, err := m.Handler().Submit(context.Background(), connect.NewRequest(&pb.SubmitRequest{Session: "s2", Tasks: []*pb.TaskSpec{missingInput("c")}})); err != nil {
		t.Fatalf("submit in s2: %v", err)
	}
	if got, _ := readAll(m, "s2", 0, 1); !slices.Equal(got, []string{"c"}) {
		t.Errorf("ends in a session that is not resumable, after its resubmit: %v, want only [c] (nothing sent again)", got)
	}

	// After a restart the replay sends every end again; a client that
	// acknowledged those and was killed too still gets them once more.
	stop()
	m2, _ := startWithState(t, dir)
	if got, _ := readAll(m2, "s1", 0, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ends replayed after the restart: %v, want [a b]", got)
	}
	again = resubmit(m2, "s1")
	if diff := cmp.Diff(want, again, protocmp.Transform()); diff != "" {
		t.Errorf("resubmit after the restart (-want +got):\n%s", diff)
	}
	if got, _ := readAll(m2, "s1", 0, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("ends sent again after the restart, from the journal: %v, want [a b]", got)
	}
}
