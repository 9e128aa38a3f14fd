package manager

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/core"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// Direct calls (docs/direct-calls.md): the manager lends a client session
// slots of a ready library instance (a lease, decided by the core); the
// client sends calls straight to the instance's worker with the lease's
// token, and the worker reports each call's end here, where it is counted
// and journaled as the manager's own calls are.

// DefaultLeaseTTL is Config.LeaseTTL's default: how long a lease lasts
// without a call ending on it.
const DefaultLeaseTTL = 10 * time.Second

// maxLeaseSlots bounds the slots one request asks for.
const maxLeaseSlots = 1024

// leaseState is what the loop keeps of leases.
type leaseState struct {
	next     uint64                  // leases given out
	sessions map[core.LeaseID]string // live leases' sessions
}

type evLease struct {
	req   *pb.LeaseRequest
	reply chan leaseReply
}

type leaseReply struct {
	resp *pb.LeaseResponse
	err  error
}

// newLeaseKey is the key of a worker's lease tokens (Welcome.lease_key).
func newLeaseKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func (s *service) Lease(ctx context.Context, req *connect.Request[pb.LeaseRequest]) (*connect.Response[pb.LeaseResponse], error) {
	r := req.Msg
	if r.Library == "" || r.Session == "" || r.Slots < 0 || r.Slots > maxLeaseSlots || r.Slots == 0 && r.Release == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("a lease names a session and a library and asks for 1 to %d slots, or releases a lease (got session %q, library %q, %d slots, release %d)", maxLeaseSlots, r.Session, r.Library, r.Slots, r.Release))
	}
	rep, err := call(ctx, s.m, func(c chan leaseReply) any { return evLease{req: r, reply: c} })
	if err != nil {
		return nil, err
	}
	if rep.err != nil {
		return nil, rep.err
	}
	return connect.NewResponse(rep.resp), nil
}

// lease asks the core for a lease and answers with the worker's address
// and the lease's token.
func (s *state) lease(ev evLease) {
	r := ev.req
	if r.Release != 0 {
		s.releaseLease(r.Session, core.LeaseID(r.Release))
		if r.Slots == 0 {
			ev.reply <- leaseReply{resp: &pb.LeaseResponse{}}
			return
		}
	}
	rec := s.libs[r.Library]
	if rec == nil || rec.removed {
		ev.reply <- leaseReply{err: connect.NewError(connect.CodeNotFound, fmt.Errorf("library %q is not installed", r.Library))}
		return
	}
	if s.m.clients.Lookup(r.Session) == nil {
		ev.reply <- leaseReply{err: connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("session %q is not open: a lease belongs to a client's open session", r.Session))}
		return
	}
	s.leases.next++
	id := core.LeaseID(s.leases.next)
	acts := s.core.Step(core.LeaseRequested{Lease: id, Session: r.Session, Lib: rec.id, Slots: r.Slots, TTL: s.m.cfg.LeaseTTL})
	var rep leaseReply
	for _, a := range acts {
		switch a := a.(type) {
		case core.LeaseGranted:
			if a.Lease != id {
				continue
			}
			sess := s.sessions[a.Worker]
			if sess.fileServer == "" { // a simulated worker serves no calls
				s.execute(acts, nil)
				s.releaseLease(r.Session, id)
				ev.reply <- leaseReply{err: connect.NewError(connect.CodeUnavailable, fmt.Errorf("no lease on library %q: its instance's worker serves no direct calls (calls go through the manager)", r.Library))}
				return
			}
			rep.resp = &pb.LeaseResponse{Lease: uint64(id), WorkerAddr: sess.fileServer, Token: proto.LeaseToken(sess.leaseKey, uint64(id), uint64(a.Worker)),
				Slots: a.Slots, TtlMs: s.m.cfg.LeaseTTL.Milliseconds()}
		case core.LeaseRefused:
			rep.err = connect.NewError(connect.CodeUnavailable, fmt.Errorf("no lease on library %q now: %s (calls go through the manager)", r.Library, a.Why))
		}
	}
	s.execute(acts, nil)
	ev.reply <- rep
}

// releaseLease ends a lease its session's client dropped, so that its slots
// do not wait for its expiry; a lease of another session is left alone.
func (s *state) releaseLease(session string, id core.LeaseID) {
	if s.leases.sessions[id] == session {
		s.step(core.LeaseReleased{Lease: id})
	}
}

