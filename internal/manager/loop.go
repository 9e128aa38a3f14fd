package manager

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"trellis/internal/core"
	"trellis/internal/journal"
	"trellis/internal/manager/clients"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/txnlog"
)

// Events the loop accepts from handlers.
type (
	evSubmit struct {
		req    *pb.SubmitRequest
		stored storedFiles // the request's inputs at the store
		reply  chan submitReply
	}
	evCancel struct {
		ids      []uint64
		session  string           // also its unfinished tasks
		workflow string           // also the unfinished tasks labelled with it
		reply    chan cancelReply // with session or workflow; may be nil
	}
	evWorkerJoin struct {
		sess  *session
		reply chan core.WorkerID
	}
	evWorkerMsg struct {
		id  core.WorkerID
		msg *pb.WorkerMessage
	}
	evWorkerGone struct {
		id     core.WorkerID
		reason string
	}
	evFetchFile struct {
		name  string
		reply chan error
	}
	evEndSession struct{ session string }
	evInstall    struct {
		req    *pb.InstallLibraryRequest
		stored storedFiles // the library's inputs at the store
		reply  chan error
	}
	evStored    struct{ name string } // a file reached the store outside a task's outputs
	evReconcile struct {
		req   *pb.ReconcileRequest
		reply chan error
	}
	evRemove struct {
		name  string
		reply chan error
	}
)

type submitReply struct {
	ids []uint64
	err error
	// again: a resubmit by known keys; finished, those of its tasks that
	// had finished (see pb.SubmitResponse).
	again    bool
	finished []uint64
}

// state is everything the loop owns.
type state struct {
	m                           *Manager
	core                        *core.Core
	tasks                       map[core.TaskID]*taskRecord // until the core forgets them
	lastPlain                   *plainSpec                  // of the plain task submitted last, for the next alike to share
	sessions                    map[core.WorkerID]*session
	fileIDs                     map[string]core.FileID // cache name -> core ID
	fileInfo                    map[string]*pb.FileInfo
	nextTask                    core.TaskID
	leases                      leaseState // direct calls (direct.go)
	nextWorker                  core.WorkerID
	succeeded                   uint64 // tasks and calls
	failed                      uint64
	callsSucceeded, callsFailed uint64
	flowSucceeded, flowFailed   uint64 // dataflow tasks (see core.Tally)
	// workflows: every workflow label a task was submitted with, for
	// trellis cancel --workflow to tell a finished workflow from an
	// unknown one (one entry per distinct label over the manager's life).
	workflows map[string]bool
	ended     Ended  // by modality and result kind, for metrics
	txnFailed bool   // the transaction log's failure was logged
	version   uint64 // steps taken: see stepped
	data      dataState
	// Large call results in the store, by the sessions that fetch them:
	// removed when the last of those sessions ends.
	results map[string]map[string]bool // file name -> sessions
	libs    map[string]*libRecord
	libByID map[core.LibID]*libRecord
	origin  time.Time // the core's clock counts from it (core.Tick.Now)
	// With a journal (journal.go): effects waiting for their records.
	held       []held
	heldSends  []heldSend  // messages to workers waiting for the journal (sendAfter)
	appended   journal.Seq // the last record appended
	recBuf     recordBuf   // the bytes of the records appended
	replaying  bool
	journalErr string // last logged

	// instLibs names the library of each instance started, for the
	// transaction log (only with one), until the worker reports its end.
	instLibs map[uint64]string
	obs      observer // notes for /metrics and the transaction log (observe.go)

	// adopted: attempts from an earlier epoch that the core adopted, by
	// the epoch of their Run: their reports of that epoch count. joining:
	// the epochs of the attempts a joining worker lists, while it joins.
	adopted, joining map[attemptKey]uint64

	// Sessions with messages queued whose sender the loop has not woken
	// yet (wakeSenders).
	unwoken []*session
	// nextRenew: when the earliest worker's file server certificate is due
	// for renewal (renewPeerCerts); zero with none.
	nextRenew time.Time
}

type attemptKey struct {
	task    core.TaskID
	attempt uint32
}

