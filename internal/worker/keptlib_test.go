package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "trellis/internal/proto/trellisv1"
	"trellis/sdk/go/library"
)

// TestHelperLibrary is not a test: run with TRELLIS_WORKER_HELPER=1, it is
// a library built with the Go SDK whose function "gate" waits until the
// file named by its arguments exists and returns what it holds.
func TestHelperLibrary(t *testing.T) {
	if os.Getenv("TRELLIS_WORKER_HELPER") != "1" {
		t.Skip("helper process")
	}
	l := library.New("helper")
	l.Register("gate", func(ctx context.Context, args []byte) ([]byte, error) {
		for {
			if b, err := os.ReadFile(string(args)); err == nil {
				return b, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	library.Main(l)
}

// openGate makes the gate file with its content whole: the helper reads it
// as soon as it exists (a plain write could be read half made, empty).
func openGate(t *testing.T, gate, content string) {
	t.Helper()
	if err := os.WriteFile(gate+".new", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(gate+".new", gate); err != nil {
		t.Fatal(err)
	}
}

func startHelper(instance uint64) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_StartLibrary{StartLibrary: &pb.StartLibrary{Instance: instance, Attempt: 1,
		Library: &pb.LibrarySpec{Name: "helper", Command: fmt.Sprintf("exec %q -test.run='^TestHelperLibrary$'", os.Args[0]),
			Env: []string{"TRELLIS_WORKER_HELPER=1"}, Slots: 2, Resources: &pb.Resources{Cores: 1}}}}}
}

func callGate(task uint64, instance uint64, gate string) *pb.ManagerMessage {
	return &pb.ManagerMessage{Msg: &pb.ManagerMessage_Run{Run: &pb.Run{TaskId: task, Attempt: 1, Instance: instance, Epoch: 1,
		Spec: &pb.TaskSpec{Call: &pb.CallSpec{Library: "helper", Function: "gate", Args: []byte(gate)}}}}}
}

// nextOf returns the worker's next message that pick accepts, skipping others.
func nextOf[T any](t *testing.T, m *managerEnd, pick func(*pb.WorkerMessage) *T) *T {
	t.Helper()
	for {
		if x := pick(m.next(t)); x != nil {
			return x
		}
	}
}

// TestLibraryKeptAcrossReconnect: the connection breaks while a call runs
// in a library instance; both go on, and the worker lists them when it
// reconnects to the same run (Hello.instances, the call with its
// instance). The call's report and later calls go to the new connection.
// A manager of another run stops the instance.
func TestLibraryKeptAcrossReconnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connectRun(t, "run1", 1)
	m.send(t, startHelper(7))
	nextOf(t, m, (*pb.WorkerMessage).GetLibraryStarted)
	gate := filepath.Join(t.TempDir(), "gate")
	m.send(t, callGate(1, 7, gate))
	deadline := time.Now().Add(20 * time.Second)
	for h.w.libs.get(7) == nil || h.w.libs.get(7).calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the call did not start in 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.Close()

	m2, hello := h.connectRun(t, "run1", 2)
	if diff := cmp.Diff([]*pb.KeptInstance{{Instance: 7, Attempt: 1, Library: "helper"}}, hello.Instances, protocmp.Transform()); diff != "" {
		t.Errorf("hello instances mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*pb.RunningAttempt{{TaskId: 1, Attempt: 1, Epoch: 1, Instance: 7}}, hello.Running, protocmp.Transform()); diff != "" {
		t.Errorf("hello running mismatch (-want +got):\n%s", diff)
	}
	if hello.RunId != "run1" {
		t.Errorf("hello run ID %q; want run1", hello.RunId)
	}
	openGate(t, gate, "adopted")
	d := nextOf(t, m2, (*pb.WorkerMessage).GetDone)
	if d.TaskId != 1 || d.Epoch != 1 || d.Outcome.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS || string(d.Outcome.GetResult()) != "adopted" {
		t.Errorf("call 1: report %v; want its success, of epoch 1, with its result", d)
	}
	m2.send(t, callGate(2, 7, gate)) // the same instance serves the new connection
	if d := nextOf(t, m2, (*pb.WorkerMessage).GetDone); d.TaskId != 2 || d.Outcome.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS {
		t.Errorf("call 2: report %v; want its success", d)
	}
	m2.Close()

	_, hello = h.connectRun(t, "run2", 1)
	if len(hello.Instances) != 1 || hello.RunId != "run1" {
		t.Errorf("hello lists instances %v of run %q; want instance 7 of run1", hello.Instances, hello.RunId)
	}
	deadline = time.Now().Add(20 * time.Second)
	for h.w.libs.count() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a manager of another run welcomed the worker, and its kept instance still runs after 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, insts := h.w.libs.list(); len(insts) != 0 {
		t.Errorf("instances %v still kept", insts)
	}
}
