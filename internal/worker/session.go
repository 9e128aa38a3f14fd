package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

type attemptKey struct {
	task    uint64
	attempt uint32
}

// running is an attempt in progress, owned by the session loop.
type running struct {
	cancel context.CancelFunc
	// handBack: killed to be returned, not reported as done. Atomic: a kept
	// attempt's new session sets it while the broken session's waitKept
	// reads it for the report.
	handBack atomic.Bool
	call     bool   // a function call
	instance uint64 // a call's library instance
	epoch    uint64 // of its Run: its report carries it back
	kept     bool   // its session broke: it belongs to Worker.kept (kept.go)
	need     need   // what it takes of the worker's resources (ahead.go)
	// startedEarly counts the runs held ahead that started on its cores
	// once its command exited, before its end (evAttemptFreed).
	startedEarly int
}

// event is what a session's goroutines tell its loop, in order on one
// channel. The loop alone acts on them.
type event interface{ isEvent() }

// evMessage: a message from the manager.
type evMessage struct{ msg *pb.ManagerMessage }

// evAttemptEnded: an attempt (or call) ended with outcome; nil for a call
// whose library died (the library's end settles it).
type evAttemptEnded struct {
	key     attemptKey
	outcome *pb.Outcome
	// libDead: a call whose library died meanwhile (it timed out and was
	// killed for not stopping). Its end goes with the library's, in one
	// message, so that no other call is sent to the dead instance between.
	libDead bool
	// returned: a call that never reached its library: it is handed back.
	returned bool
	back     *pb.AttemptReturned // an attempt handed back for a full cache
}

// evAttemptFreed: the command of an attempt has exited, and its outputs
// are being taken: the cores and memory it held are free for a run held
// ahead (ahead.go). Its disk is not: its outputs are still there.
type evAttemptFreed struct{ key attemptKey }

// evFetched: a fetch ended.
type evFetched struct{ done *pb.FetchDone }

// evLibraryStarted: a library instance started (msg says so to the manager).
type evLibraryStarted struct{ msg *pb.WorkerMessage }

// evLibraryEnded: a library instance ended, after the ends of its calls.
type evLibraryEnded struct{ msg *pb.WorkerMessage }

func (evMessage) isEvent()        {}
func (evAttemptEnded) isEvent()   {}
func (evAttemptFreed) isEvent()   {}
func (evFetched) isEvent()        {}
func (evLibraryStarted) isEvent() {}
func (evLibraryEnded) isEvent()   {}

// session is one connection to the manager, as a state machine. Its loop
// (run) owns the state below and changes it only in answer to events: the
// manager's messages, the ends of attempts, fetches and library instances,
// and its timers (heartbeat, held reports, drain). The I/O runs in
// goroutines that feed events back and never touch that state: one reads
// the stream, one writes it (a connect stream allows one sender), and each
// attempt, fetch, upload and library instance has its own.
type session struct {
	w          *Worker
	runID      string // the manager's, from the Welcome
	stream     Stream
	cancel     context.CancelFunc       // ends the connection, and so every goroutine below
	stop       <-chan struct{}          // closed when the connection ends
	events     chan event               // from the goroutines to the loop
	broken     chan error               // how the stream broke: its reader's last word
	out        chan []*pb.WorkerMessage // from the loop to the sender, a flush at a time
	flushc     chan struct{}            // closed: the sender sends what is queued, then stops
	senderDone chan struct{}            // closed when the sender has stopped
	wg         sync.WaitGroup           // every goroutine the session started
	libsClosed bool                     // it takes no more library instances (guarded by libraries.mu)

	// Owned by the loop.
	attempts   map[attemptKey]*running
	calls      int // attempts that are calls
	held       heldReports
	draining   bool
	drainc     <-chan struct{} // the worker's drain signal; nil once seen
	drainTimer <-chan time.Time
	idleSince  time.Time     // when it last ran nothing; zero while it runs something (IdleExit)
	lastPost   time.Time     // when it last queued a message for the manager
	libReports []event       // what kept library instances said while no session had them
	direct     directReports // direct calls' ends (direct.go)
	ahead      []*pb.Run     // runs sent ahead, held until they fit, in order (ahead.go)
	// prepared holds the sandboxes made for runs held ahead, their inputs
	// in place, while they wait (ahead.go: prepare).
	prepared map[attemptKey]string
	// holding is len(ahead) (setAhead keeps both), for the attempts' goroutines: an attempt
	// whose command exited tells the loop at once only where runs are
	// held (evAttemptFreed).
	holding atomic.Int32
	// pending: messages posted, not yet handed to the sender; they go
	// once the loop has handled the event (flush), as one write.
	pending []*pb.WorkerMessage
}

