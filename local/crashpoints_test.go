package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/journal/journaltest"
	"trellis/internal/manager"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker"
	"trellis/internal/worker/resources"
)

// crashLife is one life of a manager with --state and one worker, in
// process: it (re)submits the request by keys in session s1 and waits for
// every task's Done; it returns each task's stdout by key.
func crashLife(t *testing.T, state string, req *pb.SubmitRequest) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := manager.Listen(manager.Config{Listen: "127.0.0.1:0", Secret: "s", StateDir: state, AdoptWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stopManager := context.WithCancel(ctx)
	mdone := make(chan struct{})
	go func() { defer close(mdone); m.Run(mctx) }() // exits when stopManager is called
	defer func() { stopManager(); <-mdone }()
	w, err := worker.New(worker.Config{Manager: m.Addr(), Secret: "s", Name: "w", Workdir: t.TempDir(),
		Resources: resources.Resources{MilliCores: 2000, MemoryMB: 1024, DiskMB: 1024},
		Connect:   func(ctx context.Context) worker.Stream { return m.ConnectWorker(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { defer close(wdone); w.Run(wctx) }() // exits when stopWorker is called
	defer func() { stopWorker(); <-wdone }()
	if _, err := m.Handler().Submit(ctx, connect.NewRequest(req)); err != nil {
		t.Fatalf("submit again by keys: %v", err)
	}
	out := make(map[string]string)
	wctx2, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	m.WatchEvents(wctx2, &pb.WatchRequest{Session: "s1"}, func(b *pb.TaskEvents) error {
		for _, ev := range b.Events {
			if ev.State == pb.TaskState_TASK_STATE_DONE {
				if ev.Outcome.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS {
					t.Errorf("task %s: %v %s", ev.Key, ev.Outcome.GetKind(), ev.Outcome.GetMessage())
				}
				out[ev.Key] = string(ev.Outcome.GetStdout())
			}
		}
		if len(out) == len(req.Tasks) {
			stopWatch()
		}
		return nil
	})
	if len(out) != len(req.Tasks) {
		t.Fatalf("%d of %d tasks ended within 30 s", len(out), len(req.Tasks))
	}
	return out
}

// TestCrashPoints (the crash-point enumeration): a manager with
// --state and a worker run five tasks that log their idempotency key when
// they run. Then, for every prefix of that journal, as if the manager had
// been killed right after its last record became durable, a new manager
// starts on it, a new worker joins, and the client submits again by keys:
// every task ends with the same stdout; a task whose end the prefix holds
// does not run again, and every other runs exactly once.
func TestCrashPoints(t *testing.T) {
	log := filepath.Join(t.TempDir(), "runs.log")
	req := &pb.SubmitRequest{Session: "s1"}
	for i := range 5 {
		key := fmt.Sprintf("k%d", i)
		req.Tasks = append(req.Tasks, &pb.TaskSpec{Name: key, Key: key, Resources: &pb.Resources{Cores: 1},
			Command: fmt.Sprintf(`printf '%%s\n' "$TRELLIS_IDEMPOTENCY_KEY" >> %s; echo out %d`, log, i)})
	}
	state := t.TempDir()
	first := crashLife(t, state, req)
	lines := func() []string {
		b, _ := os.ReadFile(log)
		return strings.Fields(string(b))
	}
	if n := len(lines()); n != 5 {
		t.Fatalf("the first life ran %d tasks; want 5", n)
	}
	journaltest.CrashPoints(t, state, func(t *testing.T, dir string, n int) {
		ended := make(map[string]bool) // keys whose end the prefix holds
		for _, b := range journaltest.Read(t, dir) {
			var rec pb.JournalRecord
			if err := goproto.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
			if d := rec.GetDone(); d != nil {
				ended[fmt.Sprintf("k%d", d.TaskId-1)] = true // IDs follow the one submit's order
			}
		}
		before := len(lines())
		got := crashLife(t, dir, req)
		ran := make(map[string]int)
		for _, line := range lines()[before:] {
			_, key, _ := strings.Cut(line, "/")
			ran[key]++
		}
		for _, task := range req.Tasks {
			k := task.Key
			want := 1
			if ended[k] {
				want = 0
			}
			if ran[k] != want {
				t.Errorf("after %d records: task %s ran %d times; want %d (its end in the journal: %v)", n, k, ran[k], want, ended[k])
			}
			if got[k] != first[k] {
				t.Errorf("after %d records: task %s printed %q; want %q", n, k, got[k], first[k])
			}
		}
	})
}
