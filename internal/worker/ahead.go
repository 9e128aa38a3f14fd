package worker

import (
	"context"
	"runtime"
	"time"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// Runs sent ahead (pb.Run.Ahead, the manager's --ahead): the manager sends
// a busy worker more runs than its resources hold, so that one starts here
// the moment another ends, without a round trip to the manager, and the
// reports and runs of many tasks share messages. The session holds them in
// the order they came and starts the first as soon as it fits beside the
// attempts running (their resources, as the manager counts them; an
// attempt whose command has exited holds only its disk while its outputs
// are taken: evAttemptFreed); the
// manager's core mirrors that order (core.SetAhead), so both agree on
// what runs. A run not sent ahead starts at once, as always.

// aheadHold bounds how long a report waits while runs sent ahead wait
// behind it (session.attemptEnded): its worker is busy meanwhile, and the
// reports of several tasks go in one message, with one wake-up of the
// manager's loop and one message of new runs back. The reports go at once
// when the last run held starts.
const aheadHold = 5 * time.Millisecond

func (s *session) aheadHold() time.Duration {
	if d := s.w.cfg.aheadHold; d > 0 {
		return d
	}
	return aheadHold
}

// need is what a run's task takes of the worker's resources, as the
// manager's core counts it.
type need struct{ milliCores, memoryMB, diskMB int64 }

func runNeed(run *pb.Run) need {
	r := run.GetSpec().GetResources()
	return need{proto.MilliCores(r), r.GetMemoryMb(), r.GetDiskMb()}
}

// fitsNow reports whether n fits beside the attempts running (calls run in
// their library's instance and take nothing of their own).
func (s *session) fitsNow(n need) bool {
	var used need
	for _, r := range s.attempts {
		used.milliCores += r.need.milliCores
		used.memoryMB += r.need.memoryMB
		used.diskMB += r.need.diskMB
	}
	total := s.w.cfg.Resources
	return used.milliCores+n.milliCores <= total.MilliCores && used.memoryMB+n.memoryMB <= total.MemoryMB &&
		used.diskMB+n.diskMB <= total.DiskMB
}

// intake starts run, or holds it if it was sent ahead and does not fit yet
// (or runs sent ahead before it wait).
func (s *session) intake(ctx, sctx context.Context, run *pb.Run) {
	if run.Ahead && !s.draining && (len(s.ahead) > 0 || !s.fitsNow(runNeed(run))) {
		s.setAhead(append(s.ahead, run))
		s.prepare(run)
		return
	}
	s.startAttempt(ctx, sctx, run)
}

// setAhead makes ahead the runs held, and holding their count.
func (s *session) setAhead(ahead []*pb.Run) {
	s.ahead = ahead
	s.holding.Store(int32(len(ahead)))
}

// startHeld starts the runs held ahead, first first, while the first fits.
// Once the last has started, the reports held for them (aheadHold) go:
// the manager needs them now to keep the worker busy.
//
// Having started one, the loop yields its thread (runtime.Gosched) before
// it sends the ended attempt's report: the new attempt's goroutine then
// forks at once, and the report goes out from the other P meanwhile.
// Else the sender, readied last, runs first (Go runs the goroutine readied
// last next), and the fork waits for the report's encoding and write: a
// 1-core worker's cycle from one child's exit to the next one's fork was
// 115 µs with that order and 71 µs with this one (docs/benchmarks.md).
func (s *session) startHeld(ctx, sctx context.Context) (started int) {
	for len(s.ahead) > 0 && !s.draining && s.fitsNow(runNeed(s.ahead[0])) {
		run := s.ahead[0]
		s.ahead[0] = nil
		s.setAhead(s.ahead[1:])
		s.startAttempt(ctx, sctx, run)
		started++
		if len(s.ahead) == 0 {
			s.held.flush(s.post)
		}
	}
	if started > 0 {
		runtime.Gosched()
	}
	return started
}

// takeHeld takes the run held ahead as key off the list; nil if none is
// (it started, ended, or never came).
func (s *session) takeHeld(key attemptKey) *pb.Run {
	for i, run := range s.ahead {
		if run.TaskId == key.task && run.Attempt == key.attempt {
			s.setAhead(append(s.ahead[:i], s.ahead[i+1:]...))
			s.dropBox(s.takePrepared(key))
			return run
		}
	}
	return nil
}

// killHeld ends a run held ahead that the manager cancels; it reports
// whether key was one.
func (s *session) killHeld(key attemptKey) bool {
	run := s.takeHeld(key)
	if run == nil {
		return false
	}
	s.post(reportMessage(&running{epoch: run.Epoch}, evAttemptEnded{key: key,
		outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_CANCELLED, ExitCode: -1, Message: "cancelled before it started (held ahead)"}}))
	return true
}