func newState(m *Manager) *state {
	c := core.New()
	c.SetPlacement(m.cfg.Placement)
	c.SetPrefetch(!m.cfg.NoPrefetch)
	c.SetAhead(m.cfg.Ahead)
	if m.txn != nil {
		c.ObservePlacements() // for task_placed in the transaction log
	}
	return &state{
		m:         m,
		core:      c,
		tasks:     make(map[core.TaskID]*taskRecord),
		workflows: make(map[string]bool),
		sessions:  make(map[core.WorkerID]*session),
		fileIDs:   make(map[string]core.FileID),
		fileInfo:  make(map[string]*pb.FileInfo),
		data:      newDataState(),
		results:   make(map[string]map[string]bool),
		libs:      make(map[string]*libRecord),
		libByID:   make(map[core.LibID]*libRecord),
		instLibs:  make(map[uint64]string),
		adopted:   make(map[attemptKey]uint64),
		obs:       newObserver(),
		origin:    time.Now(),
	}
}

// loop owns the core. It exits when ctx ends, closing every worker session.
func (m *Manager) loop(ctx context.Context) error {
	s := m.state
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	defer s.flushTxn()
	defer func() {
		for _, sess := range s.sessions {
			sess.close("manager stopping")
		}
	}()
	s.publish()
	var synced <-chan struct{} // nil without a journal: never ready
	if m.journal != nil {
		synced = m.journal.Synced()
	}
	for {
		select {
		case <-synced:
			s.stepped()
			s.release()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			// A tick that changes nothing is not a step: the snapshot (a
			// status of every worker) is not rebuilt each second for an
			// idle cluster, which would cost the manager in proportion to
			// its workers.
			if acts := s.core.Step(core.Tick{Now: time.Since(s.origin)}); len(acts) > 0 {
				s.stepped()
				s.execute(acts, nil)
			} else {
				s.logPlacements() // a tick may place a task whose input travels already
			}
			s.expireClients(time.Now()) // a step of its own when a client's session ends
			s.renewPeerCerts(time.Now())
			if s.journalHealth() {
				s.stepped()
			}
			s.flushTxn()
			s.publish() // readers that do not ask (none yet) see at most a tick's staleness
		case ev := <-m.events:
			s.stepped()
			s.handle(ev)
		case <-m.refresh:
			s.refreshed()
		}
		// Senders wake once the event is handled: what one step queued
		// for a worker leaves in one write, and no worker waits for the
		// loop's next events.
		s.wakeSenders()
	}
}

