package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
)

// TestUnplaceableTasks: with one 1-core worker, a 64-core task is told why
// it waits (an event, and status), and fails after the manager's
// unplaceable timeout; one that waits for ever (its own setting) stays
// listed; a small task runs.
func TestUnplaceableTasks(t *testing.T) {
	m, ctx := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s", UnplaceableTimeout: time.Second})

	w := joinWorker(ctx, t, m)
	defer w.Close()
	big := &pb.Resources{Cores: 64}
	ids, err := submit(t, m,
		&pb.TaskSpec{Name: "big", Key: "big", Command: "true", Resources: big},
		&pb.TaskSpec{Name: "patient", Key: "patient", Command: "true", Resources: big, UnplaceableTimeoutMs: -1},
		&pb.TaskSpec{Name: "small", Key: "small", Command: "true", Resources: &pb.Resources{Cores: 1}})
	if err != nil {
		t.Fatal(err)
	}
	const why = "no connected worker has 64 cores (largest: 1)"
	run := nextRun(t, w)
	if run.TaskId != ids[2] {
		t.Fatalf("Run of task %d; want the small one, %d", run.TaskId, ids[2])
	}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: &pb.AttemptDone{TaskId: run.TaskId, Attempt: run.Attempt,
		Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}}}); err != nil {
		t.Fatal(err)
	}

	// Told at once, in one event for both: big and patient; and status.
	told := map[string]string{}
	events := 0
	for _, ev := range watchUntil(t, m, func(ev *pb.TaskEvent) bool { return ev.Key == "small" && ev.State == pb.TaskState_TASK_STATE_DONE }) {
		if ev.State == pb.TaskState_TASK_STATE_WAITING {
			events++
			told[ev.Key] = ev.Unplaceable
			for _, k := range ev.AlsoKeys {
				told[k] = ev.Unplaceable
			}
		}
	}
	if told["big"] != why || told["patient"] != why || len(told) != 2 || events != 1 {
		t.Errorf("WAITING events' reasons by key: %v in %d events; want %q for big and patient only, in one event", told, events, why)
	}
	snap, err := m.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.Status; st.Unplaceable != 2 || len(st.UnplaceableTasks) != 2 || st.UnplaceableTasks[0].Name != "big" || st.UnplaceableTasks[0].Why != why {
		t.Errorf("status: %d unplaceable, listed %v; want 2, big first, with %q", st.Unplaceable, st.UnplaceableTasks, why)
	}

	// big fails after the manager's limit; patient waits on.
	isEnd := func(ev *pb.TaskEvent) bool { return ev.Key == "big" && ev.State == pb.TaskState_TASK_STATE_DONE }
	evs := watchUntil(t, m, isEnd)
	end := evs[len(evs)-1]
	want := "waited 1s (its unplaceable timeout) for a worker that could run it: " + why + "; connect a worker that has what it asks for, or ask for less"
	if o := end.Outcome; o.Kind != pb.ResultKind_RESULT_KIND_RESOURCE_EXCEEDED || o.Message != want {
		t.Errorf("big ended %v %q; want resource exceeded, %q", o.Kind, o.Message, want)
	}
	snap, err = m.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := snap.Status; st.Unplaceable != 1 || len(st.UnplaceableTasks) != 1 || st.UnplaceableTasks[0].Name != "patient" {
		t.Errorf("status after big failed: %d unplaceable, listed %v; want patient alone", st.Unplaceable, st.UnplaceableTasks)
	}
}

// TestUnplaceableBatched: tasks queued with no worker are told why in one
// event per session, of at most MaxTasksPerEvent tasks, and a worker that
// fits clears the reason of every task the same way.
func TestUnplaceableBatched(t *testing.T) {
	m, ctx := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s"})
	sessions := map[string]int{"s1": MaxTasksPerEvent + 1, "s2": 2}
	for session, n := range sessions {
		tasks := make([]*pb.TaskSpec, n)
		for i := range tasks {
			tasks[i] = &pb.TaskSpec{Name: "t", Key: fmt.Sprint(session, "-", i), Command: "true", Resources: &pb.Resources{Cores: 1}}
		}
		if _, err := m.Handler().Submit(ctx, connect.NewRequest(&pb.SubmitRequest{Session: session, Tasks: tasks})); err != nil {
			t.Fatal(err)
		}
	}
	// told collects the session's WAITING events until every task was told
	// why, and returns how many events it took.
	told := func(session, why string) int {
		t.Helper()
		seen, events := map[string]bool{}, 0
		watchSession(t, m, session, func(ev *pb.TaskEvent) bool {
			if ev.State != pb.TaskState_TASK_STATE_WAITING || ev.Unplaceable != why {
				return false
			}
			events++
			if len(ev.AlsoTaskIds) != len(ev.AlsoKeys) || len(ev.AlsoKeys) >= MaxTasksPerEvent {
				t.Errorf("%s: an event of task %d and %d more task IDs, %d more keys; want as many of each, fewer than %d", session, ev.TaskId, len(ev.AlsoTaskIds), len(ev.AlsoKeys), MaxTasksPerEvent)
			}
			for _, k := range append([]string{ev.Key}, ev.AlsoKeys...) {
				if seen[k] {
					t.Errorf("%s: task %s told %q twice", session, k, why)
				}
				seen[k] = true
			}
			return len(seen) == sessions[session]
		})
		return events
	}
	want := map[string]int{"s1": 2, "s2": 1}
	for session := range sessions {
		if n := told(session, "no worker is connected"); n != want[session] {
			t.Errorf("%s: %d tasks told in %d events; want %d", session, sessions[session], n, want[session])
		}
	}
	w := joinWorker(ctx, t, m)
	defer w.Close()
	for session := range sessions {
		if n := told(session, ""); n != want[session] {
			t.Errorf("%s, once a worker joined: %d tasks cleared in %d events; want %d", session, sessions[session], n, want[session])
		}
	}
}

// watchUntil collects the events of session s1 until one meets last, for
// at most 10 s.
func watchUntil(t *testing.T, m *Manager, last func(*pb.TaskEvent) bool) []*pb.TaskEvent {
	t.Helper()
	return watchSession(t, m, "s1", last)
}

// watchSession collects the session's events until one meets last, for at
// most 10 s.
func watchSession(t *testing.T, m *Manager, session string, last func(*pb.TaskEvent) bool) []*pb.TaskEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*pb.TaskEvent
	found := false
	m.WatchEvents(ctx, &pb.WatchRequest{Session: session}, func(b *pb.TaskEvents) error {
		for _, ev := range b.Events {
			if found {
				break
			}
			got = append(got, ev)
			if found = last(ev); found {
				cancel()
			}
		}
		return nil
	})
	if !found {
		t.Fatalf("no awaited event within 10 s; got %v", got)
	}
	return got
}
