package core

// Action is an output of Step for the caller to carry out.
type Action interface{ isAction() }

// Dispatch: send attempt Attempt of Task to Worker, with these GPU devices.
// A call names the library Instance to run in. The start of a library
// instance is a Dispatch too: Task is 0, Instance names the new instance and
// Lib its library.
type Dispatch struct {
	Task   TaskID
	Worker WorkerID
	// Instance: for a call, the library instance to run it in; for a
	// library instance's start, the instance, with Lib the library.
	Instance InstanceID
	Attempt  uint32
	Lib      LibID // set only when the Dispatch starts Instance
	GPUs     []int32
	// Ahead: the worker holds the task until its resources free, in the
	// order of such dispatches, and starts it then without being told
	// (see SetAhead).
	Ahead bool
	// Files: what the dispatch says of the task's files (Inline, Keep);
	// nil when it says nothing, as for most tasks (a Dispatch is made per
	// decision: it stays small).
	Files *DispatchFiles
}

// DispatchFiles is what a Dispatch says of its task's files.
type DispatchFiles struct {
	// Inline: inputs the worker does not hold, which travel from the
	// manager inside the message (see FileSpec.Inline); every other input
	// that is not the caller's own inline content is on the worker.
	Inline []FileID
	// Keep: the task's outputs the worker keeps in its cache (besides
	// sending them to the manager, for those with FileSpec.Upload): every
	// declared Produced output without Upload, and those with Upload that
	// an unfinished task reads. The worker drops the others.
	Keep []FileID
}

// Inline returns the dispatch's inline inputs (see DispatchFiles).
func (d Dispatch) Inline() []FileID {
	if d.Files == nil {
		return nil
	}
	return d.Files.Inline
}

// Keep returns the outputs the worker keeps (see DispatchFiles).
func (d Dispatch) Keep() []FileID {
	if d.Files == nil {
		return nil
	}
	return d.Files.Keep
}

// Stop: stop the idle library instance on Worker; it reports InstanceEnded.
type Stop struct {
	Instance InstanceID
	Worker   WorkerID
}

// LibraryBroken: instances of Lib failed to start too often; the calls
// that waited for it failed with Why.
type LibraryBroken struct {
	Lib LibID
	Why string
}

// Kill: stop attempt Attempt of Task on Worker. The worker still reports
// how it ended; the core keeps its resources reserved until then.
type Kill struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
}

// Revoke: attempt Attempt of Task, held ahead on Worker, is wanted back
// for worker For, which has room for it. Worker hands it back (a
// TaskReturned) unless it started it first; its report of the end that
// started it tells the core so (promote), and the revoke lapses.
type Revoke struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
	For     WorkerID
}

// Started: attempt Attempt of Task, dispatched ahead (Dispatch.Ahead) and
// held on Worker, starts there now: the resources of a task that ended
// there freed, and the worker starts its held tasks in order as the core
// does (promote). Its RUNNING event and start time belong here, not at its
// Dispatch.
type Started struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
}

// Adopted: attempt Attempt of Task, dispatched before the manager
// restarted, runs on Worker, which reported it as it joined: its report
// counts as that of an attempt dispatched there.
type Adopted struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
}

// InstanceAdopted: attempt Attempt of library instance Instance, started
// before the manager restarted, runs on Worker, which reported it as it
// joined: it serves calls as if it had started there now.
type InstanceAdopted struct {
	Instance InstanceID
	Attempt  uint32
	Lib      LibID
	Worker   WorkerID
}

// Unknown: attempt Attempt of an at-most-once task may or may not have
// taken effect (Why says how it was lost): the task waits for a
// Reconcile, and is not dispatched again until then.
type Unknown struct {
	Task    TaskID
	Attempt uint32
	Why     string
}

// Requeued: the task goes back to the queue after attempt Attempt ended
// with Reason. Attempts counts the dispatches so far.
type Requeued struct {
	Task    TaskID
	Attempt uint32
	Reason  Outcome
}

