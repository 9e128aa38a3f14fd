package manager

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/core"
	"trellis/internal/journal"
	"trellis/internal/manager/clients"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// With Config.StateDir the manager journals what it must not forget
// (docs/recovery.md), and its effects wait for their records:
//   - a submit, a library install: the request is journaled first and
//     applied once durable, in journal order, so that a replay applies
//     the same requests in the same order and decides the same;
//   - a task's end: journaled when the core decides it; its event to the
//     client waits until the record is durable;
//   - every event to a client waits behind the records appended before
//     it (held), so that events keep their order.
// Cancels and session ends are journaled and applied at once: losing one
// in a crash only leaves the tasks it ended to run.

// held is an effect waiting for the journal to reach seq: run, or (run
// nil) an event for a client, which needs no closure of its own.
type held struct {
	seq    journal.Seq
	run    func()
	client *clients.Session
	ev     *pb.TaskEvent
}

// DefaultAdoptWindow is Config.AdoptWindow's default: workers retry every
// few seconds (at most 5 s apart), and a manager's restart takes some more.
const DefaultAdoptWindow = 30 * time.Second

// heldSend is a message to a worker waiting for the journal to reach seq,
// or for the messages to workers held before it.
type heldSend struct {
	seq journal.Seq
	w   core.WorkerID
	msg *pb.ManagerMessage
}

// sendTo queues msg for worker w, in order with every message to workers
// held before it, if w is still connected then.
func (s *state) sendTo(w core.WorkerID, msg *pb.ManagerMessage) { s.sendAfter(0, w, msg) }

// sendAfter is sendTo once record seq is durable too (0: none): the Run of
// an at-most-once task waits for its Dispatched record, its intent.
func (s *state) sendAfter(seq journal.Seq, w core.WorkerID, msg *pb.ManagerMessage) {
	if len(s.heldSends) > 0 || seq > 0 && seq > s.m.journal.Durable() {
		s.heldSends = append(s.heldSends, heldSend{seq, w, msg})
		return
	}
	if sess := s.sessions[w]; sess != nil {
		s.enqueue(sess, msg)
	}
}

// adoptedAttempt: a worker that came back after a restart runs an attempt
// dispatched before it, and the core adopted it: its report counts.
func (s *state) adoptedAttempt(a core.Adopted) {
	key := attemptKey{a.Task, a.Attempt}
	s.adopted[key] = s.joining[key]
	rec := s.tasks[a.Task]
	sess := s.sessions[a.Worker]
	if rec == nil || sess == nil {
		return
	}
	rec.worker = a.Worker
	s.m.log.Info("adopted an attempt dispatched before the restart", "task", a.Task, "attempt", a.Attempt, "worker", a.Worker, "name", sess.hello.Name)
	s.m.index.started(uint64(a.Task), a.Attempt, sess.hello.Name, time.Now())
	s.txn(txnlog.Record{Event: txnlog.TaskRunning, Task: uint64(a.Task), Attempt: a.Attempt, Worker: sess.hello.Name})
	s.notify(rec, &pb.TaskEvent{TaskId: uint64(a.Task), State: pb.TaskState_TASK_STATE_RUNNING,
		Attempt: a.Attempt, Worker: sess.hello.Name, Note: "still running after the manager restarted"})
}

// adoptedInstance: a worker that came back after a restart runs a library
// instance started before it, and the core adopted it: it serves calls.
func (s *state) adoptedInstance(a core.InstanceAdopted) {
	rec, sess := s.libByID[a.Lib], s.sessions[a.Worker]
	if rec == nil || sess == nil {
		return
	}
	if s.m.txn != nil {
		s.instLibs[uint64(a.Instance)] = rec.spec.Name
	}
	s.m.log.Info("adopted a library instance started before the restart", "library", rec.spec.Name, "instance", a.Instance, "worker", a.Worker, "name", sess.hello.Name)
}