func (s *state) handle(ev any) {
	switch ev := ev.(type) {
	case evSubmit:
		seq := s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_Submitted{Submitted: ev.req}})
		s.hold(seq, func() { ev.reply <- s.submit(ev.req, ev.stored) })
	case evCancel:
		s.cancel(ev)
	case evWorkerJoin:
		s.nextWorker++
		id := s.nextWorker
		ev.sess.id = id
		s.sessions[id] = ev.sess
		s.renewBy(ev.sess.certRenew)
		ev.reply <- id // the session sends the welcome, before anything queued
		r := ev.sess.hello.GetResources()
		ev.sess.fileServer = fileServerAddr(ev.sess.hello.FileServer, ev.sess.addr)
		s.m.log.Info("worker joined", "worker", id, "name", ev.sess.hello.Name, "addr", ev.sess.addr,
			"cores", r.GetCores(), "memory_mb", r.GetMemoryMb(), "disk_mb", r.GetDiskMb(), "gpus", r.GetGpus(),
			"file_server", ev.sess.fileServer, "cached_files", len(ev.sess.hello.Cache))
		s.txn(txnlog.Record{Event: txnlog.WorkerJoined, Worker: ev.sess.hello.Name, Cores: r.GetCores(), MemoryMB: r.GetMemoryMb()})
		joined := core.WorkerJoined{Worker: id, Resources: coreResources(r), GPUs: ev.sess.hello.Gpus, Incarnation: ev.sess.hello.Incarnation,
			HoldsAhead: ev.sess.hello.HoldsAhead}
		if h := ev.sess.hello; h.RunId == s.m.runID && (len(h.Running) > 0 || len(h.Instances) > 0) {
			// Attempts of another run name tasks this one does not know:
			// the worker stops those itself when it reads the Welcome.
			s.joining = make(map[attemptKey]uint64, len(h.Running))
			for _, a := range h.Running {
				joined.Running = append(joined.Running, core.AttemptRef{Task: core.TaskID(a.TaskId), Attempt: a.Attempt, Instance: core.InstanceID(a.Instance)})
				s.joining[attemptKey{core.TaskID(a.TaskId), a.Attempt}] = a.Epoch
			}
			for _, k := range h.Instances {
				var lib core.LibID // 0, a library this manager does not know: the core stops it
				if rec := s.libs[k.Library]; rec != nil && !rec.removed {
					lib = rec.id
				}
				joined.Instances = append(joined.Instances, core.KeptInstance{Instance: core.InstanceID(k.Instance), Attempt: k.Attempt, Lib: lib})
			}
			s.m.log.Info("worker came back with attempts still running", "worker", id, "name", h.Name, "attempts", len(h.Running), "library_instances", len(h.Instances))
		}
		for _, f := range ev.sess.hello.Cache {
			if proto.CheckCacheName(f.Name) != nil {
				continue
			}
			joined.Cached = append(joined.Cached, core.CachedFile{File: s.fileID(f.Name), Size: f.Size})
			if s.fileInfo[f.Name] == nil {
				s.fileInfo[f.Name] = &pb.FileInfo{Name: f.Name, Size: f.Size, Digest: f.Digest, Dir: f.Dir}
			}
		}
		s.step(joined)
		s.joining = nil
	case evWorkerMsg:
		s.workerMessage(ev.id, ev.msg)
	case evFetchFile:
		s.fetchToStore(ev.name, ev.reply)
	case evEndSession:
		const why = "was ended by its client"
		s.record(sessionEndedRecord(ev.session, why, s.m.clients.Lookup(ev.session)))
		s.endSession(ev.session, s.m.clients.End(ev.session, why))
	case evInstall:
		seq := s.record(&pb.JournalRecord{Rec: &pb.JournalRecord_Installed{Installed: ev.req}})
		s.hold(seq, func() { ev.reply <- s.install(ev.req, ev.stored) })
	case evStored:
		s.uploaded(ev.name, nil)
	case evCheckpointed:
		s.checkpointed(ev)
	case evRemove:
		s.removeLibrary(ev.name, ev.reply)
	case evReconcile:
		s.reconcile(ev.req, ev.reply)
	case evLease:
		s.lease(ev)
	case evWorkerGone:
		if sess := s.sessions[ev.id]; sess != nil {
			delete(s.sessions, ev.id)
			sess.close(ev.reason)
			s.m.log.Info("worker left", "worker", ev.id, "name", sess.hello.Name, "reason", ev.reason)
			s.txn(txnlog.Record{Event: txnlog.WorkerLeft, Worker: sess.hello.Name, Reason: ev.reason})
			s.workerGone(ev.id)
			s.m.ckpt.cancelWorker(ev.id)
			s.step(core.WorkerLeft{Worker: ev.id, Reason: ev.reason})
		}
	default:
		panic(fmt.Sprintf("manager: unknown event %T", ev))
	}
}

func (s *state) workerMessage(id core.WorkerID, msg *pb.WorkerMessage) {
	if s.sessions[id] == nil {
		return // already gone
	}
	switch x := msg.Msg.(type) {
	case *pb.WorkerMessage_Batch:
		for _, inner := range x.Batch.Msgs {
			s.workerMessage(id, inner)
		}
	case *pb.WorkerMessage_Heartbeat:
	case *pb.WorkerMessage_Draining:
		s.m.log.Info("worker draining", "worker", id)
		s.step(core.WorkerDraining{Worker: id})
	case *pb.WorkerMessage_Done:
		d := x.Done
		key := attemptKey{core.TaskID(d.TaskId), d.Attempt}
		if epoch, adopted := s.adopted[key]; d.Epoch != 0 && d.Epoch != s.m.epoch && (!adopted || d.Epoch != epoch) {
			// Dispatched by an earlier life of the manager and not adopted:
			// whatever it says is stale (its task may run again meanwhile).
			s.m.store.discardStaged(d.TaskId, d.Attempt)
			s.m.log.Info("ignored a report of an earlier epoch", "task", d.TaskId, "attempt", d.Attempt, "epoch", d.Epoch, "worker", id)
			return
		}
		delete(s.adopted, key)
		s.storeOutputs(id, d)
		o := d.GetOutcome()
		kind := coreKind(o.GetKind())
		t := core.TaskID(d.TaskId)
		ev := core.TaskFinished{Task: t, Attempt: d.Attempt, Worker: id,
			Outcome: core.Outcome{Kind: kind, ExitCode: o.GetExitCode(), Message: o.GetMessage()}}
		if kind == core.Success {
			for _, f := range o.GetOutputs() {
				if fid, ok := s.fileIDs[f.Name]; ok {
					ev.Outputs = append(ev.Outputs, core.OutputInfo{File: fid, Size: f.Size, Kept: f.Kept, Manager: f.Uploaded,
						Inline: f.Uploaded && s.inlinable(f.Name, f.Size, f.Dir)})
				}
			}
		}
		s.execute(s.core.Step(ev), d)
	case *pb.WorkerMessage_Fetched:
		s.fetchDone(x.Fetched)
	case *pb.WorkerMessage_Dropped:
		ev := core.FilesDropped{Worker: id}
		for _, name := range x.Dropped.Names {
			if fid, ok := s.fileIDs[name]; ok {
				ev.Files = append(ev.Files, fid)
			}
		}
		s.step(ev)
	case *pb.WorkerMessage_LibraryStarted:
		st := x.LibraryStarted
		s.instanceTxn(txnlog.InstanceReady, id, st.Instance, st.Attempt, "", "")
		s.instanceReady(st.Instance)
		s.step(core.InstanceReady{Instance: core.InstanceID(st.Instance), Attempt: st.Attempt, Worker: id})
	case *pb.WorkerMessage_LibraryEnded:
		e := x.LibraryEnded
		s.instanceTxn(txnlog.InstanceEnded, id, e.Instance, e.Attempt, proto.ResultLabel(e.Kind), e.Message)
		delete(s.instLibs, e.Instance)
		s.instanceGone(e.Instance)
		s.step(libraryEnded(id, e))
	case *pb.WorkerMessage_DirectCallEnded:
		s.directCallEnded(id, x.DirectCallEnded)
	case *pb.WorkerMessage_Returned:
		r := x.Returned
		s.step(core.TaskReturned{Task: core.TaskID(r.TaskId), Attempt: r.Attempt, Worker: id, CacheFull: r.CacheFull, Need: r.Need})
	}
}

