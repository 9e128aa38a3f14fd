package manager

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"trellis/internal/inproc"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// startManager runs a manager on 127.0.0.1 until the test ends.
func startManager(t *testing.T) *Manager {
	t.Helper()
	m, _ := runManager(t, Config{Listen: "127.0.0.1:0", Secret: "s"})
	return m
}

// runManager runs a manager of cfg until the test ends; the context it
// returns ends then too.
func runManager(t *testing.T, cfg Config) (*Manager, context.Context) {
	t.Helper()
	m, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }() // exits when the test ends
	t.Cleanup(func() { cancel(); <-done })
	return m, ctx
}

// missingInput is a task that ends at once, without a worker: its input is
// nowhere.
func missingInput(key string) *pb.TaskSpec {
	return &pb.TaskSpec{Name: key, Key: key, Command: "cat in", Resources: &pb.Resources{Cores: 1},
		Inputs: []*pb.FileRef{{Name: "sha256-" + key, Path: "in", Size: -1}}}
}

func submit(t *testing.T, m *Manager, tasks ...*pb.TaskSpec) ([]uint64, error) {
	t.Helper()
	resp, err := m.Handler().Submit(context.Background(), connect.NewRequest(&pb.SubmitRequest{Session: "s1", Tasks: tasks}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.TaskIds, nil
}

func TestSubmitByKeyIsIdempotent(t *testing.T) {
	m := startManager(t)
	first, err := submit(t, m, missingInput("a"), missingInput("b"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := submit(t, m, missingInput("a"), missingInput("b"))
	if err != nil {
		t.Fatalf("resubmit: %v", err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("resubmitted task IDs (-first +again):\n%s", diff)
	}
	if _, err := submit(t, m, missingInput("a"), missingInput("c")); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("submit mixing a known key with a new one: got %v, want invalid argument", err)
	}
	other, err := submit(t, m, missingInput("c"))
	if err != nil || other[0] == first[0] || other[0] == first[1] {
		t.Errorf("a new key: got IDs %v, %v; want a new ID", other, err)
	}
}

// watch collects the events a Watch from after sends within d, stopping
// early once it has want of them.
func watch(t *testing.T, m *Manager, after uint64, want int) []*pb.TaskEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []*pb.TaskEvent
	m.WatchEvents(ctx, &pb.WatchRequest{Session: "s1", After: after}, func(b *pb.TaskEvents) error {
		got = append(got, b.Events...)
		if len(got) >= want {
			cancel()
		}
		return nil
	})
	return got
}

func TestWatchResumesFromCursor(t *testing.T) {
	m := startManager(t)
	if _, err := submit(t, m, missingInput("a"), missingInput("b"), missingInput("c")); err != nil {
		t.Fatal(err)
	}
	type ev struct {
		Key string
		Seq uint64
	}
	summary := func(evs []*pb.TaskEvent) []ev {
		var out []ev
		for _, e := range evs {
			out = append(out, ev{e.Key, e.Seq})
		}
		return out
	}
	all := watch(t, m, 0, 3)
	if diff := cmp.Diff([]ev{{"a", 1}, {"b", 2}, {"c", 3}}, summary(all)); diff != "" {
		t.Fatalf("first watch (-want +got):\n%s", diff)
	}
	// The stream broke after the first event: resume from it.
	if diff := cmp.Diff([]ev{{"b", 2}, {"c", 3}}, summary(watch(t, m, 1, 2))); diff != "" {
		t.Errorf("resumed watch (-want +got):\n%s", diff)
	}
	// Acknowledged events are forgotten.
	m.Handler().Ack(context.Background(), connect.NewRequest(&pb.AckRequest{Session: "s1", Seq: 3}))
	if held, _ := m.clients.Lookup("s1").Held(); held != 0 {
		t.Errorf("after acknowledging every event the session holds %d, want 0", held)
	}
}

// TestCursorOfAnotherRun: a client whose manager restarted without a
// journal still holds a cursor of the old run; the new run numbers events
// from 1 again. Its cursor must neither skip nor acknowledge them (a
// client submitting while its stream reconnects lost them).
func TestCursorOfAnotherRun(t *testing.T) {
	m := startManager(t)
	if _, err := submit(t, m, missingInput("a"), missingInput("b")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []uint64
	m.WatchEvents(ctx, &pb.WatchRequest{Session: "s1", After: 500, Manager: "an-earlier-run"}, func(b *pb.TaskEvents) error {
		for _, ev := range b.Events {
			got = append(got, ev.Seq)
		}
		if len(got) >= 2 {
			cancel()
		}
		return nil
	})
	if diff := cmp.Diff([]uint64{1, 2}, got); diff != "" {
		t.Errorf("events for a cursor of another run (-want +got):\n%s", diff)
	}
	m.Handler().Ack(context.Background(), connect.NewRequest(&pb.AckRequest{Session: "s1", Seq: 500, Manager: "an-earlier-run"}))
	if held, _ := m.clients.Lookup("s1").Held(); held != 2 {
		t.Errorf("after an ack of another run the session holds %d events, want 2", held)
	}
}

// TestWelcomeComesFirstAndAlone: a worker that joins while tasks wait gets
// its welcome as the first message, not batched with the runs the loop
// queued in the same step (the worker would refuse such a first message).
func TestWelcomeComesFirstAndAlone(t *testing.T) {
	m := startManager(t)
	for round := range 50 {
		if _, err := submit(t, m, roundTasks(round, 4)...); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := m.ConnectWorker(ctx)
		hello := &pb.Hello{Name: "w", Protocol: proto.Protocol, Resources: &pb.Resources{Cores: 4, MemoryMb: 1000, DiskMb: 1000}}
		if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
			t.Fatal(err)
		}
		first, err := w.Receive()
		if err != nil {
			t.Fatalf("round %d: receive: %v", round, err)
		}
		if first.GetWelcome() == nil {
			t.Fatalf("round %d: first message %T, want a lone Welcome", round, first.Msg)
		}
		cancel()
		w.Close()
	}
}

// joinWorker connects a worker of one core to m, in process, and reads
// its welcome.
func joinWorker(ctx context.Context, t *testing.T, m *Manager) *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage] {
	t.Helper()
	return joinWorkerOf(ctx, t, m, 1)
}

// joinWorkerOf is joinWorker with a worker of cores cores.
func joinWorkerOf(ctx context.Context, t *testing.T, m *Manager, cores float64) *inproc.End[*pb.WorkerMessage, *pb.ManagerMessage] {
	t.Helper()
	w := m.ConnectWorker(ctx)
	hello := &pb.Hello{Name: "w", Protocol: proto.Protocol, Resources: &pb.Resources{Cores: cores, MemoryMb: 1000, DiskMb: 1000}}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if first, err := w.Receive(); err != nil || first.GetWelcome() == nil {
		t.Fatalf("first message %v, %v; want a welcome", first, err)
	}
	return w
}

// nextRun reads the worker's stream until a Run comes, for at most 10 s.
func nextRun(t *testing.T, w interface {
	Receive() (*pb.ManagerMessage, error)
}) *pb.Run {
	t.Helper()
	got := make(chan *pb.Run, 1)
	go func() { // exits when a Run comes or the stream ends (the test closes it)
		defer close(got)
		for {
			msg, err := w.Receive()
			if err != nil {
				return
			}
			if r := msg.GetRun(); r != nil {
				got <- r
				return
			}
			for _, inner := range msg.GetBatch().GetMsgs() {
				if r := inner.GetRun(); r != nil {
					got <- r
					return
				}
			}
		}
	}()
	select {
	case r, ok := <-got:
		if !ok {
			t.Fatal("the stream ended before a Run came")
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no Run within 10 s")
		return nil
	}
}

// TestOutputsCheckedBeforeTheCore: a report of success whose output never
// reached the store is a failure for the core too (so the task is retried
// under RetryOnError), not a success the manager turns into a failure after
// the core released its readers.
func TestOutputsCheckedBeforeTheCore(t *testing.T) {
	m := startManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := joinWorker(ctx, t, m)
	defer w.Close()
	out := &pb.FileRef{Name: "out-x", Path: "o"}
	if _, err := submit(t, m, &pb.TaskSpec{Name: "t", Key: "t", Command: "true", Resources: &pb.Resources{Cores: 1},
		Outputs: []*pb.FileRef{out}, Retries: 1, RetryOnError: true}); err != nil {
		t.Fatal(err)
	}
	run := nextRun(t, w)
	done := &pb.AttemptDone{TaskId: run.TaskId, Attempt: run.Attempt, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS,
		Outputs: []*pb.FileInfo{{Name: "out-x", Size: 10, Uploaded: true}}}} // never uploaded
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: done}}); err != nil {
		t.Fatal(err)
	}
	if again := nextRun(t, w); again.TaskId != run.TaskId || again.Attempt != run.Attempt+1 {
		t.Fatalf("after the failed check: Run of task %d attempt %d; want task %d attempt %d", again.TaskId, again.Attempt, run.TaskId, run.Attempt+1)
	}
	evs := watch(t, m, 0, 3) // running, waiting again, running
	if !slices.ContainsFunc(evs, func(ev *pb.TaskEvent) bool {
		return ev.State == pb.TaskState_TASK_STATE_WAITING && strings.Contains(ev.Note, "was not uploaded")
	}) {
		t.Errorf("events %v; want the task back to waiting, because its output was not uploaded", evs)
	}
}