// session holds one connection to the manager until it breaks, the worker
// is drained, or ctx ends. connected reports whether the manager welcomed it.
func (w *Worker) session(ctx context.Context) (connected bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.cache.ReleaseAll() // what an earlier connection held: the manager learns it anew (Hello)
	stream := w.openStream(sctx)
	if err := stream.Send(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Hello{Hello: w.hello()}}); err != nil {
		return false, refusal(err, stream)
	}
	// A manager that takes the hello but never answers it (its connection
	// lost in a burst, its loop stuck) is given up on, and tried again.
	giveUp := time.AfterFunc(w.cfg.WelcomeTimeout, func() {
		cancel()
		stream.CloseSend()
	})
	first, err := stream.Receive()
	if !giveUp.Stop() {
		return false, fmt.Errorf("no welcome from the manager within %s of the hello", w.cfg.WelcomeTimeout)
	}
	if err != nil {
		return false, refusal(err, nil)
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return false, errors.New("manager did not welcome the worker")
	}
	w.log.Info("connected", "manager", w.cfg.Manager, "worker_id", welcome.WorkerId)
	w.takePeerTLS(welcome)
	s := &session{w: w, runID: welcome.RunId, stream: stream, cancel: cancel, stop: sctx.Done(),
		events: make(chan event, 128), broken: make(chan error, 1), out: make(chan []*pb.WorkerMessage, 64),
		flushc: make(chan struct{}), senderDone: make(chan struct{}),
		attempts: make(map[attemptKey]*running), drainc: w.drainc, direct: directReports{signal: make(chan struct{}, 1)}}
	w.leases.attach(s, welcome.LeaseKey, welcome.WorkerId)
	defer w.leases.detach(s)
	w.kept.attach(welcome.RunId, s.attempts)
	s.libReports = w.libs.attach(s, welcome.RunId)
	return true, s.run(ctx, sctx, time.Duration(max(welcome.HeartbeatMs, 100))*time.Millisecond)
}

// run is the session's loop. It returns when the stream breaks (an error
// unless the worker was draining), when the worker is drained (nil), or
// when ctx ends (its error), after every goroutine of the session exited.
func (s *session) run(ctx, sctx context.Context, heartbeat time.Duration) error {
	s.wg.Add(2)
	go s.receive() // exits when the stream breaks or sctx ends
	go s.send()    // exits when sctx ends, a send fails, or flushc is closed and out is empty
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for _, ev := range s.libReports {
		s.ended(ev)
	}
	s.libReports = nil
	for _, msg := range s.w.leases.takeKept(s.runID) {
		s.post(msg) // direct calls that ended while no session was up
	}
	var idleTick <-chan time.Time
	if exit := s.w.cfg.IdleExit; exit > 0 {
		t := time.NewTicker(min(exit/4, time.Second))
		defer t.Stop()
		idleTick = t.C
	}
	for {
		if s.draining && len(s.attempts) == 0 {
			return s.finish(nil)
		}
		// What the loop posted for one event goes in one write (the
		// reports of a batch of simulated runs); waiting for more events
		// would hold reports from a manager with tasks to send.
		s.flush()
		select {
		case ev := <-s.events:
			switch ev := ev.(type) {
			case evMessage:
				s.handle(ctx, sctx, ev.msg)
			default:
				s.ended(ev)
				if len(s.ahead) > 0 {
					n := s.startHeld(ctx, sctx) // resources freed: the next starts now, not when the manager says
					if f, ok := ev.(evAttemptFreed); ok && s.attempts[f.key] != nil {
						s.attempts[f.key].startedEarly += n
					}
				}
			}
		case <-s.direct.signal:
			for _, msg := range s.direct.take(false) {
				s.post(msg)
			}
		case <-s.w.kept.signal:
			s.keptEnded()
			if len(s.ahead) > 0 {
				s.startHeld(ctx, sctx)
			}
		case err := <-s.broken:
			return s.lost(err)
		case <-s.held.C:
			s.held.flush(s.post)
		case now := <-tick.C:
			// Any message says the worker lives: a heartbeat goes only
			// on a link silent for most of an interval.
			if now.Sub(s.lastPost) >= heartbeat*3/4 {
				s.post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
			}
		case now := <-idleTick:
			s.checkIdle(now)
		case <-s.drainc:
			s.drain()
		case <-s.drainTimer:
			s.w.log.Info("drain timeout: handing back", "running", len(s.attempts))
			s.handBackAll()
		case <-ctx.Done():
			s.handBackAll()
			return s.finish(ctx.Err())
		}
	}
}

