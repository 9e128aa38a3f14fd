package manager

import (
	"trellis/internal/core"
	"trellis/internal/manager/clients"
	pb "trellis/internal/proto/trellisv1"
)

// MaxTasksPerEvent bounds the tasks one WAITING event tells (its task_id
// and also_task_ids): an event is never split across messages, and
// 16,384 tasks with keys of MaxNameBytes stay well under the batch limit.
const MaxTasksPerEvent = 1 << 14

// tellUnplaceable tells the clients of a.Tasks why they wait (a.Why), or
// that they no longer wait for that reason: one event per session for up
// to MaxTasksPerEvent of its tasks, not one per task. With a million tasks
// queued and no worker, an event per task was the manager's third largest
// memory per queued task (docs/benchmarks.md, capacity); the IDs and keys
// of a batched event cost 24 bytes a task, and its keys are the records'
// own strings.
func (s *state) tellUnplaceable(a core.Unplaceable) {
	type batch struct {
		client *clients.Session
		ev     *pb.TaskEvent
	}
	var batches []batch                // in the order of their first task
	open := map[*clients.Session]int{} // the open batch of each session, by index
	for _, id := range a.Tasks {
		rec := s.tasks[id]
		if rec == nil || rec.done { // (a run again to recreate a file)
			continue
		}
		if i, ok := open[rec.client]; ok && len(batches[i].ev.AlsoTaskIds) < MaxTasksPerEvent-1 {
			ev := batches[i].ev
			ev.AlsoTaskIds = append(ev.AlsoTaskIds, uint64(id))
			ev.AlsoKeys = append(ev.AlsoKeys, rec.key())
			continue
		}
		open[rec.client] = len(batches)
		batches = append(batches, batch{rec.client, &pb.TaskEvent{TaskId: uint64(id), Key: rec.key(),
			State: pb.TaskState_TASK_STATE_WAITING, Unplaceable: a.Why}})
	}
	for _, b := range batches {
		ev := b.ev
		if n := len(ev.AlsoTaskIds); cap(ev.AlsoTaskIds) > n+n/8 {
			// Held until the client acknowledges it: no room to spare.
			ev.AlsoTaskIds = append(make([]uint64, 0, n), ev.AlsoTaskIds...)
			ev.AlsoKeys = append(make([]string, 0, n), ev.AlsoKeys...)
		}
		s.put(b.client, ev)
	}
}
