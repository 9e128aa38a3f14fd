package manager

import (
	"sync"
	"time"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// The task index keeps, for the dashboard, what the snapshot does not: each
// recent task's spec, attempts and result, by ID. It is a bounded, read-only
// view the loop writes as it acts (submit, dispatch, requeue, done), not a
// second state machine: nothing decides from it. The loop never reads it.
//
// Entries are immutable: the loop replaces a task's *TaskInfo with a new
// one at each change, so a reader holds one without a lock.

// DefaultIndexSize is how many tasks the index keeps at most: the newest.
// Past it the oldest tenth is dropped from the index (never from the core).
const DefaultIndexSize = 100_000

// MaxIndexTail bounds the stdout and stderr tail the index keeps of a task.
const MaxIndexTail = 2 << 10

// TaskInfo is what the index knows of a task or call. Do not modify it.
type TaskInfo struct {
	ID        uint64
	Spec      *pb.TaskSpec // the manager's record of it: do not modify
	Session   string       // of the client that submitted it
	Submitted time.Time
	State     pb.TaskState // WAITING, RUNNING or DONE
	Attempts  []AttemptInfo
	Outcome   *pb.Outcome // once DONE; tails cut to MaxIndexTail, no outputs' content
	// Dataflow: the core counts it as a dataflow task (core.Tally); known
	// from its first dispatch.
	Dataflow bool
}

// AttemptInfo is one placement of a task on a worker.
type AttemptInfo struct {
	Attempt uint32
	Worker  string
	Started time.Time
	Ended   time.Time // zero while it runs
	Result  string    // how it ended: "success", "worker lost: …"; empty while it runs
}

// taskIndex is the index: written by the loop, read by anyone.
type taskIndex struct {
	mu        sync.RWMutex         // guards byID, order, producers
	byID      map[uint64]*TaskInfo // the newest tasks
	order     []uint64             // their IDs, ascending (IDs only grow)
	producers map[string]uint64    // output cache name -> the newest indexed task that writes it
	size      int
}

func newTaskIndex(size int) *taskIndex {
	if size <= 0 {
		size = DefaultIndexSize
	}
	return &taskIndex{byID: make(map[uint64]*TaskInfo), producers: make(map[string]uint64), size: size}
}

// submitted adds a task.
func (x *taskIndex) submitted(id uint64, spec *pb.TaskSpec, session string, now time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.byID[id] = &TaskInfo{ID: id, Spec: spec, Session: session, Submitted: now, State: pb.TaskState_TASK_STATE_WAITING}
	x.order = append(x.order, id)
	for _, o := range spec.GetOutputs() {
		x.producers[o.GetName()] = id
	}
	if len(x.order) > x.size { // drop the oldest tenth at once: amortised O(1)
		n := len(x.order) - x.size + x.size/10
		for _, old := range x.order[:n] {
			for _, o := range x.byID[old].Spec.GetOutputs() {
				if x.producers[o.GetName()] == old {
					delete(x.producers, o.GetName())
				}
			}
			delete(x.byID, old)
		}
		x.order = append(x.order[:0:0], x.order[n:]...)
	}
}

// update replaces task id's entry by a changed copy; a task the index
// dropped is left alone.
func (x *taskIndex) update(id uint64, change func(t *TaskInfo)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.byID[id]
	if old == nil {
		return
	}
	t := *old
	t.Attempts = append([]AttemptInfo(nil), old.Attempts...) // readers share the old one
	change(&t)
	x.byID[id] = &t
}

// started records an attempt placed on worker.
func (x *taskIndex) started(id uint64, attempt uint32, worker string, now time.Time) {
	x.update(id, func(t *TaskInfo) {
		if t.State != pb.TaskState_TASK_STATE_DONE { // (else a run again to recreate a lost file)
			t.State = pb.TaskState_TASK_STATE_RUNNING
		}
		t.Attempts = append(t.Attempts, AttemptInfo{Attempt: attempt, Worker: worker, Started: now})
	})
}

// dataflow records that the core counts task id as a dataflow task.
func (x *taskIndex) dataflow(id uint64) {
	x.update(id, func(t *TaskInfo) { t.Dataflow = true })
}

// recovered records, for a task's end replayed from the journal, the
// worker its attempt ran on (its start time is not journaled: zero).
func (x *taskIndex) recovered(id uint64, attempt uint32, worker string) {
	x.update(id, func(t *TaskInfo) {
		t.Attempts = append(t.Attempts, AttemptInfo{Attempt: attempt, Worker: worker})
	})
}

// requeued records that an attempt ended and the task waits again.
func (x *taskIndex) requeued(id uint64, attempt uint32, result string, now time.Time) {
	x.update(id, func(t *TaskInfo) {
		if t.State != pb.TaskState_TASK_STATE_DONE {
			t.State = pb.TaskState_TASK_STATE_WAITING
		}
		t.endAttempt(attempt, result, now)
	})
}

// done records a task's result and returns how long its attempt ran from
// its placement (0 when the index does not hold it).
func (x *taskIndex) done(id uint64, attempt uint32, o *pb.Outcome, now time.Time) (ran time.Duration) {
	kept := &pb.Outcome{Kind: o.GetKind(), ExitCode: o.GetExitCode(), Message: o.GetMessage(),
		Stdout: tail(o.GetStdout()), Stderr: tail(o.GetStderr()), RunMs: o.GetRunMs(), PeakMemoryMb: o.GetPeakMemoryMb(),
		StdoutTruncated: o.GetStdoutTruncated() || len(o.GetStdout()) > MaxIndexTail,
		StderrTruncated: o.GetStderrTruncated() || len(o.GetStderr()) > MaxIndexTail, Traceback: o.GetTraceback()}
	x.update(id, func(t *TaskInfo) {
		t.State = pb.TaskState_TASK_STATE_DONE
		t.Outcome = kept
		ran = t.endAttempt(attempt, proto.ResultLabel(o.GetKind()), now)
	})
	return ran
}

// endAttempt ends an attempt and returns how long it ran.
func (t *TaskInfo) endAttempt(attempt uint32, result string, now time.Time) time.Duration {
	for i := len(t.Attempts) - 1; i >= 0; i-- {
		if a := &t.Attempts[i]; a.Attempt == attempt && a.Ended.IsZero() {
			a.Ended, a.Result = now, result
			if a.Started.IsZero() { // replayed: no start known
				return 0
			}
			return now.Sub(a.Started)
		}
	}
	return 0
}

func tail(b []byte) []byte {
	if len(b) > MaxIndexTail {
		b = b[len(b)-MaxIndexTail:]
	}
	return append([]byte(nil), b...)
}

// Task returns what the index knows of task id, or nil when it never held
// it or dropped it.
func (m *Manager) Task(id uint64) *TaskInfo {
	m.index.mu.RLock()
	defer m.index.mu.RUnlock()
	return m.index.byID[id]
}

// Producer returns the task of the index that writes the file of cache
// name (the newest, if several did), or nil.
func (m *Manager) Producer(name string) *TaskInfo {
	m.index.mu.RLock()
	defer m.index.mu.RUnlock()
	if id, ok := m.index.producers[name]; ok {
		return m.index.byID[id]
	}
	return nil
}

// TaskPage is one page of the index, newest first.
type TaskPage struct {
	Tasks []*TaskInfo
	Total int // tasks in the index that match
}

// Tasks returns the page of the index, newest first, that skips skip
// tasks and holds at most n, of the tasks in state (UNSPECIFIED: all).
// All tasks cost the page's length; a state costs a scan of the index, in
// chunks, so that the loop never waits for more than a chunk.
func (m *Manager) Tasks(state pb.TaskState, skip, n int) TaskPage {
	x := m.index
	var page TaskPage
	x.mu.RLock()
	if len(x.order) == 0 {
		x.mu.RUnlock()
		return page
	}
	id := x.order[len(x.order)-1]
	if state == pb.TaskState_TASK_STATE_UNSPECIFIED {
		page.Total = len(x.order)
		for i := len(x.order) - 1 - skip; i >= 0 && len(page.Tasks) < n; i-- {
			page.Tasks = append(page.Tasks, x.byID[x.order[i]])
		}
		x.mu.RUnlock()
		return page
	}
	x.mu.RUnlock()
	const chunk = 4096
	for id > 0 {
		x.mu.RLock()
		oldest := uint64(0)
		if len(x.order) > 0 {
			oldest = x.order[0]
		}
		for k := 0; k < chunk && id >= oldest && id > 0; k, id = k+1, id-1 {
			t := x.byID[id] // IDs are not all indexed: those dropped, and gaps
			if t == nil || t.State != state {
				continue
			}
			if page.Total >= skip && len(page.Tasks) < n {
				page.Tasks = append(page.Tasks, t)
			}
			page.Total++
		}
		if id < oldest {
			id = 0
		}
		x.mu.RUnlock()
	}
	return page
}

// IndexSize is how many tasks the index holds now.
func (m *Manager) IndexSize() int {
	m.index.mu.RLock()
	defer m.index.mu.RUnlock()
	return len(m.index.order)
}