// unknownTask: an at-most-once task's attempt was lost: it waits for the
// operator (trellis reconcile), and its client hears why.
func (s *state) unknownTask(u core.Unknown) {
	rec := s.tasks[u.Task]
	if rec == nil {
		return
	}
	s.m.log.Warn("at-most-once task in unknown: it may have taken effect; run trellis reconcile", "task", u.Task, "name", rec.name(), "attempt", u.Attempt, "why", u.Why)
	s.notify(rec, &pb.TaskEvent{TaskId: uint64(u.Task), State: pb.TaskState_TASK_STATE_WAITING, Attempt: u.Attempt,
		Note: fmt.Sprintf("unknown: %s; it may have taken effect, and waits for trellis reconcile %d --done, --failed or --rerun", u.Why, u.Task)})
}

// reconcile applies the operator's verdict on a task in unknown, once
// journaled.
func (s *state) reconcile(req *pb.ReconcileRequest, reply chan error) {
	id := core.TaskID(req.TaskId)
	if why := s.core.CanReconcile(id); why != "" {
		reply <- errors.New(why)
		return
	}
	if rec := s.tasks[id]; req.Verdict == pb.Verdict_VERDICT_DONE && rec != nil && len(rec.outputs()) > 0 {
		reply <- fmt.Errorf("task %d has output files, which are gone with its attempt: it cannot be marked done; use --rerun or --failed", id)
		return
	}
	seq := s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_Reconciled{Reconciled: req}})
	s.hold(seq, func() {
		s.applyReconcile(req)
		reply <- nil
	})
}

func (s *state) applyReconcile(req *pb.ReconcileRequest) {
	v := core.VerdictRerun
	switch req.Verdict {
	case pb.Verdict_VERDICT_DONE:
		v = core.VerdictDone
	case pb.Verdict_VERDICT_FAILED:
		v = core.VerdictFailed
	}
	s.m.log.Info("reconciled", "task", req.TaskId, "verdict", req.Verdict.String())
	s.step(core.Reconcile{Task: core.TaskID(req.TaskId), Verdict: v})
}

// journaling reports whether records go to the journal now: the manager
// keeps one and is not replaying it.
func (s *state) journaling() bool { return s.m.journal != nil && !s.replaying }

// record appends r to the journal and returns its Seq; 0 when the
// manager keeps no journal or is replaying it.
func (s *state) record(r *pb.JournalRecord) journal.Seq {
	if !s.journaling() {
		return 0
	}
	n := goproto.Size(r)
	b, err := goproto.MarshalOptions{UseCachedSize: true}.MarshalAppend(s.recBuf.room(n), r)
	if err != nil {
		panic(fmt.Sprintf("manager: encode journal record: %v", err)) // only invalid UTF-8, which the edge refuses
	}
	return s.appendRecord(b)
}

// recordDispatched journals an attempt's dispatch (a JournalDispatched):
// encoded by hand, the same bytes as record's, as it is one of the two
// records every task costs.
func (s *state) recordDispatched(task uint64, attempt uint32, worker string, epoch uint64) journal.Seq {
	if !s.journaling() {
		return 0
	}
	n := sizeDispatched(task, attempt, worker, epoch)
	return s.appendRecord(appendDispatched(s.recBuf.room(recordSize(kindDispatched, n)), n, task, attempt, worker, epoch))
}

// recordDone journals a task's end (a JournalTaskDone): its outer fields
// encoded by hand, the same bytes as record's.
func (s *state) recordDone(task uint64, attempt uint32, outcome *pb.Outcome, worker string) journal.Seq {
	if !s.journaling() {
		return 0
	}
	o := goproto.Size(outcome)
	n := sizeDone(task, attempt, o, worker)
	b, err := appendDone(s.recBuf.room(recordSize(kindDone, n)), n, task, attempt, outcome, o, worker)
	if err != nil {
		panic(fmt.Sprintf("manager: encode journal record: %v", err)) // only invalid UTF-8, which the edge refuses
	}
	return s.appendRecord(b)
}