// handBack returns the run held ahead as key to the manager, which wants
// it run elsewhere (pb.Revoke); it reports whether key was one. A run
// that started already, or ended, stays: the manager learns of its start
// from the report of the end that started it. Once nothing is held, the
// reports held for the runs (aheadHold) go.
func (s *session) handBack(key attemptKey) bool {
	if s.takeHeld(key) == nil {
		return false
	}
	s.post(returnedMessage(key))
	if len(s.ahead) == 0 {
		s.held.flush(s.post)
	}
	return true
}

// returnedMessage hands attempt key back unfinished (pb.AttemptReturned).
func returnedMessage(key attemptKey) *pb.WorkerMessage {
	return &pb.WorkerMessage{Msg: &pb.WorkerMessage_Returned{Returned: &pb.AttemptReturned{TaskId: key.task, Attempt: key.attempt}}}
}

// handBackHeld returns every run held ahead to the manager, which places
// it again: the worker drains, or stops. The reports held for them
// (aheadHold) go too: nothing is held now.
func (s *session) handBackHeld() {
	for _, run := range s.ahead {
		s.post(returnedMessage(attemptKey{run.TaskId, run.Attempt}))
	}
	s.setAhead(nil)
	s.dropPrepared()
	s.held.flush(s.post)
}

// prepare makes the sandbox of a run held ahead and puts its inputs there
// while it waits, so that its start is only its fork: the loop does it
// while the worker's cores run what it waits for. (A held run's inputs
// travel inline: no fetch, no cache pin.) Where that fails, nothing is
// kept: the attempt makes its sandbox at its start and reports the error.
func (s *session) prepare(run *pb.Run) {
	key := attemptKey{run.TaskId, run.Attempt}
	if _, ok := s.prepared[key]; ok || run.Instance != 0 || s.w.cfg.Simulate != nil {
		return // sent twice (one sandbox is enough), a call, or a run of a simulated worker: none used
	}
	for _, in := range run.Spec.GetInputs() {
		if in.Content == nil {
			return // not a run the manager holds ahead: left to its start
		}
	}
	dir, err := s.w.boxes.get()
	if err != nil {
		return
	}
	for _, in := range run.Spec.GetInputs() {
		if _, err := s.w.placeInput(dir, in, false); err != nil {
			s.w.boxes.put(dir)
			return
		}
	}
	if s.prepared == nil {
		s.prepared = map[attemptKey]string{}
	}
	s.prepared[key] = dir
}

// takePrepared returns the sandbox prepared for key and forgets it; "" if
// there is none.
func (s *session) takePrepared(key attemptKey) string {
	dir, ok := s.prepared[key]
	if ok {
		delete(s.prepared, key)
	}
	return dir
}

// dropBox gives back a prepared sandbox that no attempt will use ("" for
// none).
func (s *session) dropBox(dir string) {
	if dir != "" {
		s.w.boxes.put(dir)
	}
}

// dropPrepared gives back every prepared sandbox: the runs held ahead are
// handed back or dropped.
func (s *session) dropPrepared() {
	for key, dir := range s.prepared {
		delete(s.prepared, key)
		s.w.boxes.put(dir)
	}
}
