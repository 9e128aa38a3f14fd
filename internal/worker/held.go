package worker

import (
	"time"

	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

// Results of calls wait up to reportHold for the results of the calls still
// running beside them, so that a burst reaches the manager as one message:
// one write, one wake-up of the manager's loop, and one batch of new calls
// back. A call that finishes with no other call running goes at once, so
// a lone blocking call pays nothing.
const (
	reportHold   = 200 * time.Microsecond
	maxHeld      = 64
	maxHeldBytes = 1 << 20
)

// heldReports gathers reports for one message; the session loop owns it.
type heldReports struct {
	msgs  []*pb.WorkerMessage
	refs  []heldRef // of msgs, one each: what the kept pool lists (keep)
	bytes int
	timer *time.Timer
	C     <-chan time.Time // fires when the held reports must go
}

// add holds msg. It reports whether the reports must go now: holding
// more would make the message too big.
func (h *heldReports) add(msg *pb.WorkerMessage, ref heldRef) (full bool) {
	h.msgs = append(h.msgs, msg)
	h.refs = append(h.refs, ref)
	h.bytes += goproto.Size(msg)
	return len(h.msgs) >= maxHeld || h.bytes >= maxHeldBytes
}

// arm starts the hold of reportHold if it is not running.
func (h *heldReports) arm() { h.armFor(reportHold) }

// armFor starts a hold of d if none is running.
func (h *heldReports) armFor(d time.Duration) {
	if h.C != nil || len(h.msgs) == 0 {
		return
	}
	if h.timer == nil {
		h.timer = time.NewTimer(d)
	} else {
		h.timer.Reset(d)
	}
	h.C = h.timer.C
}

// flush posts the held reports, as one message if there are several.
func (h *heldReports) flush(post func(*pb.WorkerMessage)) {
	if h.C != nil {
		h.timer.Stop()
		h.C = nil
	}
	switch len(h.msgs) {
	case 0:
		return
	case 1:
		post(h.msgs[0])
	default:
		post(wrapWorkerBatch(h.msgs))
	}
	h.drop()
}

// heldRef is what a held report's attempt was run with.
type heldRef struct{ epoch, instance uint64 }

// drop forgets the held reports.
func (h *heldReports) drop() {
	if h.C != nil {
		h.timer.Stop()
		h.C = nil
	}
	clear(h.msgs)
	h.msgs, h.refs, h.bytes = h.msgs[:0], h.refs[:0], 0
}

// keep hands the held reports of attempts (Done, Returned) to the kept
// pool, for the next session of manager run runID to send and its Hello to
// list: the session that held them broke. Other messages are dropped, and
// so are the reports of calls whose library instance is not kept (insts),
// as the calls running in them are.
func (h *heldReports) keep(k *kept, runID string, insts map[uint64]bool) {
	for i, msg := range h.msgs {
		if inst := h.refs[i].instance; inst != 0 && !insts[inst] {
			continue
		}
		var task uint64
		var attempt uint32
		switch x := msg.Msg.(type) {
		case *pb.WorkerMessage_Done:
			task, attempt = x.Done.TaskId, x.Done.Attempt
		case *pb.WorkerMessage_Returned:
			task, attempt = x.Returned.TaskId, x.Returned.Attempt
		default:
			continue
		}
		k.report(runID, &pb.RunningAttempt{TaskId: task, Attempt: attempt, Epoch: h.refs[i].epoch, Instance: h.refs[i].instance}, msg)
	}
	h.drop()
}

// wrapWorkerBatch makes one message of msgs, flattening batches among
// them: batches do not nest.
func wrapWorkerBatch(msgs []*pb.WorkerMessage) *pb.WorkerMessage {
	flat := make([]*pb.WorkerMessage, 0, len(msgs))
	for _, m := range msgs {
		if b := m.GetBatch(); b != nil {
			flat = append(flat, b.Msgs...)
		} else {
			flat = append(flat, m)
		}
	}
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Batch{Batch: &pb.WorkerBatch{Msgs: flat}}}
}
