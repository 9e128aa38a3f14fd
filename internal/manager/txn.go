package manager

import (
	"time"

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
