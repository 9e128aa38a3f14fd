package manager

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "trellis/internal/proto/trellisv1"
)

// The index follows a task through its attempts; an entry a reader holds
// does not change under it.
func TestIndexFollowsATask(t *testing.T) {
	m := &Manager{index: newTaskIndex(10)}
	t0 := time.Unix(1000, 0)
	spec := &pb.TaskSpec{Name: "a", Command: "echo a"}
	m.index.submitted(1, spec, "s-1", t0)
	m.index.started(1, 1, "w1", t0.Add(time.Second))
	held := m.Task(1)
	m.index.requeued(1, 1, "worker_lost: connection closed", t0.Add(2*time.Second))
	m.index.started(1, 2, "w2", t0.Add(3*time.Second))
	m.index.done(1, 2, &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Stdout: make([]byte, MaxIndexTail+5)}, t0.Add(4*time.Second))

	want := &TaskInfo{ID: 1, Spec: spec, Session: "s-1", Submitted: t0, State: pb.TaskState_TASK_STATE_DONE,
		Attempts: []AttemptInfo{
			{Attempt: 1, Worker: "w1", Started: t0.Add(time.Second), Ended: t0.Add(2 * time.Second), Result: "worker_lost: connection closed"},
			{Attempt: 2, Worker: "w2", Started: t0.Add(3 * time.Second), Ended: t0.Add(4 * time.Second), Result: "success"},
		},
		Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Stdout: make([]byte, MaxIndexTail), StdoutTruncated: true, Stderr: []byte{}},
	}
	if diff := cmp.Diff(want, m.Task(1), protocmp.Transform()); diff != "" {
		t.Errorf("Task(1) mismatch (-want +got):\n%s", diff)
	}
	wantHeld := &TaskInfo{ID: 1, Spec: spec, Session: "s-1", Submitted: t0, State: pb.TaskState_TASK_STATE_RUNNING,
		Attempts: []AttemptInfo{{Attempt: 1, Worker: "w1", Started: t0.Add(time.Second)}}}
	if diff := cmp.Diff(wantHeld, held, protocmp.Transform()); diff != "" {
		t.Errorf("the entry held since attempt 1 changed (-want +got):\n%s", diff)
	}
}

// The index keeps the newest tasks, pages them newest first and filters
// them by state.
func TestIndexPagesAndBounds(t *testing.T) {
	m := &Manager{index: newTaskIndex(100)}
	for id := uint64(1); id <= 250; id++ {
		m.index.submitted(id, &pb.TaskSpec{}, "", time.Time{})
		if id%2 == 0 {
			m.index.started(id, 1, "w", time.Time{})
		}
	}
	if n := m.IndexSize(); n < 90 || n > 100 {
		t.Errorf("IndexSize() = %d after 250 tasks, want 90 to 100", n)
	}
	if m.Task(1) != nil || m.Task(250) == nil {
		t.Errorf("Task(1) = %v, Task(250) = %v; want the oldest dropped, the newest kept", m.Task(1), m.Task(250))
	}
	ids := func(p TaskPage) []uint64 {
		var out []uint64
		for _, t := range p.Tasks {
			out = append(out, t.ID)
		}
		return out
	}
	page := m.Tasks(pb.TaskState_TASK_STATE_RUNNING, 2, 3)
	if diff := cmp.Diff([]uint64{246, 244, 242}, ids(page)); diff != "" {
		t.Errorf("Tasks(RUNNING, 2, 3) mismatch (-want +got):\n%s", diff)
	}
	running := 0
	for id := uint64(1); id <= 250; id++ {
		if t := m.Task(id); t != nil && t.State == pb.TaskState_TASK_STATE_RUNNING {
			running++
		}
	}
	if page.Total != running {
		t.Errorf("Tasks(RUNNING, 2, 3).Total = %d, want %d", page.Total, running)
	}
	if all := m.Tasks(pb.TaskState_TASK_STATE_UNSPECIFIED, 0, 1); all.Total != m.IndexSize() || all.Tasks[0].ID != 250 {
		t.Errorf("Tasks(all, 0, 1) = %d of %d, want task 250 of %d", all.Tasks[0].ID, all.Total, m.IndexSize())
	}
}

// The index names the task that writes a file, the newest of those it
// holds, and forgets it with the task.
func TestIndexProducer(t *testing.T) {
	m := &Manager{index: newTaskIndex(10)}
	out := func(names ...string) *pb.TaskSpec {
		s := &pb.TaskSpec{}
		for _, n := range names {
			s.Outputs = append(s.Outputs, &pb.FileRef{Name: n, Path: n})
		}
		return s
	}
	m.index.submitted(1, out("a", "b"), "", time.Time{})
	m.index.submitted(2, out("b"), "", time.Time{})
	for name, want := range map[string]uint64{"a": 1, "b": 2, "c": 0} {
		var got uint64
		if p := m.Producer(name); p != nil {
			got = p.ID
		}
		if got != want {
			t.Errorf("Producer(%q) = task %d, want %d (0: none)", name, got, want)
		}
	}
	for id := uint64(3); id <= 12; id++ { // the index drops tasks 1 and 2
		m.index.submitted(id, out(), "", time.Time{})
	}
	if p := m.Producer("a"); p != nil {
		t.Errorf("Producer(a) = task %d after its task was dropped, want none", p.ID)
	}
	if n := len(m.index.producers); n != 0 {
		t.Errorf("the index keeps %d producers of dropped tasks, want 0", n)
	}
}
