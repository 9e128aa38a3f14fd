package manager

import (
	"time"

	"trellis/internal/core"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// txn adds a record to the transaction log (Config.TxnLog), if there is
// one. Only the loop calls it: the log's writer is the loop's.
func (s *state) txn(r txnlog.Record) {
	if s.m.txn == nil {
		return
	}
	r.Time = time.Now()
	s.m.txn.Write(r)
}

// logPlacements writes a task_placed record for each placement of the
// step whose actions execute is about to carry out (the core keeps them
// only when there is a transaction log).
func (s *state) logPlacements() {
	for _, p := range s.core.Placements() {
		name := ""
		if sess := s.sessions[p.Worker]; sess != nil {
			name = sess.hello.Name
		}
		s.txn(txnlog.Record{Event: txnlog.TaskPlaced, Task: uint64(p.Task), Worker: name})
	}
}

// flushTxn writes the log's buffered records; the loop calls it each tick
// and when it stops. A log that failed is said once, and stops.
func (s *state) flushTxn() {
	if s.m.txn == nil {
		return
	}
	s.m.txn.Flush()
	if err := s.m.txn.Err(); err != nil && !s.txnFailed {
		s.txnFailed = true
		s.m.log.Error("the transaction log stopped; the manager goes on without it", "err", err)
	}
}

func modality(spec *pb.TaskSpec) string {
	if spec.GetCall() != nil {
		return "call"
	}
	return "task"
}

// instanceTxn logs an instance's report from worker id: ready, or ended
// with result and reason.
func (s *state) instanceTxn(event string, id core.WorkerID, inst uint64, attempt uint32, result, reason string) {
	if s.m.txn == nil {
		return
	}
	r := txnlog.Record{Event: event, Instance: inst, Library: s.instLibs[inst], Attempt: attempt, Result: result, Reason: reason}
	if sess := s.sessions[id]; sess != nil {
		r.Worker = sess.hello.Name
	}
	s.txn(r)
}