// receive hands the manager's messages to the loop, then how the stream broke.
func (s *session) receive() {
	defer s.wg.Done()
	for {
		msg, err := s.stream.Receive()
		if err != nil {
			s.broken <- err // never blocks: the only send
			return
		}
		s.emit(evMessage{msg})
	}
}

// send writes what the loop flushes, with what else is queued by then,
// in batches.
func (s *session) send() {
	defer s.wg.Done()
	defer close(s.senderDone)
	for {
		select {
		case msgs := <-s.out:
			if err := s.sendQueued(msgs); err != nil {
				s.cancel()
				return
			}
		case <-s.flushc:
			for {
				select {
				case msgs := <-s.out:
					if s.sendQueued(msgs) != nil {
						return
					}
				default:
					return
				}
			}
		case <-s.stop:
			return
		}
	}
}

// sendQueued sends msgs and every flush queued behind them right now, in
// batches.
func (s *session) sendQueued(msgs []*pb.WorkerMessage) error {
	for more := true; more; {
		select {
		case next := <-s.out:
			msgs = append(msgs, next...)
		default:
			more = false
		}
	}
	return proto.SendBatched(msgs, wrapWorkerBatch, s.stream.Send)
}

// emit hands ev to the loop, unless the connection has ended.
func (s *session) emit(ev event) {
	select {
	case s.events <- ev:
	case <-s.stop:
	}
}

// post queues msg for the manager; the loop flushes it once it has
// handled the event.
func (s *session) post(msg *pb.WorkerMessage) {
	s.lastPost = time.Now()
	if b := msg.GetBatch(); b != nil {
		s.pending = append(s.pending, b.Msgs...) // a batch never nests
		return
	}
	s.pending = append(s.pending, msg)
}

// flush hands what was posted to the sender, unless the connection has
// ended.
func (s *session) flush() {
	if len(s.pending) == 0 {
		return
	}
	select {
	case s.out <- s.pending:
	case <-s.stop:
	}
	s.pending = nil
}

// ended reports what an attempt, a fetch or a library instance did.
func (s *session) ended(ev event) {
	switch ev := ev.(type) {
	case evAttemptFreed:
		if r := s.attempts[ev.key]; r != nil {
			r.need = need{diskMB: r.need.diskMB}
		}
	case evAttemptEnded:
		s.reportEvicted() // first: what its command changed is not here for the next run (checkInputs)
		s.attemptEnded(ev)
	case evLibraryEnded:
		s.reportEvicted()
		s.held.add(ev.msg, heldRef{}) // after what is held: the ends of its calls
		s.held.flush(s.post)
	case evLibraryStarted:
		s.post(ev.msg)
	case evFetched:
		// Evictions first: a claim that found its file evicted (KIND_CACHE)
		// fails after the manager knows the file is gone.
		s.reportEvicted()
		if !ev.done.Ok {
			s.w.cache.Release(ev.done.Name) // the manager fetches it again, with a hold, if it still wants it
		}
		s.post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Fetched{Fetched: ev.done}})
	}
}