// appendRecord hands the record encoded in b to the journal: b was
// appended to recBuf's room.
func (s *state) appendRecord(b []byte) journal.Seq {
	s.appended = s.m.journal.Append(s.recBuf.take(b))
	return s.appended
}

// recordSize is the size of a JournalRecord whose one field, kind, holds
// a message of n bytes.
func recordSize(kind protowire.Number, n int) int {
	return protowire.SizeTag(kind) + protowire.SizeBytes(n)
}

func sizeDispatched(task uint64, attempt uint32, worker string, epoch uint64) int {
	return sizeUint(task) + sizeUint(uint64(attempt)) + sizeString(worker) + sizeUint(epoch)
}

// appendDispatched appends the JournalRecord of a JournalDispatched, as
// goproto.Marshal encodes it (fields in order, zero values left out); n
// is its sizeDispatched.
func appendDispatched(b []byte, n int, task uint64, attempt uint32, worker string, epoch uint64) []byte {
	b = protowire.AppendTag(b, kindDispatched, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendUint(b, 1, task)
	b = appendUint(b, 2, uint64(attempt))
	b = appendString(b, 3, worker)
	return appendUint(b, 4, epoch)
}

// sizeDone is the size of a JournalTaskDone whose outcome's is o (a nil
// outcome is not encoded: the caller always has one).
func sizeDone(task uint64, attempt uint32, o int, worker string) int {
	return sizeUint(task) + sizeUint(uint64(attempt)) + 1 + protowire.SizeBytes(o) + sizeString(worker)
}

// appendDone appends the JournalRecord of a JournalTaskDone, as
// goproto.Marshal encodes it; n is its sizeDone, o is
// goproto.Size(outcome), just measured.
func appendDone(b []byte, n int, task uint64, attempt uint32, outcome *pb.Outcome, o int, worker string) ([]byte, error) {
	b = protowire.AppendTag(b, kindDone, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendUint(b, 1, task)
	b = appendUint(b, 2, uint64(attempt))
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(o))
	b, err := goproto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, outcome)
	return appendString(b, 4, worker), err
}

// The fields of the messages encoded by hand, as proto3 encodes them:
// left out when zero; their numbers are under 16, so a tag is one byte.