func (s *state) step(ev core.Event) { s.execute(s.core.Step(ev), nil) }

// started records that attempt of task starts on sess's worker: when it is
// dispatched, or, held ahead there, when the core sees it start
// (core.Started). Its start time, the transaction log's TaskRunning and
// the client's RUNNING event (not for a rerun to recreate a lost file, nor
// a call: short, not worth a message) say so.
func (s *state) started(rec *taskRecord, task core.TaskID, attempt uint32, sess *session, rerun bool) {
	s.m.index.started(uint64(task), attempt, sess.hello.Name, time.Now())
	s.txn(txnlog.Record{Event: txnlog.TaskRunning, Task: uint64(task), Attempt: attempt, Worker: sess.hello.Name,
		Cores: rec.cores(), Modality: Modalities[modalityOf(rec)]})
	if !rerun && rec.call() == nil {
		s.notify(rec, &pb.TaskEvent{TaskId: uint64(task), State: pb.TaskState_TASK_STATE_RUNNING,
			Attempt: attempt, Worker: sess.hello.Name})
	}
}

// execute carries out the core's actions in order. done is the worker's
// report that caused them, if any: its outputs are committed when the core
// accepts it and discarded otherwise.
func (s *state) execute(acts []core.Action, done *pb.AttemptDone) {
	s.logPlacements()
	for _, a := range acts {
		switch a := a.(type) {
		case core.Dispatch:
			if a.Lib != 0 {
				s.startLibrary(a)
				continue
			}
			rec := s.tasks[a.Task]
			rerun := rec.done // running again to recreate a lost file
			rec.worker = a.Worker
			if !rec.dataflow && rec.call() == nil && s.core.Dataflow(a.Task) {
				rec.dataflow = true
				s.m.index.dataflow(uint64(a.Task))
			}
			mod := modalityOf(rec)
			s.dispatched(mod)
			sess := s.sessions[a.Worker]
			if !a.Ahead { // one held ahead starts later (core.Started)
				s.started(rec, a.Task, a.Attempt, sess, rerun)
			}
			var intent journal.Seq
			// The attempt's number and worker, for a restarted manager to
			// number the next attempt after it and to adopt it (see
			// TaskAdrift), calls too. An at-most-once task's Run waits for
			// it (its intent); others go at once: a crash before it is
			// durable only makes the task run again.
			seq := s.recordDispatched(uint64(a.Task), a.Attempt, sess.hello.Incarnation, s.m.epoch)
			if rec.effects() == pb.Effects_EFFECTS_AT_MOST_ONCE {
				intent = seq
			}
			s.sendAfter(intent, a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Run{Run: &pb.Run{
				TaskId: uint64(a.Task), Attempt: a.Attempt, Spec: s.runSpec(rec, a), Gpus: a.GPUs, Instance: uint64(a.Instance),
				IdempotencyKey: idempotencyKey(rec, a.Task), Epoch: s.m.epoch, Ahead: a.Ahead}}})
		case core.Started:
			if rec, sess := s.tasks[a.Task], s.sessions[a.Worker]; rec != nil && sess != nil {
				s.started(rec, a.Task, a.Attempt, sess, rec.done)
			}
		case core.Checkpoint:
			s.checkpoint(a)
		case core.Barred:
			s.barred(a)
		case core.Adopted:
			s.adoptedAttempt(a)
		case core.InstanceAdopted:
			s.adoptedInstance(a)
		case core.Unknown:
			s.unknownTask(a)
		case core.Kill:
			s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Kill{Kill: &pb.Kill{TaskId: uint64(a.Task), Attempt: a.Attempt}}})
		case core.Revoke:
			s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_Revoke{Revoke: &pb.Revoke{TaskId: uint64(a.Task), Attempt: a.Attempt}}})
		case core.Requeued:
			s.attemptEnded(a.Task, a.Attempt, protoKind(a.Reason.Kind))
			s.m.index.requeued(uint64(a.Task), a.Attempt, fmt.Sprintf("%s: %s", a.Reason.Kind, a.Reason.Message), time.Now())
			s.txn(txnlog.Record{Event: txnlog.TaskRequeued, Task: uint64(a.Task), Attempt: a.Attempt, Reason: fmt.Sprintf("%s: %s", a.Reason.Kind, a.Reason.Message)})
			if rec := s.tasks[a.Task]; rec != nil {
				note := fmt.Sprintf("attempt %d: %s: %s; queued again", a.Attempt, a.Reason.Kind, a.Reason.Message)
				if a.Attempt == 0 {
					note = fmt.Sprintf("before it ran: %s: %s; queued again", a.Reason.Kind, a.Reason.Message)
				}
				s.notify(rec, &pb.TaskEvent{TaskId: uint64(a.Task), State: pb.TaskState_TASK_STATE_WAITING,
					Attempt: a.Attempt, Note: note})
			}
		case core.Done:
			outcome := &pb.Outcome{Kind: protoKind(a.Outcome.Kind), ExitCode: a.Outcome.ExitCode, Message: a.Outcome.Message}
			if done != nil && uint64(a.Task) == done.TaskId && a.Attempt == done.Attempt {
				// The report that caused this Done: keep its output tails.
				o := done.GetOutcome()
				outcome.Stdout, outcome.Stderr = o.GetStdout(), o.GetStderr()
				outcome.StdoutTruncated, outcome.StderrTruncated = o.GetStdoutTruncated(), o.GetStderrTruncated()
				outcome.RunMs, outcome.PeakMemoryMb = o.GetRunMs(), o.GetPeakMemoryMb()
				outcome.Result, outcome.Traceback = o.GetResult(), o.GetTraceback()
				if a.Outcome.Kind == core.Success { // committed before the core saw it
					outcome.Outputs, outcome.ResultFile = o.GetOutputs(), o.GetResultFile()
				}
			}
			s.finishTask(a, outcome)
		case core.StaleResult:
			if a.Instance != 0 {
				s.m.log.Info("ignored a stale library report", "instance", a.Instance, "attempt", a.Attempt, "worker", a.Worker)
			} else {
				s.m.log.Info("ignored a stale report", "task", a.Task, "attempt", a.Attempt, "worker", a.Worker)
			}
		case core.Fetch:
			s.transferTxn(a)
			if s.sessions[a.Worker] != nil {
				s.sendTo(a.Worker, s.fetchMessage(a))
			}
		case core.Rerun:
			s.m.log.Info("recreating a lost file: running its producer again", "task", a.Task, "file", s.data.names[a.File])
		case core.Recreated:
			s.m.log.Info("recreated lost files", "task", a.Task, "attempt", a.Attempt, "worker", a.Worker)
		case core.Stop:
			s.m.log.Info("stopping a library instance: idle while tasks wait, or its library removed", "instance", a.Instance, "worker", a.Worker)
			s.sendTo(a.Worker, &pb.ManagerMessage{Msg: &pb.ManagerMessage_StopLibrary{StopLibrary: &pb.StopLibrary{Instance: uint64(a.Instance)}}})
		case core.LibraryBroken:
			s.m.log.Warn("library broken", "lib", a.Lib, "why", a.Why)
		case core.FileLost:
			s.m.log.Warn("file lost for good", "file", s.data.names[a.File], "why", a.Why)
		case core.Forget:
			delete(s.tasks, a.Task)
		case core.Unlink:
			s.unlink(a)
		case core.Release:
			s.releaseFiles(a)
		case core.LeaseGranted, core.LeaseEnded:
			s.leaseAction(a)
		case core.Unplaceable:
			s.tellUnplaceable(a)
		}
	}
}