// handle acts on one message from the manager.
// Attempts, calls and library instances live in ctx (the worker's), so
// that they can outlive a broken connection (kept.go, libraries); the rest
// lives in sctx.
func (s *session) handle(ctx, sctx context.Context, msg *pb.ManagerMessage) {
	switch x := msg.Msg.(type) {
	case *pb.ManagerMessage_Batch:
		for _, inner := range x.Batch.Msgs {
			s.handle(ctx, sctx, inner)
		}
	case *pb.ManagerMessage_Run:
		s.intake(ctx, sctx, x.Run)
	case *pb.ManagerMessage_Kill:
		key := attemptKey{x.Kill.TaskId, x.Kill.Attempt}
		if r := s.attempts[key]; r != nil {
			r.cancel()
		} else if len(s.ahead) > 0 && s.killHeld(key) {
			s.startHeld(ctx, sctx) // the next may fit now
		}
	case *pb.ManagerMessage_Revoke:
		if s.handBack(attemptKey{x.Revoke.TaskId, x.Revoke.Attempt}) {
			s.startHeld(ctx, sctx) // the next may fit now, as the manager counts
		}
	case *pb.ManagerMessage_Fetch:
		// Held from now until a Release, so that the tasks the manager
		// places here find it (present already, or when it lands).
		s.w.cache.Hold(x.Fetch.Name)
		s.wg.Add(1)
		go func() { // exits when the fetch ends; sctx bounds it
			defer s.wg.Done()
			s.emit(evFetched{s.w.fetch(sctx, x.Fetch)})
		}()
	case *pb.ManagerMessage_LeaseGranted:
		s.w.leases.grant(x.LeaseGranted)
	case *pb.ManagerMessage_LeaseEnded:
		s.w.leases.end(x.LeaseEnded.Lease)
	case *pb.ManagerMessage_Ping:
		s.post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}}) // flushed once the event is handled
	case *pb.ManagerMessage_PeerCertificate:
		s.w.renewPeerCert(x.PeerCertificate)
	case *pb.ManagerMessage_Release:
		for _, n := range x.Release.Names {
			s.w.cache.Release(n)
		}
	case *pb.ManagerMessage_Unlink:
		if gone := s.w.unlink(x.Unlink.Names); len(gone) > 0 {
			s.post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Dropped{Dropped: &pb.Dropped{Names: gone}}})
		}
	case *pb.ManagerMessage_StartLibrary:
		// In the worker's ctx, so that it can outlive a broken
		// connection (libraries.detach).
		lctx, lcancel := context.WithCancel(ctx)
		s.w.libs.wg.Add(1)
		go func() { // exits when the instance ends or is stopped (lcancel, or ctx ends)
			defer s.w.libs.wg.Done()
			defer lcancel()
			s.w.runLibrary(lctx, lcancel, x.StartLibrary, s)
		}()
	case *pb.ManagerMessage_StopLibrary:
		s.wg.Add(1)
		go func() { // exits within stopGrace; runLibrary reports the end
			defer s.wg.Done()
			s.w.stopLibrary(x.StopLibrary.Instance)
		}()
	case *pb.ManagerMessage_Upload:
		s.wg.Add(1)
		go func() { // exits when the upload ends; sctx bounds it
			defer s.wg.Done()
			if err := s.w.uploadCached(sctx, x.Upload.Name); err != nil {
				s.w.log.Warn("upload for the manager", "file", x.Upload.Name, "err", err)
			}
		}()
	}
}