// Done: the task ended for good. Attempt is its last attempt (0 if it never
// ran); the outcome is final. Exactly one Done is emitted per task.
//
// Unless Retained, the Done is the last the caller hears of the task: what
// it keeps for it (its spec) may go. A Retained task succeeded with outputs
// that live only in workers: the core keeps it to run again if they are
// lost (Rerun), and a Forget says when it lets it go.
type Done struct {
	Task     TaskID
	Attempt  uint32
	Retained bool     // (here, it packs with Attempt)
	Dataflow bool     // a plain task counted as dataflow (see Tally)
	Worker   WorkerID // where the last attempt ran, 0 if it never ran
	Outcome  Outcome
}

// StaleResult: a TaskFinished or TaskReturned (or, naming Instance and no
// Task, an InstanceReady or InstanceEnded) that did not match the current
// attempt was ignored.
type StaleResult struct {
	Task     TaskID
	Instance InstanceID
	Attempt  uint32
	Worker   WorkerID
}

// Fetch: Worker must bring File into its cache from Source, and report a
// TransferDone for Transfer. From then on the worker holds File: it does
// not evict it until a Release names it (see pins.go).
//
// Task names the task placed on Worker that the fetch is for: the first
// one staging there that waits for File, or for a file unpacked from it
// (others may wait for it too); 0 for a fetch no task or call waits for
// (an extra replica of a temp file, an input of a library instance).
type Fetch struct {
	Transfer uint64
	Worker   WorkerID
	File     FileID
	Source   Source
	Size     int64 // expected, 0 if unknown
	Task     TaskID
}

// Recreated: a task that had finished ran again to recreate lost outputs,
// and succeeded. (Its Done was emitted once, the first time.)
type Recreated struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
}

// Rerun: a finished task goes back to the queue because every copy of its
// output File was lost and a task still needs it.
type Rerun struct {
	Task TaskID
	File FileID
}

// Forget: the core holds nothing more of Task, whose Done said Retained: it
// ran again to recreate lost files and ended (with Recreated or FileLost, in
// the same step) without being retained again. What the caller keeps for it
// may go.
type Forget struct{ Task TaskID }

// FileLost: File can never be had again; tasks that need it fail.
type FileLost struct {
	File FileID
	Why  string
}

// Unlink: Worker must delete Files from its cache. Their level says no
// worker needs them any more (see Level); the core has already forgotten
// those replicas, as it does on FilesDropped.
type Unlink struct {
	Worker WorkerID
	Files  []FileID
}

// Release: Worker may evict Files from its cache when it needs room: no
// task placed there reads them (see pins.go). It evicts no other file: a
// Fetch holds its file until a Release names it. The core still counts
// the copies; a task placed there claims one again (a Fetch FromCache)
// before it runs.
type Release struct {
	Worker WorkerID
	Files  []FileID
}

// Unplaceable: no connected worker that takes tasks could run Tasks,
// which are ready, even if it were idle: Why says what is missing, as "no
// connected worker has 64 cores (largest: 2)". It comes when the reason
// appears or changes (at submission, or as workers join, drain and
// leave), never again for the same reason, and with Why "" when it clears
// because such a worker joined. A call is unplaceable while no instance
// of its library is placed and none could be; library instances have no
// Unplaceable of their own. A Dispatch or a Done also ends the reason.
//
// One action tells many tasks: every queued task of a shape (or call of
// a library) judged at once, and the tasks of a batch queued one after
// another, as long as no other action comes between them; so no two
// Unplaceable actions in a row have the same Why. Tasks is never empty.
type Unplaceable struct {
	Tasks []TaskID
	Why   string
}

func (Fetch) isAction()           {}
func (Unplaceable) isAction()     {}
func (Unlink) isAction()          {}
func (Release) isAction()         {}
func (Stop) isAction()            {}
func (LibraryBroken) isAction()   {}
func (Recreated) isAction()       {}
func (Rerun) isAction()           {}
func (FileLost) isAction()        {}
func (Forget) isAction()          {}
func (Dispatch) isAction()        {}
func (Kill) isAction()            {}
func (Revoke) isAction()          {}
func (Started) isAction()         {}
func (Adopted) isAction()         {}
func (InstanceAdopted) isAction() {}
func (Unknown) isAction()         {}
func (Requeued) isAction()        {}
func (Done) isAction()            {}
func (StaleResult) isAction()     {}