// TestStoreFailureReachesTheCore: when the store cannot commit an output
// (its disk failed after the check), the core hears of the attempt as a
// failure: the task that reads the output fails because its producer
// failed, instead of being sent a file the manager does not have.
func TestStoreFailureReachesTheCore(t *testing.T) {
	m := startManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := joinWorker(ctx, t, m)
	defer w.Close()
	const name = "out-y"
	if _, err := submit(t, m,
		&pb.TaskSpec{Name: "make", Key: "make", Command: "true", Resources: &pb.Resources{Cores: 1}, Outputs: []*pb.FileRef{{Name: name, Path: "o"}}},
		&pb.TaskSpec{Name: "read", Key: "read", Command: "cat i", Resources: &pb.Resources{Cores: 1}, Inputs: []*pb.FileRef{{Name: name, Path: "i"}}},
	); err != nil {
		t.Fatal(err)
	}
	run := nextRun(t, w)
	// The upload arrived and passes the check; then the store's files/
	// cannot take it (a directory stands where it must go).
	staged := m.store.stagedPath(run.TaskId, run.Attempt, name)
	if err := os.MkdirAll(filepath.Dir(staged), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(staged, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(m.store.path(name), "blocker"), 0o755); err != nil {
		t.Fatal(err)
	}
	done := &pb.AttemptDone{TaskId: run.TaskId, Attempt: run.Attempt, Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS,
		Outputs: []*pb.FileInfo{{Name: name, Size: 3, Uploaded: true}}}}
	if err := w.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: done}}); err != nil {
		t.Fatal(err)
	}
	evs := watch(t, m, 0, 3) // make running, make done, read done
	outcomes := make(map[string]*pb.Outcome)
	for _, ev := range evs {
		if ev.State == pb.TaskState_TASK_STATE_DONE {
			outcomes[ev.Key] = ev.Outcome
		}
	}
	if o := outcomes["make"]; o.GetKind() != pb.ResultKind_RESULT_KIND_FAILED || !strings.Contains(o.GetMessage(), "could not store the outputs") {
		t.Errorf("make: outcome %v; want failed, naming the store", o)
	}
	if o := outcomes["read"]; o.GetKind() != pb.ResultKind_RESULT_KIND_INPUT_MISSING || !strings.Contains(o.GetMessage(), "ended with failed") {
		t.Errorf("read: outcome %v; want input missing, its producer failed", o)
	}
}