// startAttempt runs an attempt (or call) in a goroutine of its own, or
// hands it back at once while draining or if it runs already. It lives in
// ctx, the worker's, so that it can outlive a broken connection (kept.go).
func (s *session) startAttempt(ctx, sctx context.Context, run *pb.Run) {
	key := attemptKey{run.TaskId, run.Attempt}
	box := s.takePrepared(key)
	if s.draining || s.attempts[key] != nil {
		s.dropBox(box)
		s.post(returnedMessage(key))
		return
	}
	if run.Instance == 0 && s.w.cfg.Simulate != nil && s.w.cfg.Simulate.Delay == 0 {
		// A simulated task that waits for nothing ends here, in the loop:
		// no goroutine per task, and the ends of a batch of runs leave
		// in one write.
		s.attempts[key] = &running{cancel: func() {}, epoch: run.Epoch, need: runNeed(run)}
		s.ended(evAttemptEnded{key: key, outcome: s.w.simulate(ctx, run)})
		return
	}
	actx, acancel := context.WithCancel(ctx)
	s.attempts[key] = &running{cancel: acancel, call: run.Instance != 0, instance: run.Instance, epoch: run.Epoch}
	if run.Instance != 0 {
		s.calls++
	} else {
		s.attempts[key].need = runNeed(run)
	}
	s.wg.Add(1)
	s.w.runners.run(func() { // ends when the attempt ends; actx bounds it
		defer s.wg.Done()
		defer acancel()
		var o *pb.Outcome
		var back *pb.AttemptReturned
		cleanup := func() {}
		libDead := false
		if run.Instance != 0 {
			inst := s.w.libs.get(run.Instance)
			if inst != nil {
				inst.calls.Add(1)
				defer inst.calls.Add(-1) // after its end is with the loop
			}
			o = s.w.runCall(actx, run, inst)
			libDead = inst != nil && inst.dead()
		} else if s.w.cfg.Simulate != nil {
			o = s.w.simulate(actx, run)
		} else {
			var exited func()
			if len(run.Spec.GetOutputs()) > 0 {
				// A run held ahead may start on its cores while the
				// outputs are taken. (Without outputs the end follows
				// at once: an event more would cost more than it saves.)
				// The loop, readied by the event, runs now (Gosched):
				// with one P (a 1-core worker: TuneProcs) it would
				// wait for the outputs, with more for another thread
				// to wake and take it.
				exited = func() {
					if s.holding.Load() > 0 {
						s.emit(evAttemptFreed{key})
						runtime.Gosched()
					}
				}
			}
			o, back, cleanup = s.w.runAttempt(actx, run, box, exited)
		}
		s.events <- evAttemptEnded{key: key, outcome: o, libDead: libDead, returned: o == handBack, back: back} // the loop waits for every attempt
		cleanup()                                                                                               // after reporting: the next task need not wait for it
	})
}

// attemptEnded settles an attempt that ended: reports from calls wait
// while other calls run (see heldReports).
func (s *session) attemptEnded(ev evAttemptEnded) {
	r := s.attempts[ev.key]
	delete(s.attempts, ev.key)
	if r != nil && r.call {
		s.calls--
	}
	full := false
	if msg := reportMessage(r, ev); msg != nil {
		var ref heldRef
		if r != nil {
			ref = heldRef{r.epoch, r.instance}
		}
		full = s.held.add(msg, ref)
	}
	// The runs held ahead that wait on once this end has started what
	// fits: all but the one that starts now, or all where runs started
	// when its command exited.
	waiting := len(s.ahead)
	if r != nil && r.startedEarly == 0 {
		waiting--
	}
	switch {
	case ev.libDead && !full:
		// held until the library's end flushes it
	case r != nil && !r.call && waiting > 0 && !full:
		// Runs sent ahead wait here, more than the one that starts now:
		// the manager needs no report to keep this worker busy, and the
		// reports of several go in one message (ahead.go).
		s.held.armFor(s.aheadHold())
	case r == nil || !r.call || s.calls == 0 || full:
		s.held.flush(s.post)
	default:
		s.held.arm()
	}
}

