package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "trellis/internal/proto/trellisv1"
)

// waitFor is a command that ends once file exists, printing what it says.
func waitFor(file string) string {
	return fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done; cat %s", file, file)
}

func runEpoch(task uint64, command string, epoch uint64) *pb.ManagerMessage {
	msg := run(task, command)
	msg.GetRun().Epoch = epoch
	return msg
}

func sortedRefs(refs []*pb.RunningAttempt) []*pb.RunningAttempt {
	sort.Slice(refs, func(i, j int) bool { return refs[i].TaskId < refs[j].TaskId })
	return refs
}

// TestKeptAcrossReconnect: the connection breaks while two commands run;
// they go on, and the worker lists them when it reconnects to the same
// run. The manager kills one; the other ends, and both reports carry the
// epoch of their Run.
func TestKeptAcrossReconnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connectRun(t, "run1", 1)
	gate := filepath.Join(t.TempDir(), "go")
	m.send(t, runEpoch(1, waitFor(gate), 1))
	m.send(t, runEpoch(2, waitFor(gate+".never"), 1))
	waitBoxes(t, h.w, 2) // both run before the stream breaks: they are kept, not stopped
	m.Close()

	m2, hello := h.connectRun(t, "run1", 2)
	want := []*pb.RunningAttempt{{TaskId: 1, Attempt: 1, Epoch: 1}, {TaskId: 2, Attempt: 1, Epoch: 1}}
	if diff := cmp.Diff(want, sortedRefs(hello.Running), protocmp.Transform()); diff != "" {
		t.Fatalf("hello running mismatch (-want +got):\n%s", diff)
	}
	if hello.RunId != "run1" {
		t.Errorf("hello run ID %q; want run1", hello.RunId)
	}
	m2.send(t, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Kill{Kill: &pb.Kill{TaskId: 2, Attempt: 1}}})
	openGate(t, gate, "adopted\n")
	got := map[uint64]*pb.AttemptDone{}
	for len(got) < 2 {
		d := m2.next(t).GetDone()
		if d == nil {
			continue
		}
		got[d.TaskId] = d
	}
	if d := got[1]; d.Epoch != 1 || d.Outcome.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS || string(d.Outcome.GetStdout()) != "adopted\n" {
		t.Errorf("task 1: report %v; want a success of epoch 1 printing adopted", d)
	}
	if d := got[2]; d.Epoch != 1 || d.Outcome.GetKind() == pb.ResultKind_RESULT_KIND_SUCCESS {
		t.Errorf("task 2: report %v; want a killed attempt of epoch 1", d)
	}
}

// TestKeptDroppedForAnotherRun: a manager of another run (one that kept
// no journal) knows nothing of the attempts: the worker stops them, and
// the task IDs it reuses run afresh.
func TestKeptDroppedForAnotherRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, nil)
	m, _ := h.connectRun(t, "run1", 1)
	gate := filepath.Join(t.TempDir(), "never")
	m.send(t, runEpoch(1, waitFor(gate), 1))
	waitBoxes(t, h.w, 1)
	m.Close()
	m2, hello := h.connectRun(t, "run2", 1)
	if len(hello.Running) != 1 || hello.RunId != "run1" {
		t.Fatalf("hello lists %v of run %q; want task 1 of run1", hello.Running, hello.RunId)
	}
	m2.send(t, runEpoch(1, "echo fresh", 1))
	for {
		d := m2.next(t).GetDone()
		if d == nil {
			continue
		}
		if d.TaskId != 1 || string(d.Outcome.GetStdout()) != "fresh\n" {
			t.Fatalf("report %v; want only the fresh run of task 1", d)
		}
		break
	}
	if _, refs := h.w.kept.list(); len(refs) != 0 {
		t.Errorf("kept %v after a manager of another run welcomed the worker; want none", refs)
	}
}

// waitBoxes polls, for at most 20 s, until w has made n sandboxes (and
// removed none): its attempts have started, or runs held ahead wait with
// theirs prepared (the session took every run sent before them, so those
// sent before that were not held have started: they are its attempts).
func waitBoxes(t *testing.T, w *Worker, n int) {
	t.Helper()
	pollFor(t, fmt.Sprintf("%d sandboxes (attempts started)", n), func() bool {
		entries, _ := os.ReadDir(w.boxes.dir)
		return len(entries) >= n
	})
}

// TestSessionHeldReportKept: a task's report held while runs sent ahead
// wait (aheadHold) is not lost when the connection breaks: the next Hello
// lists the attempt, and the next session sends its report.
func TestSessionHeldReportKept(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := startWorker(t, ctx, func(c *Config) { c.aheadHold = time.Hour })
	m, _ := h.connectRun(t, "run1", 1)
	gate := filepath.Join(t.TempDir(), "go")
	m.send(t, cores(runEpoch(1, waitFor(gate), 1), 4, false))
	started := gate + ".2"
	m.send(t, cores(runEpoch(2, "touch "+started+"; "+waitFor(gate+".never"), 1), 4, true))
	m.send(t, cores(runEpoch(3, "true", 1), 4, true))
	waitBoxes(t, h.w, 1)
	openGate(t, gate, "one\n")
	waitFile(t, started) // 1 ended (its report held: 3 waits behind 2) and 2 started
	m.Close()

	m2, hello := h.connectRun(t, "run1", 2)
	want := []*pb.RunningAttempt{{TaskId: 1, Attempt: 1, Epoch: 1}, {TaskId: 2, Attempt: 1, Epoch: 1}}
	if diff := cmp.Diff(want, sortedRefs(hello.Running), protocmp.Transform()); diff != "" {
		t.Fatalf("hello running mismatch (-want +got):\n%s", diff)
	}
	for {
		if d := m2.next(t).GetDone(); d != nil {
			if d.TaskId != 1 || d.Epoch != 1 || string(d.Outcome.GetStdout()) != "one\n" {
				t.Errorf("report %v; want task 1's success of epoch 1 printing one", d)
			}
			break
		}
	}
	m2.send(t, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Kill{Kill: &pb.Kill{TaskId: 2, Attempt: 1}}})
	for m2.next(t).GetDone().GetTaskId() != 2 { // ended before the worker stops
	}
}

// waitFile waits until file exists.
func waitFile(t *testing.T, file string) {
	t.Helper()
	pollFor(t, file, func() bool {
		_, err := os.Stat(file)
		return err == nil
	})
}