func (s *state) finishTask(a core.Done, outcome *pb.Outcome) {
	s.attemptEnded(a.Task, a.Attempt, outcome.Kind)
	rec := s.tasks[a.Task]
	if rec != nil && a.Dataflow {
		rec.dataflow = true
	}
	call := rec != nil && rec.call() != nil
	mod := modalityOf(rec)
	if rec == nil && a.Dataflow {
		mod = 2
	}
	s.ended.count(mod, outcome.Kind)
	ran := s.m.index.done(uint64(a.Task), a.Attempt, outcome, time.Now())
	if outcome.Kind == pb.ResultKind_RESULT_KIND_SUCCESS {
		s.succeeded++
		if call {
			s.callsSucceeded++
			s.callDone(ran)
		} else if a.Dataflow {
			s.flowSucceeded++
		}
	} else {
		s.failed++
		if call {
			s.callsFailed++
		} else if a.Dataflow {
			s.flowFailed++
		}
	}
	var name string
	if sess := s.sessions[a.Worker]; sess != nil {
		name = sess.hello.Name
	}
	s.recordDone(uint64(a.Task), a.Attempt, outcome, name)
	s.txn(txnlog.Record{Event: txnlog.TaskDone, Task: uint64(a.Task), Attempt: a.Attempt, Worker: name,
		Result: proto.ResultLabel(outcome.Kind), Reason: outcome.Message, RunMs: outcome.RunMs})
	if rec != nil {
		rec.done = true
		if f := outcome.ResultFile; f != nil {
			if s.results[f.Name] == nil {
				s.results[f.Name] = make(map[string]bool)
			}
			s.results[f.Name][rec.session()] = true
		}
		if c := rec.call(); c != nil {
			if lib := s.libs[c.Library]; lib != nil {
				lib.callsDone++
			}
		}
		done := &pb.TaskEvent{TaskId: uint64(a.Task), State: pb.TaskState_TASK_STATE_DONE,
			Attempt: a.Attempt, Worker: name, Outcome: outcome}
		s.notify(rec, done)
		// Kept if its session is resumable, for a client that takes it over.
		rec.client.Finished(done.Key, done)
		if !a.Retained { // the core is done with it (else a Forget comes later)
			delete(s.tasks, a.Task)
		}
	}
}