// checkIdle drains the worker once it has run nothing for IdleExit.
func (s *session) checkIdle(now time.Time) {
	switch {
	case len(s.attempts) > 0 || s.w.libs.count() > 0:
		s.idleSince = time.Time{}
	case s.idleSince.IsZero():
		s.idleSince = now
	case now.Sub(s.idleSince) >= s.w.cfg.IdleExit && s.drainc != nil:
		s.w.log.Info("idle: draining", "idle_for", now.Sub(s.idleSince).Round(time.Millisecond))
		s.w.Drain()
	}
}

// drain stops taking work: what runs may finish until DrainTimeout.
func (s *session) drain() {
	s.drainc = nil
	s.draining = true
	s.drainTimer = time.After(s.w.cfg.DrainTimeout)
	s.w.log.Info("draining", "running", len(s.attempts), "timeout", s.w.cfg.DrainTimeout)
	s.post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Draining{Draining: &pb.Draining{}}})
	s.handBackHeld() // not started: they run elsewhere
}

// handBackAll kills every attempt, to be reported as returned.
func (s *session) handBackAll() {
	s.handBackHeld()
	for _, r := range s.attempts {
		r.handBack.Store(true)
		r.cancel()
	}
}

// settle waits for every attempt to end, reporting each as the manager
// expects. Messages from the manager are no longer acted on.
func (s *session) settle() {
	for len(s.attempts) > 0 {
		select {
		case ev := <-s.events:
			if _, msg := ev.(evMessage); !msg {
				s.ended(ev)
			}
		case <-s.w.kept.signal:
			s.keptEnded()
		}
	}
	s.held.flush(s.post)
}

// keptEnded reports the attempts kept from a broken session that ended.
func (s *session) keptEnded() {
	for _, e := range s.w.kept.take() {
		key := attemptKey{e.ref.TaskId, e.ref.Attempt}
		if r := s.attempts[key]; r != nil && r.kept {
			delete(s.attempts, key)
		}
		s.post(e.msg)
	}
}

// finish ends a session the worker chose to end (drained, or ctx ended):
// it reports every attempt, sends what is queued, and lets the manager
// end the stream once it has read it all.
func (s *session) finish(e error) error {
	s.settle()
	s.w.libs.detach(s, "") // they stop
	for _, msg := range s.direct.take(true) {
		s.post(msg)
	}
	s.flush()
	close(s.flushc)
	select {
	case <-s.senderDone:
	case <-time.After(5 * time.Second):
	}
	// Cancelling now could drop reports still in flight: half-close,
	// and let the manager end the stream once it has read them.
	s.stream.CloseSend()
	timeout := time.After(5 * time.Second)
	for waiting := true; waiting; {
		select {
		case <-s.events: // too late to act on
		case <-s.broken:
			waiting = false
		case <-timeout:
			waiting = false
		}
	}
	s.cancel()
	s.wg.Wait()
	return e
}

// lost ends a session whose stream broke. Commands, library instances
// and the calls running in them go on, kept for a manager that restarts
// and adopts them (kept.go, libraries), while it reconnects. A goroutine
// waits for what the session started, and hands the kept attempts' ends to
// the pool.
func (s *session) lost(err error) error {
	keeping := false
	for _, msg := range s.direct.take(true) { // for the next session of this run
		s.w.leases.keep(msg, s)
	}
	insts := s.w.libs.detach(s, s.runID)
	s.dropPrepared() // the runs held ahead are dropped: they run again
	if s.runID != "" {
		s.held.keep(s.w.kept, s.runID, insts) // ended, their reports not sent: as kept attempts' ends
	}
	for key, r := range s.attempts {
		switch {
		case r.kept: // the pool's still: not started here
			delete(s.attempts, key)
		case !r.handBack.Load() && s.runID != "" && (!r.call || insts[r.instance]):
			s.w.kept.keep(s.runID, key, r)
			keeping = true
		default:
			r.cancel()
		}
	}
	s.cancel()
	if keeping || len(insts) > 0 {
		s.w.log.Info("lost the manager: keeping the running tasks for it to adopt when it comes back", "tasks", len(s.attempts), "library_instances", len(insts))
	}
	if keeping {
		s.w.kept.wg.Add(1)
		go s.waitKept() // exits when every attempt the session started has ended (Worker.Run stops them last)
	} else {
		s.waitAttempts()
	}
	if s.draining {
		return nil
	}
	return fmt.Errorf("lost the manager: %w", refusal(err, nil))
}