// leaseAction carries out a lease action of the core.
func (s *state) leaseAction(a core.Action) {
	switch a := a.(type) {
	case core.LeaseGranted:
		if s.leases.sessions == nil {
			s.leases.sessions = make(map[core.LeaseID]string)
		}
		s.leases.sessions[a.Lease] = a.Session
		name := ""
		if rec := s.libByID[a.Lib]; rec != nil {
			name = rec.spec.GetName()
		}
		s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_LeaseGranted{LeaseGranted: &pb.LeaseGranted{
			Lease: uint64(a.Lease), Instance: uint64(a.Instance), Slots: a.Slots, Session: a.Session, Library: name}}})
	case core.LeaseEnded:
		delete(s.leases.sessions, a.Lease)
		s.m.log.Info("lease ended", "lease", a.Lease, "session", a.Session, "worker", a.Worker, "instance", a.Instance, "why", a.Why)
		if s.sessions[a.Worker] != nil {
			s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_LeaseEnded{LeaseEnded: &pb.LeaseEnded{Lease: uint64(a.Lease)}}})
		}
	}
}

// directCallEnded counts a direct call a worker reports (or the journal
// replays: then w is 0) and journals it.
//
// What a DirectCallEnded record is needed for after a restart: only its
// counts. A replay counts it as a finished call (the core's Tally and
// Stats.Direct), by its kind (status's succeeded and failed, the calls'
// succeeded and failed, the ended calls by kind in /metrics), and as a
// call done of its library, the one installed under its name at that
// point of the journal (a library keeps its record when it is removed and
// installed again, so only a call before its library's first install,
// which the manager never journals, would count otherwise). Nothing else
// of it is read again:
//   - its lease: leases are not journaled, so a replay has none to renew
//     (the core only counts the end);
//   - its key: a direct call has no task, and nothing is looked up by
//     its key: a call that falls back goes through the manager as a
//     submit with that key, journaled and kept as any, and the manager
//     does not ask whether it ended directly (a plain call may run twice,
//     docs/direct-calls.md, "Faults"; direct calls are never at-most-once);
//   - a duplicate: a worker reports each end at most once, to its session
//     of the time or, when that ended, to the next one of the same run
//     (the manager does not deduplicate them, and a replay does not
//     either);
//   - its function, message, run time and size go to the transaction log
//     in the life that learnt it, not again on replay;
//   - its session: only to forget the record with its session
//     (FoldJournal).
//
// So a snapshot keeps, of a session's direct calls of a library, one
// JournalDirectCalls record of their counts by kind (directCallsCounted).
func (s *state) directCallEnded(w core.WorkerID, d *pb.DirectCallEnded) {
	s.step(core.DirectCallEnded{Lease: core.LeaseID(d.Lease), Kind: coreKind(d.Kind)})
	s.countDirect(d.Library, d.Kind, 1)
	if w == 0 {
		return // replayed: its session was told in the life that journaled it
	}
	s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_DirectCallEnded{DirectCallEnded: d}})
	var name string
	if sess := s.sessions[w]; sess != nil {
		name = sess.hello.Name
	}
	s.txn(txnlog.Record{Event: txnlog.TaskDone, Worker: name, Result: proto.ResultLabel(d.Kind), Reason: d.Message, RunMs: d.RunMs})
	// The session is not told: the client that made the call has its
	// answer from the worker, and no other holds a handle on it (an event
	// per call would cost the manager and the client as much again).
}

// directCallsCounted counts the direct calls a snapshot's JournalDirectCalls
// record stands for (on replay), as directCallEnded counted each.
func (s *state) directCallsCounted(d *pb.JournalDirectCalls) {
	var n uint64
	for _, c := range d.Counts {
		s.countDirect(d.Library, c.Kind, c.Calls)
		n += c.Calls
	}
	s.step(core.DirectCallsCounted{Calls: n})
}

// countDirect counts n direct calls of library that ended with kind, in
// the manager's totals (the core counts them apart).
func (s *state) countDirect(library string, kind pb.ResultKind, n uint64) {
	s.ended.add(1, kind, n)
	if kind == pb.ResultKind_RESULT_KIND_SUCCESS {
		s.succeeded += n
		s.callsSucceeded += n
	} else {
		s.failed += n
		s.callsFailed += n
	}
	if rec := s.libs[library]; rec != nil {
		rec.callsDone += n
	}
}