// storeOutputs commits what a successful report leaves for the store, if
// the core will accept the success, before the core sees the report; else
// it discards it. A commit that fails makes the report a failure: the core
// never accepts a success whose outputs the store lacks.
func (s *state) storeOutputs(w core.WorkerID, d *pb.AttemptDone) {
	o := d.GetOutcome()
	if o.GetKind() != pb.ResultKind_RESULT_KIND_SUCCESS || !s.core.Accepts(core.TaskID(d.TaskId), d.Attempt, w) {
		s.m.store.discardStaged(d.TaskId, d.Attempt)
		return
	}
	if err := s.commitOutputs(d); err != nil {
		// Checked on the stream's reader: only the store's disk failing
		// since gets here.
		s.m.log.Error("store outputs", "task", d.TaskId, "attempt", d.Attempt, "err", err)
		o.Kind, o.Message = pb.ResultKind_RESULT_KIND_FAILED, "the manager could not store the outputs: "+err.Error()
		s.m.store.discardStaged(d.TaskId, d.Attempt)
	}
}

// commitOutputs moves the outputs of an attempt the core will accept,
// which store.checkReport checked on the stream's reader, into the store:
// staged uploads are renamed, inline ones written.
func (s *state) commitOutputs(d *pb.AttemptDone) error {
	for _, f := range d.GetOutcome().GetOutputs() {
		var err error
		switch {
		case f.Content != nil:
			err = s.m.store.writeInline(f)
			if err == nil && s.syncCheckpoint(d.TaskId, f.Name) {
				_, err = writeDurable(filepath.Join(s.m.cfg.CheckpointDir, f.Name), bytes.NewReader(f.Content))
			}
		case f.Uploaded && s.syncCheckpoint(d.TaskId, f.Name):
			err = s.m.store.commitTo(f, d.TaskId, d.Attempt, s.m.cfg.CheckpointDir)
			s.data.toManager += f.Size
		case f.Uploaded:
			err = s.m.store.commit(f, d.TaskId, d.Attempt)
			s.data.toManager += f.Size
		}
		if err != nil {
			return err
		}
		s.fileInfo[f.Name] = &pb.FileInfo{Name: f.Name, Size: f.Size, Digest: f.Digest, Dir: f.Dir}
	}
	if f := d.GetOutcome().GetResultFile(); f != nil { // a call's large result, for the client to GET
		if err := s.m.store.commit(f, d.TaskId, d.Attempt); err != nil {
			return err
		}
		s.data.toManager += f.Size
	}
	return nil
}

