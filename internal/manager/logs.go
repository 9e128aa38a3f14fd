package manager

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// TaskLogs is the answer of GET /logs/ID on the manager's port: what the
// task index keeps of a task's output (trellis.TaskLogs mirrors it).
type TaskLogs struct {
	Task            uint64 `json:"task"`
	Name            string `json:"name"`
	State           string `json:"state"`            // waiting, running, done
	Result          string `json:"result,omitempty"` // once done: success, failed, ...
	ExitCode        int32  `json:"exit_code"`
	Message         string `json:"message,omitempty"`
	Worker          string `json:"worker,omitempty"` // of its last attempt
	Stdout          []byte `json:"stdout,omitempty"` // tails, at most MaxIndexTail bytes
	Stderr          []byte `json:"stderr,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
}

// serveLogs answers GET /logs/ID from the task index.
func (m *Manager) serveLogs(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, fmt.Sprintf("task %q: give a task ID, a number", r.PathValue("id")), http.StatusBadRequest)
		return
	}
	t := m.Task(id)
	if t == nil {
		http.Error(w, fmt.Sprintf("task %d: this manager holds no logs of it: it never had it, or its index (the newest %d tasks) dropped it", id, m.index.size), http.StatusNotFound)
		return
	}
	l := TaskLogs{Task: id, Name: t.Spec.GetName(), State: stateLabel(t.State)}
	if n := len(t.Attempts); n > 0 {
		l.Worker = t.Attempts[n-1].Worker
	}
	if o := t.Outcome; o != nil {
		l.Result, l.ExitCode, l.Message = proto.ResultLabel(o.GetKind()), o.GetExitCode(), o.GetMessage()
		l.Stdout, l.Stderr, l.StdoutTruncated, l.StderrTruncated = o.GetStdout(), o.GetStderr(), o.GetStdoutTruncated(), o.GetStderrTruncated()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(l)
}

func stateLabel(s pb.TaskState) string {
	switch s {
	case pb.TaskState_TASK_STATE_RUNNING:
		return "running"
	case pb.TaskState_TASK_STATE_DONE:
		return "done"
	}
	return "waiting"
}
