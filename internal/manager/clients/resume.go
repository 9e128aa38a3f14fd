package clients

import (
	"fmt"

	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

// A session is resumable when one of its submits asked for it
// (SubmitRequest.resumable): it then keeps the DONE event of each of its
// finished tasks that has a key, until it ends, so that a new client
// process that names it (its predecessor was killed) and submits the same
// tasks again by key gets every result, including those its predecessor
// was sent and acknowledged. The kept results belong to the loop
// goroutine alone, as keys do.

// MaxKept bounds the results one resumable session keeps. Past it the
// session keeps no more: a resubmit that needs one it did not keep is
// refused (Resubmit), rather than left waiting for a result that never
// comes.
const MaxKept = 1 << 20

// maxKeptTailBytes bounds the stdout and stderr bytes that one resumable
// session keeps with its results (each task's tails are up to 64 KiB of
// each): past it, results are kept without them, marked truncated. A
// variable for tests.
var maxKeptTailBytes = 64 << 20

// SetResumable makes the session keep its finished tasks' results.
func (s *Session) SetResumable() {
	if !s.resumable && s.name != "" { // the shared session is no one's to resume
		s.resumable = true
		s.results = make(map[string]*pb.TaskEvent)
	}
}

// Resumable reports whether the session keeps its finished tasks' results.
func (s *Session) Resumable() bool { return s.resumable }

// Finished keeps ev, the DONE event of the task with key, if the session
// is resumable. ev must not change afterwards, except for its Seq.
func (s *Session) Finished(key string, ev *pb.TaskEvent) {
	if !s.resumable || key == "" {
		return
	}
	if _, ok := s.results[key]; !ok && len(s.results) >= MaxKept {
		s.unkept++
		return
	}
	o := ev.GetOutcome()
	if n := len(o.GetStdout()) + len(o.GetStderr()); n > 0 {
		if s.tailBytes+n > maxKeptTailBytes {
			ev = withoutTails(ev)
		} else {
			s.tailBytes += n
		}
	}
	s.results[key] = ev
}

// withoutTails returns a copy of ev whose outcome has no stdout or stderr,
// marked truncated.
func withoutTails(ev *pb.TaskEvent) *pb.TaskEvent {
	o := goproto.CloneOf(ev.Outcome)
	o.Stdout, o.Stderr = nil, nil
	o.StdoutTruncated, o.StderrTruncated = o.StdoutTruncated || len(ev.Outcome.Stdout) > 0, o.StderrTruncated || len(ev.Outcome.Stderr) > 0
	return &pb.TaskEvent{TaskId: ev.TaskId, State: ev.State, Attempt: ev.Attempt, Worker: ev.Worker, Note: ev.Note, Outcome: o, Key: ev.Key}
}

// Resubmission is what a submit of tasks by keys finds in the session:
// Resubmit decides it.
type Resubmission struct {
	// Again: every key was known, and IDs are the tasks they name, in
	// order. False with no error: every key is new.
	Again bool
	IDs   []uint64
	// Finished lists the IDs of the tasks (of IDs) that have finished.
	Finished []uint64
	// Resend holds a fresh copy (Seq unset) of the DONE event of each
	// finished task whose result the session kept, in the order of the
	// keys: the caller puts them in the session for the new client.
	Resend []*pb.TaskEvent
}

// Resubmit decides what a submit of tasks with keys (in order; "" for a
// task without one) finds in the session: all new, or all submitted
// before (Again, with their IDs; done says which of those have
// finished), or an error for a mix of the two. In a resumable session,
// the kept result of each finished task is sent again; a finished task
// whose result the session did not keep (past MaxKept) is an error, as
// its new client would wait for it for ever.
func (s *Session) Resubmit(keys []string, done func(id uint64) bool) (Resubmission, error) {
	var r Resubmission
	for _, k := range keys {
		if id, ok := s.keys[k]; ok && k != "" {
			r.IDs = append(r.IDs, id)
		}
	}
	switch known := len(r.IDs); {
	case known == 0:
		return Resubmission{}, nil
	case known < len(keys):
		return Resubmission{}, fmt.Errorf("submit mixes %d tasks whose keys this session used before with %d new ones: resubmit the same tasks, or give new ones new keys", known, len(keys)-known)
	}
	r.Again = true
	missing := 0
	for i, id := range r.IDs {
		if !done(id) {
			continue
		}
		r.Finished = append(r.Finished, id)
		if !s.resumable {
			continue // a retried submit of the same client: it has its events
		}
		ev := s.results[keys[i]]
		if ev == nil {
			missing++
			continue
		}
		r.Resend = append(r.Resend, &pb.TaskEvent{TaskId: ev.TaskId, State: ev.State, Attempt: ev.Attempt,
			Worker: ev.Worker, Note: ev.Note, Outcome: ev.Outcome, Key: ev.Key})
	}
	if missing > 0 {
		return Resubmission{}, fmt.Errorf("session %s: the results of %d of these finished tasks are no longer kept (a session keeps at most %d): they cannot be sent again; run the workflow in a new session", s.name, missing, MaxKept)
	}
	return r, nil
}

// Kept returns how many results the session keeps, and how many it did
// not keep past MaxKept.
func (s *Session) Kept() (kept int, unkept uint64) { return len(s.results), s.unkept }