func sizeUint(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func sizeString(v string) int {
	if v == "" {
		return 0
	}
	return 1 + protowire.SizeBytes(len(v))
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendString(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// recordBuf hands out the bytes of journal records from chunks, so that
// a record costs no allocation of its own. The journal keeps a record's
// bytes until they are written; a chunk is never written over (each
// record's slice is capped at its end), and goes once the records in it
// are written and dropped.
type recordBuf struct{ b []byte }

// recordChunk is the size of recordBuf's chunks; a record over a quarter
// of it gets its own.
const recordChunk = 64 << 10

// room returns an empty slice with room for n bytes: append a record of
// n bytes to it, then take it.
func (r *recordBuf) room(n int) []byte {
	if n > recordChunk/4 {
		return make([]byte, 0, n)
	}
	if cap(r.b)-len(r.b) < n {
		r.b = make([]byte, 0, recordChunk)
	}
	return r.b[len(r.b):len(r.b)]
}

// take returns the record b, appended to room's slice, and consumes its
// bytes in the chunk. A b that outgrew its room (a size measured short)
// was copied away by append: it is returned as it is.
func (r *recordBuf) take(b []byte) []byte {
	free := r.b[len(r.b):cap(r.b)]
	if len(b) == 0 || len(free) < len(b) || &free[0] != &b[0] {
		return b
	}
	r.b = r.b[:len(r.b)+len(b)]
	return b[:len(b):len(b)]
}

// hold runs f once the journal holds every record up to seq, after the
// effects held before it.
func (s *state) hold(seq journal.Seq, f func()) {
	if len(s.held) == 0 && (s.m.journal == nil || seq <= s.m.journal.Durable()) {
		f()
		return
	}
	s.held = append(s.held, held{seq: seq, run: f})
}

// release runs the held effects the journal has made durable, in order.
// Effects they hold in turn join the end of the line.
func (s *state) release() {
	durable := s.m.journal.Durable()
	n := 0
	for n < len(s.held) && s.held[n].seq <= durable {
		if h := s.held[n]; h.run != nil {
			h.run()
		} else {
			h.client.Put(h.ev)
		}
		n++
	}
	s.held = slices.Delete(s.held, 0, n) // clears the freed slots: the closures and events go now
	n = 0
	for n < len(s.heldSends) && s.heldSends[n].seq <= durable {
		if sess := s.sessions[s.heldSends[n].w]; sess != nil {
			s.enqueue(sess, s.heldSends[n].msg)
		}
		n++
	}
	s.heldSends = append(s.heldSends[:0], s.heldSends[n:]...)
}

// journalHealth logs when the journal starts or stops failing.
func (s *state) journalHealth() (changed bool) {
	if s.m.journal == nil {
		return false
	}
	msg := ""
	if err := s.m.journal.Err(); err != nil {
		msg = err.Error()
	}
	if msg == s.journalErr {
		return false
	}
	if msg != "" {
		s.m.log.Error("cannot write the journal: submits, installs and clients' events wait for it", "err", msg)
	} else {
		s.m.log.Info("the journal is written again")
	}
	s.journalErr = msg
	return true
}

// openState opens the journal in dir, and the run ID kept there.
func openState(dir string, opts journal.Options) (*journal.Journal, string, error) {
	j, err := journal.Open(dir, opts)
	if err != nil {
		return nil, "", fmt.Errorf("manager: --state %s: %w", dir, err)
	}
	path := filepath.Join(dir, "run-id")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var run [8]byte
		rand.Read(run[:])
		b = []byte(hex.EncodeToString(run[:]) + "\n")
		err = journal.WriteFile(path, b)
	}
	if err != nil {
		j.Close()
		return nil, "", fmt.Errorf("manager: --state %s: run ID: %w", dir, err)
	}
	return j, strings.TrimSpace(string(b)), nil
}

// nextLife counts the starts of the manager on state directory dir (the
// file lives) and returns the base of this life's library instance IDs
// (core.SetInstanceBase): instances a worker kept from an earlier life
// never share an ID with one this life starts.
func nextLife(dir string) (uint64, error) {
	path := filepath.Join(dir, "lives")
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("manager: --state %s: %w", dir, err)
	}
	var lives uint64
	if len(b) > 0 {
		if _, err := fmt.Sscan(string(b), &lives); err != nil {
			return 0, fmt.Errorf("manager: --state %s: %s holds %q, not a count: remove it (it only numbers library instances)", dir, path, b)
		}
	}
	lives++
	if err := journal.WriteFile(path, []byte(fmt.Sprintln(lives))); err != nil {
		return 0, fmt.Errorf("manager: --state %s: %w", dir, err)
	}
	return lives << 40, nil
}

// replay applies the journal's records through the same code as live
// requests, before any worker or client is served, and takes a new epoch.
func (s *state) replay(j *journal.Journal) error {
	s.replaying = true
	defer func() { s.replaying = false }()
	epoch := uint64(0)
	var counts [9]int
	err := j.Replay(func(r journal.Record) error {
		var rec pb.JournalRecord
		if err := goproto.Unmarshal(r.Data, &rec); err != nil {
			return fmt.Errorf("journal record %d: %w: the journal is damaged; start with an empty --state directory", r.Seq, err)
		}
		switch x := rec.Rec.(type) {
		case *pb.JournalRecord_Started:
			epoch = max(epoch, x.Started)
			counts[1]++
		case *pb.JournalRecord_Submitted:
			s.submit(x.Submitted, s.m.store.statSubmit(x.Submitted))
			counts[2]++
		case *pb.JournalRecord_Installed:
			lib := x.Installed.Library
			s.install(x.Installed, s.m.store.statInputs([][]*pb.FileRef{lib.GetInputs()}, nil, x.Installed.Files))
			counts[3]++
		case *pb.JournalRecord_SessionEnded:
			e := x.SessionEnded
			s.endSession(e.Session, s.m.clients.End(e.Session, e.Why))
			counts[4]++
		case *pb.JournalRecord_Cancelled:
			for _, id := range x.Cancelled.TaskIds {
				s.step(core.CancelTask{Task: core.TaskID(id)})
			}
			counts[5]++
		case *pb.JournalRecord_Done:
			s.recovered(x.Done)
			counts[6]++
		case *pb.JournalRecord_Dispatched:
			d := x.Dispatched
			if s.tasks[core.TaskID(d.TaskId)] != nil {
				s.step(core.TaskAdrift{Task: core.TaskID(d.TaskId), Attempt: d.Attempt, Where: d.Worker,
					Until: time.Since(s.origin) + s.m.cfg.AdoptWindow})
			}
			counts[0]++
		case *pb.JournalRecord_Reconciled:
			s.applyReconcile(x.Reconciled)
			counts[8]++
		case *pb.JournalRecord_CheckpointCommitted:
			s.checkpointCommitted(x.CheckpointCommitted, 0)
		case *pb.JournalRecord_DirectCallEnded:
			s.directCallEnded(0, x.DirectCallEnded)
		case *pb.JournalRecord_DirectCalls:
			s.directCallsCounted(x.DirectCalls)
		case *pb.JournalRecord_Forgotten:
			s.nextTask += core.TaskID(x.Forgotten.Tasks) // the IDs its submit gave out
		case *pb.JournalRecord_LibraryRemoved:
			if rec := s.libs[x.LibraryRemoved.Name]; rec != nil && !rec.removed {
				s.removed(rec)
			}
			counts[7]++
		default:
			return fmt.Errorf("journal record %d: unknown kind: it was written by a newer trellis", r.Seq)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("manager: replay %s: %w", j.Path(), err)
	}
	s.m.epoch = epoch + 1
	s.m.log.Info("replayed the journal", "journal", j.Path(), "recovered", j.Recovered().String(), "epoch", s.m.epoch, "dispatches", counts[0], "adrift", s.core.Adrift(),
		"starts", counts[1], "submits", counts[2], "installs", counts[3], "sessions_ended", counts[4], "cancels", counts[5], "tasks_done", counts[6], "libraries_removed", counts[7], "reconciled", counts[8])
	return nil
}

// recovered ends a task the journal says ended, as its worker's report
// did: the outcome its client was sent, and the outputs in the store.
func (s *state) recovered(d *pb.JournalTaskDone) {
	o := d.GetOutcome()
	kind := coreKind(o.GetKind())
	ev := core.TaskRecovered{Task: core.TaskID(d.TaskId), Attempt: d.Attempt,
		Outcome: core.Outcome{Kind: kind, ExitCode: o.GetExitCode(), Message: o.GetMessage()}}
	if kind == core.Success {
		for _, f := range o.GetOutputs() {
			if fid, ok := s.fileIDs[f.Name]; ok && f.Uploaded {
				ev.Outputs = append(ev.Outputs, core.OutputInfo{File: fid, Size: f.Size, Manager: true,
					Inline: s.inlinable(f.Name, f.Size, f.Dir)})
				s.fileInfo[f.Name] = &pb.FileInfo{Name: f.Name, Size: f.Size, Digest: f.Digest, Dir: f.Dir}
			}
		}
	}
	s.m.index.recovered(d.TaskId, d.Attempt, d.GetWorker()) // for trellis logs and the task page
	s.execute(s.core.Step(ev), &pb.AttemptDone{TaskId: d.TaskId, Attempt: d.Attempt, Outcome: o})
}