func (s *state) fileID(name string) core.FileID {
	id, ok := s.fileIDs[name]
	if !ok {
		id = core.FileID(len(s.fileIDs) + 1)
		s.fileIDs[name] = id
		s.data.names[id] = name
	}
	return id
}

// submit checks a request against what the manager knows, keeps a record
// of each task and hands them to the core. stored says which of the
// request's inputs are at the store. A request with an output that another
// task produces is refused as a whole.
func (s *state) submit(req *pb.SubmitRequest, stored storedFiles) submitReply {
	client, err := s.m.clients.Get(req.Session)
	if err != nil {
		return submitReply{err: err} // an *clients.Ended
	}
	if req.Resumable {
		client.SetResumable()
	}
	if r, err := s.resubmitted(client, req.Tasks); r.Again || err != nil {
		return submitReply{ids: r.IDs, err: err, again: r.Again, finished: r.Finished} // the same tasks
	}
	ids, err := s.submitNew(client, req, stored)
	return submitReply{ids: ids, err: err}
}

// submitNew submits the request's tasks, whose keys are new in the
// session.
func (s *state) submitNew(client *clients.Session, req *pb.SubmitRequest, stored storedFiles) ([]uint64, error) {
	for _, t := range req.Tasks {
		if err := checkInline(fmt.Sprintf("task %q", t.Name), t.Inputs); err != nil {
			return nil, err
		}
		if t.Call != nil && s.libs[t.Call.Library] == nil {
			return nil, fmt.Errorf("task %q: library %q is not installed", t.Name, t.Call.Library)
		}
		if err := s.m.checkKeep(t); err != nil {
			return nil, err
		}
	}
	batchOutputs := make(map[string]bool)
	for _, t := range req.Tasks {
		for _, f := range t.Outputs {
			if batchOutputs[f.Name] || s.producedFile(f.Name) {
				return nil, fmt.Errorf("task %q: output file %s is already produced by another task", t.Name, f.Name)
			}
			batchOutputs[f.Name] = true
		}
	}
	s.declare(req.Session, req.Files, stored)
	var uploads []core.FileSpec // inputs at the manager's store, for the core to stage
	seen := make(map[string]bool)
	tasks := make([]core.Task, len(req.Tasks))
	ids := make([]uint64, len(req.Tasks))
	for i := range req.Tasks {
		ids[i] = uint64(s.nextTask) + uint64(i) + 1
	}
	for i, msg := range req.Tasks {
		s.nextTask++
		id := s.nextTask
		var rec *taskRecord
		spec := msg // a plain task's spec: the request's own, never written into
		if isPlain(msg) {
			rec = plainRecord(msg, client, s.lastPlain)
			s.lastPlain = rec.plain
		} else {
			spec = s.taskSpec(msg)
			rec = &taskRecord{spec: spec, client: client}
		}
		s.tasks[id] = rec
		if w := spec.Workflow; w != "" && !s.workflows[w] {
			s.workflows[w] = true
		}
		s.m.index.submitted(uint64(id), spec, req.Session, time.Now())
		s.txn(txnlog.Record{Event: txnlog.TaskSubmitted, Task: uint64(id), Name: spec.Name, Modality: modality(spec), Library: spec.GetCall().GetLibrary()})
		client.Submitted(uint64(id))
		if spec.Key != "" {
			client.Keep(spec.Key, uint64(id))
		}
		ct := core.Task{ID: id, Resources: coreResources(spec.Resources), Priority: spec.Priority,
			Retries: spec.Retries, RetryOnError: spec.RetryOnError, After: afterIDs(spec.After, ids),
			UnplaceableTimeout: s.unplaceableTimeout(spec.UnplaceableTimeoutMs), AtMostOnce: spec.Effects == pb.Effects_EFFECTS_AT_MOST_ONCE,
			Effectful: spec.Effects != pb.Effects_EFFECTS_NONE, Nondeterministic: !spec.Deterministic,
			Keep: coreKeep(spec.Keep), Replicas: int32(spec.Replicas)}
		if c := spec.Call; c != nil {
			lib := s.libs[c.Library]                                            // checked above
			ct.Role, ct.Lib, ct.Resources = core.Call, lib.id, core.Resources{} // it runs in a slot its instance holds
		}
		for _, in := range spec.Inputs {
			fid := s.fileID(in.Name)
			if in.Content != nil {
				// Travels inside the task; checked in checkInline.
			} else if !batchOutputs[in.Name] && !seen[in.Name] && !s.declared(in.Name) && !s.producedFile(in.Name) {
				seen[in.Name] = true
				if spec, ok := s.atManager(in.Name, stored); ok {
					uploads = append(uploads, spec)
				} else {
					s.step(core.FileMissing{File: fid, Why: fmt.Sprintf("input %q (file %s) is not at the manager", in.Path, in.Name)})
				}
			}
			ct.Inputs = append(ct.Inputs, fid)
		}
		for _, out := range spec.Outputs {
			ct.Outputs = append(ct.Outputs, s.fileID(out.Name))
		}
		tasks[i] = ct
	}
	if len(uploads) > 0 {
		s.step(core.FilesDeclared{Files: uploads})
	}
	s.step(core.TasksSubmitted{Tasks: tasks})
	return ids, nil
}

