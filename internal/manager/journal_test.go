package manager

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	pb "trellis/internal/proto/trellisv1"
)

// startWithState runs a manager with a --state directory until stop.
func startWithState(t *testing.T, dir string) (m *Manager, stop func()) {
	t.Helper()
	m, err := Listen(Config{Listen: "127.0.0.1:0", Secret: "s", StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }() // exits when stop is called
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return m, stop
}

// TestRestartWithState stops a manager with --state and starts another on
// the same directory: the library, the session's keys, the tasks that
// ended (not run again, their events kept) and those that had not (queued
// again) are back, and the epoch is new.
func TestRestartWithState(t *testing.T) {
	dir := t.TempDir()
	m, stop := startWithState(t, dir)
	lib := &pb.InstallLibraryRequest{Library: &pb.LibrarySpec{Name: "lib", Command: "true", Resources: &pb.Resources{Cores: 1}}}
	if _, err := m.Handler().InstallLibrary(context.Background(), connect.NewRequest(lib)); err != nil {
		t.Fatal(err)
	}
	waits := &pb.TaskSpec{Name: "w", Key: "w", Command: "true", Resources: &pb.Resources{Cores: 1}}
	cancelled := &pb.TaskSpec{Name: "c", Key: "c", Command: "true", Resources: &pb.Resources{Cores: 1}}
	first, err := submit(t, m, missingInput("a"), waits, cancelled)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Handler().Cancel(context.Background(), connect.NewRequest(&pb.CancelRequest{TaskIds: first[2:]})); err != nil {
		t.Fatal(err)
	}
	done := func(evs []*pb.TaskEvent) map[string]pb.ResultKind {
		out := make(map[string]pb.ResultKind)
		for _, e := range evs {
			if e.State == pb.TaskState_TASK_STATE_DONE {
				out[e.Key] = e.Outcome.GetKind()
			}
		}
		return out
	}
	want := map[string]pb.ResultKind{"a": pb.ResultKind_RESULT_KIND_INPUT_MISSING, "c": pb.ResultKind_RESULT_KIND_CANCELLED}
	// ends collects the session's ends from the start, until it has two
	// (or 5s pass: a deadline for a hang).
	ends := func(m *Manager) map[string]pb.ResultKind {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var evs []*pb.TaskEvent
		m.WatchEvents(ctx, &pb.WatchRequest{Session: "s1"}, func(b *pb.TaskEvents) error {
			if evs = append(evs, b.Events...); len(done(evs)) >= 2 {
				cancel()
			}
			return nil
		})
		return done(evs)
	}
	if diff := cmp.Diff(want, ends(m)); diff != "" {
		t.Fatalf("first run's ends (-want +got):\n%s", diff)
	}
	stop()

	m2, _ := startWithState(t, dir)
	if m2.RunID() != m.RunID() || m2.epoch != 2 {
		t.Errorf("restart: run ID %s, epoch %d; want %s, 2", m2.RunID(), m2.epoch, m.RunID())
	}
	again, err := submit(t, m2, missingInput("a"), waits, cancelled)
	if err != nil {
		t.Fatalf("resubmit by key after the restart: %v", err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("task IDs of a resubmit by key after the restart (-first +again):\n%s", diff)
	}
	if diff := cmp.Diff(want, ends(m2)); diff != "" {
		t.Errorf("ends sent again after the restart (-want +got):\n%s", diff)
	}
	call := &pb.TaskSpec{Name: "call", Key: "call", Call: &pb.CallSpec{Library: "lib", Function: "f"}}
	if _, err := submit(t, m2, call); err != nil {
		t.Errorf("a call of the library installed before the restart: %v", err)
	}
	snap, err := m2.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := snap.Status
	if st.Ready != 2 || st.Finished != 2 || st.Epoch != 2 || st.Journal == nil {
		t.Errorf("status after the restart: ready %d, finished %d, epoch %d, journal %v; want 2 (the task and the call), 2, 2 and a journal", st.Ready, st.Finished, st.Epoch, st.Journal)
	}
}

// TestLibraryRemovedAcrossRestart: a library removed before a restart with
// --state stays removed: not listed, and removing it again is NotFound.
func TestLibraryRemovedAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	m, stop := startWithState(t, dir)
	ctx := context.Background()
	lib := &pb.InstallLibraryRequest{Library: &pb.LibrarySpec{Name: "lib", Command: "true", Resources: &pb.Resources{Cores: 1}}}
	if _, err := m.Handler().InstallLibrary(ctx, connect.NewRequest(lib)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Handler().RemoveLibrary(ctx, connect.NewRequest(&pb.RemoveLibraryRequest{Name: "lib"})); err != nil {
		t.Fatalf("RemoveLibrary(lib): %v, want nil", err)
	}
	stop()

	m2, _ := startWithState(t, dir)
	snap, err := m2.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.Status.Libraries); n != 0 {
		t.Errorf("libraries after the restart: %d, want 0 (lib was removed)", n)
	}
	_, err = m2.Handler().RemoveLibrary(ctx, connect.NewRequest(&pb.RemoveLibraryRequest{Name: "lib"}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("RemoveLibrary(lib) after the restart: %v, want NotFound", err)
	}
	if _, err := m2.Handler().InstallLibrary(ctx, connect.NewRequest(lib)); err != nil {
		t.Fatalf("InstallLibrary(lib) again: %v", err)
	}
	if snap, err = m2.Snapshot(ctx); err != nil || len(snap.Status.Libraries) != 1 {
		t.Errorf("libraries after installing again: %v, %v; want lib", snap.Status.GetLibraries(), err)
	}
}
