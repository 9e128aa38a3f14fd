package core

import "time"

// Event is an input to Step. Each is a fact that a journal could record.
type Event interface{ isEvent() }

// WorkerJoined: a worker connected and offers Resources. GPUs lists its
// device indexes; len(GPUs) must equal Resources.GPUs.
type WorkerJoined struct {
	Worker    WorkerID
	Resources Resources
	GPUs      []int32
	Cached    []CachedFile // files it already holds (kept across its restart)
	// Incarnation names the worker process, the same on each of its
	// connections; Running lists the attempts it still runs (or ran, their
	// reports to follow) from before it joined. The core adopts those
	// adrift on this incarnation (see TaskAdrift) and kills the others.
	Incarnation string
	Running     []AttemptRef
	// Instances lists the library instances it still runs from before it
	// joined, started by a manager of this run: the core adopts each one
	// whose library is installed and fits the worker (the calls adrift in
	// it can then be adopted too), and stops the others. Instance IDs are
	// unique across the manager's lives (see SetInstanceBase).
	Instances []KeptInstance
	// HoldsAhead: it holds tasks dispatched ahead until they fit
	// (SetAhead); only such a worker is sent any.
	HoldsAhead bool
}

// AttemptRef names one attempt of a task; Instance, for a call, the
// library instance it runs in.
type AttemptRef struct {
	Task     TaskID
	Attempt  uint32
	Instance InstanceID
}

// KeptInstance is a library instance a joining worker still runs (see
// WorkerJoined.Instances): attempt Attempt of Instance, of library Lib.
type KeptInstance struct {
	Instance InstanceID
	Attempt  uint32
	Lib      LibID
}

// WorkerDraining: the worker takes no new tasks; it finishes or returns what it runs.
type WorkerDraining struct{ Worker WorkerID }

// WorkerLeft: the worker is gone; what ran there did not finish.
type WorkerLeft struct {
	Worker WorkerID
	Reason string
}

// TasksSubmitted: new tasks, in submission order. Outputs of every task in
// the batch are registered before any task is considered, so a batch may
// list a consumer before its producer.
type TasksSubmitted struct{ Tasks []Task }

// TaskFinished: a worker reports how an attempt ended.
type TaskFinished struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
	Outcome Outcome
	Outputs []OutputInfo // on success: where each output now is (one not listed: at the manager, inline)
}

// TaskRecovered: a submitted task had ended before the manager restarted,
// as its journal recorded (see recovery.go). Attempt is its last attempt.
// On success, Outputs lists the outputs that have a copy at the manager
// (OutputInfo.Manager); an output not listed has no copy left, as when every
// worker holding it is lost, and is recreated by running the task again if
// an unfinished task needs it. It applies to a task not yet dispatched;
// for any other it changes nothing.
type TaskRecovered struct {
	Task    TaskID
	Attempt uint32
	Outcome Outcome
	Outputs []OutputInfo
}

// TaskAdrift: attempt Attempt of a submitted task was dispatched, before
// the manager restarted, to the worker process of incarnation Where, and
// its end is not known (see adrift.go). The task is not placed until that
// worker joins again (WorkerJoined.Incarnation) and reports the attempt
// running, and is adopted, or not, and is queued again; or until Until,
// on Tick's clock, passes first (queued again). Later attempts get higher
// numbers. It applies to a plain task not yet dispatched in this life; for
// any other it changes nothing.
type TaskAdrift struct {
	Task    TaskID
	Attempt uint32
	Where   string
	Until   time.Duration
}

// Reconcile: the operator's verdict on a task whose fate is unknown (see
// Task.AtMostOnce), or still adrift: it took effect (ends as a success;
// a failure if it has outputs, which are gone), it did not and is to fail,
// or it is to run again (once more).
type Reconcile struct {
	Task    TaskID
	Verdict Verdict
}

// Verdict is what the operator says of a task in unknown.
type Verdict uint8

// Verdicts.
const (
	VerdictDone Verdict = iota + 1
	VerdictFailed
	VerdictRerun
)