// resubmitted decides whether tasks were submitted before in the session,
// by their keys (clients.Session.Resubmit): a submit is all new or all
// known. The results of known tasks that finished, which a resumable
// session kept, go to the session again (behind the records appended so
// far, as every event), for a new client that took the session over.
func (s *state) resubmitted(client *clients.Session, tasks []*pb.TaskSpec) (clients.Resubmission, error) {
	keys := make([]string, len(tasks))
	for i, t := range tasks {
		keys[i] = t.Key
	}
	r, err := client.Resubmit(keys, func(id uint64) bool {
		rec := s.tasks[core.TaskID(id)]
		return rec == nil || rec.done // a record goes once its task is done
	})
	if err != nil || len(r.Resend) == 0 || s.replaying { // a replay sends every end again anyway
		return r, err
	}
	resend := r.Resend
	s.m.log.Info("a client took over a session: the results of its finished tasks are sent again", "session", client.Name(), "tasks", len(r.IDs), "finished", len(resend))
	s.hold(s.appended, func() {
		for _, ev := range resend {
			client.Put(ev)
		}
	})
	return r, nil
}

// notify sends an event of rec's task to its client, once the records
// appended before it are durable.
func (s *state) notify(rec *taskRecord, ev *pb.TaskEvent) {
	ev.Key = rec.key()
	s.put(rec.client, ev)
}

// put gives ev to client once what the loop journaled is durable.
func (s *state) put(client *clients.Session, ev *pb.TaskEvent) {
	// Held as an entry, not a closure: every task sends these.
	if s.m.journal == nil || len(s.held) == 0 && s.appended <= s.m.journal.Durable() {
		client.Put(ev)
		return
	}
	s.held = append(s.held, held{seq: s.appended, client: client, ev: ev})
}

// unplaceableTimeout is a task's limit on waiting while no connected
// worker could run it: its own (ms > 0), none (ms < 0), or the manager's.
func (s *state) unplaceableTimeout(ms int64) time.Duration {
	switch {
	case ms > math.MaxInt64/int64(time.Millisecond):
		return 0 // longer than time.Duration holds: for ever
	case ms > 0:
		return time.Duration(ms) * time.Millisecond
	case ms < 0:
		return 0
	}
	return s.m.cfg.UnplaceableTimeout
}

func coreResources(r *pb.Resources) core.Resources {
	return core.Resources{MilliCores: proto.MilliCores(r), MemoryMB: r.GetMemoryMb(), DiskMB: r.GetDiskMb(), GPUs: r.GetGpus()}
}

func protoResources(r core.Resources) *pb.Resources {
	return &pb.Resources{Cores: float64(r.MilliCores) / 1000, MemoryMb: r.MemoryMB, DiskMb: r.DiskMB, Gpus: r.GPUs}
}
