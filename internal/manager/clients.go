package manager

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/core"
	"trellis/internal/manager/clients"
	pb "trellis/internal/proto/trellisv1"
)

// expireClients ends the client sessions whose clients have been away for
// the grace (clients.Table.Expire decides which) as EndSession ends one:
// their unfinished tasks are cancelled.
func (s *state) expireClients(now time.Time) {
	grace := s.m.cfg.ClientGrace
	why := fmt.Sprintf("was ended by the manager: its client was away for more than %s (the manager's --client-grace)", grace)
	expired := s.m.clients.Expire(now, grace, why)
	if len(expired) > 0 {
		s.stepped() // before the events it sends: readers then ask for a newer snapshot
	}
	for _, client := range expired {
		s.m.log.Warn("client away too long: its session ends and its unfinished tasks are cancelled",
			"session", client.Name(), "grace", grace)
		s.record(sessionEndedRecord(client.Name(), why, client))
		s.endSession(client.Name(), client)
	}
}

// maxListedTasks bounds the task IDs a session's end record lists; a
// session with more is never forgotten by compaction (forget.go).
const maxListedTasks = 1 << 20

// sessionEndedRecord is the journal record of the end of session name for
// why, listing the IDs of its tasks (client: the session, nil if it had
// none).
func sessionEndedRecord(name, why string, client *clients.Session) *pb.JournalRecord {
	r := &pb.JournalSessionEnded{Session: name, Why: why}
	if client != nil && len(client.Tasks()) <= maxListedTasks {
		r.Tasks = slices.Clone(client.Tasks())
	}
	return &pb.JournalRecord{Rec: &pb.JournalRecord_SessionEnded{SessionEnded: r}}
}

// cancelSession cancels the tasks of an ended session that have not
// finished (the core kills those that run).
func (s *state) cancelSession(client *clients.Session) {
	n := 0
	for _, id := range client.Tasks() {
		if rec := s.tasks[core.TaskID(id)]; rec != nil && !rec.done && rec.client == client {
			s.step(core.CancelTask{Task: core.TaskID(id)})
			n++
		}
	}
	if n > 0 {
		s.m.log.Info("cancelled the unfinished tasks of an ended session", "session", client.Name(), "tasks", n)
	}
}

// cancelReply answers a cancel by session or workflow: how many
// unfinished tasks it cancels, or why it cancels none.
type cancelReply struct {
	n   uint64
	err error
}

// cancel cancels tasks by ID and, with a session or a workflow, every
// unfinished task that session submitted or that carries that workflow
// label; it journals the IDs first, as they were resolved.
func (s *state) cancel(ev evCancel) {
	ids := ev.ids
	var mine uint64
	if ev.session != "" || ev.workflow != "" {
		if ev.workflow != "" && !s.workflows[ev.workflow] {
			if ev.reply != nil {
				ev.reply <- cancelReply{err: s.unknownWorkflow(ev.workflow)}
			}
			return
		}
		var found []uint64
		for id, rec := range s.tasks {
			if !rec.done && (ev.session != "" && rec.session() == ev.session || ev.workflow != "" && rec.workflow() == ev.workflow) {
				found = append(found, uint64(id))
			}
		}
		slices.Sort(found)
		mine = uint64(len(found))
		ids = append(slices.Clip(ids), found...)
		if mine > 0 {
			s.m.log.Info("cancelling unfinished tasks, as an operator asked", "session", ev.session, "workflow", ev.workflow, "tasks", mine)
		}
	}
	if len(ids) > 0 || ev.session == "" && ev.workflow == "" {
		s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_Cancelled{Cancelled: &pb.CancelRequest{TaskIds: ids}}})
	}
	for _, id := range ids {
		s.step(core.CancelTask{Task: core.TaskID(id)})
	}
	if ev.reply != nil {
		ev.reply <- cancelReply{n: mine}
	}
}

// unknownWorkflow is the error for a cancel of workflow w, a label no
// task the manager knows carries: NotFound, naming some labels it knows.
func (s *state) unknownWorkflow(w string) error {
	known := make([]string, 0, len(s.workflows))
	for k := range s.workflows {
		known = append(known, strconv.Quote(k))
	}
	slices.Sort(known)
	const shown = 10
	list := "none: no task was submitted with a workflow label (trellis run gives its workflow's name; Go clients set Task.Workflow or trellis.WithWorkflow)"
	if len(known) > 0 {
		list = strings.Join(known[:min(len(known), shown)], ", ")
		if len(known) > shown {
			list += fmt.Sprintf(" and %d more", len(known)-shown)
		}
	}
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("no task of workflow %q was submitted to this manager; the workflows it knows: %s", w, list))
}

// SessionError is the error for a request of a session that ended (err,
// a *clients.Ended): a FailedPrecondition that says why.
func SessionError(err error) error {
	return connect.NewError(connect.CodeFailedPrecondition,
		fmt.Errorf("%v; its unfinished tasks were cancelled: a new client (another session) may submit them again", err))
}