// FilesDeclared: what kind of file each is, before tasks use them.
// Session names the client session that declares them (opaque to the
// core), or is empty when none does (the caller tells what it learned of a
// file): a workflow-level file is unlinked once every session that
// declared it has ended (SessionEnded).
type FilesDeclared struct {
	Session string
	Files   []FileSpec
}

// SessionEnded: a client session is gone. The workflow-level files that
// only ended sessions declared are unlinked from the workers that hold
// them, now or when the last unfinished task that reads them ends.
type SessionEnded struct{ Session string }

// TransferDone: a Fetch ended. SourceFault says the source failed (the
// core backs off from it); otherwise the destination did (disk full).
type TransferDone struct {
	Transfer    uint64
	OK          bool
	SourceFault bool
	// CacheFull: the destination's cache is full of files still needed.
	// The tasks staging the file, if its size is known, wait for space
	// (see waitForSpace), as those whose output did not fit do.
	CacheFull bool
	Size      int64
	Why       string
}

// FilesDropped: a worker no longer holds these files (it evicted them).
type FilesDropped struct {
	Worker WorkerID
	Files  []FileID
}

// TaskReturned: a worker hands an attempt back unfinished (it is draining,
// or its cache is full). The task is queued again without counting
// against its retries.
type TaskReturned struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
	// CacheFull: the attempt ran, but its worker's cache could not keep
	// an output of Need bytes (0: unknown) because what it holds is still
	// needed. The task waits until a worker's cache frees space (see
	// park), or fails if Need exceeds every connected worker's disk.
	CacheFull bool
	Need      int64
}

// CancelTask: the client no longer wants the task.
type CancelTask struct{ Task TaskID }

// FileMissing: an external file that tasks may read is not there. Tasks
// that read it fail with InputMissing and Why, now and later.
type FileMissing struct {
	File FileID
	Why  string
}

// LibraryInstalled: calls may now name Lib. Each instance of it holds
// Resources on a worker and serves Slots calls at once. The core starts
// instances as calls need them, at most Max (0: as many as calls need),
// and Eager of them at once.
type LibraryInstalled struct {
	Lib       LibID
	Resources Resources
	Slots     int32
	Inputs    []FileID
	Max       int32
	Eager     int32
	// EveryWorker: keep an instance on every open worker that has room
	// for one (see deployEverywhere), besides those calls need.
	EveryWorker bool
}

// LibraryRemoved: the operator removed Lib. Its instances are stopped,
// and its calls, waiting, running or submitted later, fail with Why,
// until a LibraryInstalled installs it again.
type LibraryRemoved struct {
	Lib LibID
	Why string
}

// InstanceReady: the library process of an instance has started (its
// set-up succeeded) and takes calls.
type InstanceReady struct {
	Instance InstanceID
	Attempt  uint32
	Worker   WorkerID
}

// InstanceEnded: the library process of an instance is gone: it failed to
// start, crashed, exceeded its memory, or was stopped.
type InstanceEnded struct {
	Instance InstanceID
	Attempt  uint32
	Worker   WorkerID
	Outcome  Outcome
}

// Tick: time passed. The core uses it for a full placement pass, which
// catches tasks that fit a worker in a way the incremental placement missed.
// Now is the caller's clock: time since an origin it chooses, which never
// goes back (a Now below the last one counts as the last one). It is the
// core's only clock for Task.UnplaceableTimeout.
type Tick struct{ Now time.Duration }

func (WorkerJoined) isEvent()     {}
func (WorkerDraining) isEvent()   {}
func (WorkerLeft) isEvent()       {}
func (TasksSubmitted) isEvent()   {}
func (TaskFinished) isEvent()     {}
func (TaskRecovered) isEvent()    {}
func (TaskAdrift) isEvent()       {}
func (Reconcile) isEvent()        {}
func (TaskReturned) isEvent()     {}
func (CancelTask) isEvent()       {}
func (Tick) isEvent()             {}
func (FilesDeclared) isEvent()    {}
func (LibraryInstalled) isEvent() {}
func (LibraryRemoved) isEvent()   {}
func (InstanceReady) isEvent()    {}
func (InstanceEnded) isEvent()    {}
func (TransferDone) isEvent()     {}
func (FilesDropped) isEvent()     {}
func (FileMissing) isEvent()      {}
func (SessionEnded) isEvent()     {}