// waitAttempts waits until every attempt the session started has ended,
// and every goroutine it started exited. Kept attempts' ends go to the
// pool; the others are dropped (the manager queued them again).
func (s *session) waitAttempts() {
	for len(s.attempts) > 0 {
		if ev, ok := (<-s.events).(evAttemptEnded); ok {
			r := s.attempts[ev.key]
			delete(s.attempts, ev.key)
			if r != nil && r.kept {
				s.w.kept.end(ev.key, r, reportMessage(r, ev))
			}
		}
	}
	s.wg.Wait()
}

// waitKept is waitAttempts in a goroutine of its own, which owns the
// session's state once its loop has returned.
func (s *session) waitKept() {
	defer s.w.kept.wg.Done()
	s.waitAttempts()
}

// reportEvicted tells the manager which files the cache evicted to make room.
func (s *session) reportEvicted() {
	if gone := s.w.cache.Evicted(); len(gone) > 0 {
		s.post(&pb.WorkerMessage{Msg: &pb.WorkerMessage_Dropped{Dropped: &pb.Dropped{Names: gone}}})
	}
}

// reportMessage says how an attempt ended, as the manager expects: nil
// for a call whose library died (the library's end settles it).
func reportMessage(r *running, ev evAttemptEnded) *pb.WorkerMessage {
	if ev.outcome == nil {
		return nil
	}
	if ev.back != nil && (r == nil || !r.handBack.Load()) {
		return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Returned{Returned: ev.back}}
	}
	if r != nil && r.handBack.Load() || ev.returned {
		return returnedMessage(ev.key)
	}
	d := &pb.AttemptDone{TaskId: ev.key.task, Attempt: ev.key.attempt, Outcome: ev.outcome}
	if r != nil {
		d.Epoch = r.epoch
	}
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Done{Done: d}}
}

// Stream is the worker's end of its connection to the manager.
type Stream interface {
	Send(*pb.WorkerMessage) error
	Receive() (*pb.ManagerMessage, error)
	CloseSend() error // no more messages from the worker; replies may follow
}

// openStream connects to the manager: over HTTP/2, or in process when
// Config.Connect says how.
func (w *Worker) openStream(ctx context.Context) Stream {
	if w.cfg.Connect != nil {
		return w.cfg.Connect(ctx)
	}
	if t := w.cfg.Transport; t == TransportFramed || t == TransportAuto && !w.framedRefused.Load() {
		s, err := w.dialFramed(ctx)
		if err == nil {
			return s
		}
		if connect.CodeOf(err) != connect.CodeUnimplemented {
			return failedStream{err}
		}
		if t == TransportFramed {
			return failedStream{fmt.Errorf("%w: start the worker without --transport framed", err)}
		}
		w.framedRefused.Store(true)
		w.log.Info("the manager does not serve the framed transport (an older version): the Work stream goes over HTTP/2")
	}
	stream := w.rpc.Work(ctx)
	w.authorize(stream.RequestHeader())
	return httpStream{stream}
}

// httpStream is a Work stream over HTTP/2.
type httpStream struct {
	*connect.BidiStreamForClient[pb.WorkerMessage, pb.ManagerMessage]
}

func (s httpStream) CloseSend() error { return s.CloseRequest() }

// refusal turns the manager's refusal into ErrRefused; other errors pass.
func refusal(err error, stream Stream) error {
	if stream != nil {
		// A failed Send hides the reason; Receive tells it.
		if _, rerr := stream.Receive(); rerr != nil {
			err = rerr
		}
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodeInvalidArgument, connect.CodePermissionDenied:
		var ce *connect.Error
		if errors.As(err, &ce) {
			return fmt.Errorf("%w: %s", ErrRefused, ce.Message())
		}
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}
