package worker

import (
	"sync"

	pb "trellis/internal/proto/trellisv1"
)

// When the connection to the manager breaks, the attempts of command tasks
// go on running (calls stop: their library instances end with the
// session). The worker reconnects and lists them in its Hello with the run
// ID of the manager that sent them: a manager that restarted with its
// journal (--state) adopts those it dispatched to this incarnation, and
// sends Kill for the others; a manager of another run (no journal) knows
// nothing of them, and the worker stops them when its Welcome names
// another run. Their reports, once they end, go to whichever session is
// connected then, with the epoch of their Run, so that the manager can
// tell an adopted attempt's report from a stale one.

// kept is the worker's pool of attempts whose session broke. Its lock is a
// leaf (internal/LOCKS.md).
type kept struct {
	mu      sync.Mutex
	runID   string                  // of the manager that dispatched them
	running map[attemptKey]*running // still running
	ended   []keptReport            // their reports, not yet sent
	signal  chan struct{}           // 1-buffered: reports wait in ended
	wg      sync.WaitGroup          // the goroutines that wait for broken sessions' attempts
}

type keptReport struct {
	ref *pb.RunningAttempt
	msg *pb.WorkerMessage
}

func newKept() *kept {
	return &kept{running: make(map[attemptKey]*running), signal: make(chan struct{}, 1)}
}

// keep takes over r, an attempt of a session of manager run runID that broke.
func (k *kept) keep(runID string, key attemptKey, r *running) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.runID != runID {
		k.dropLocked()
		k.runID = runID
	}
	r.kept = true
	k.running[key] = r
}

// dropLocked stops every kept attempt and forgets their reports.
func (k *kept) dropLocked() {
	for key, r := range k.running {
		r.cancel()
		delete(k.running, key)
	}
	k.ended = nil
}

// end takes the report of kept attempt key, for the session connected now
// or the next one.
func (k *kept) end(key attemptKey, r *running, msg *pb.WorkerMessage) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.running[key] != r {
		return // dropped: reported to no manager
	}
	delete(k.running, key)
	if msg != nil {
		k.ended = append(k.ended, keptReport{&pb.RunningAttempt{TaskId: key.task, Attempt: key.attempt, Epoch: r.epoch, Instance: r.instance}, msg})
	}
	select {
	case k.signal <- struct{}{}:
	default:
	}
}

// report takes msg, the report of an attempt of manager run runID that
// ended while its session held the report (heldReports.keep), for the
// session connected next.
func (k *kept) report(runID string, ref *pb.RunningAttempt, msg *pb.WorkerMessage) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.runID != runID {
		k.dropLocked()
		k.runID = runID
	}
	k.ended = append(k.ended, keptReport{ref, msg})
	select {
	case k.signal <- struct{}{}:
	default:
	}
}

// list says, for a Hello, which attempts the worker runs or has reports
// of, and the run they belong to.
func (k *kept) list() (runID string, refs []*pb.RunningAttempt) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, r := range k.running {
		refs = append(refs, &pb.RunningAttempt{TaskId: key.task, Attempt: key.attempt, Epoch: r.epoch, Instance: r.instance})
	}
	for _, e := range k.ended {
		refs = append(refs, e.ref)
	}
	if len(refs) == 0 {
		return "", nil
	}
	return k.runID, refs
}

// attach hands the kept attempts to a new session with manager run runID:
// those still running join its attempts (a Kill reaches them there);
// those of another run are stopped and their reports dropped.
func (k *kept) attach(runID string, attempts map[attemptKey]*running) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.runID != runID {
		k.dropLocked()
		return
	}
	for key, r := range k.running {
		attempts[key] = r
	}
	if len(k.ended) > 0 {
		select {
		case k.signal <- struct{}{}:
		default:
		}
	}
}

// take returns the reports waiting to be sent.
func (k *kept) take() []keptReport {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.ended
	k.ended = nil
	return e
}

// stop stops every kept attempt and waits until the sessions they came
// from are done: when the worker stops.
func (k *kept) stop() {
	k.mu.Lock()
	k.dropLocked()
	k.mu.Unlock()
	k.wg.Wait()
}
