package core

// Action is an output of Step for the caller to carry out.
type Action interface{ isAction() }

// Dispatch: send attempt Attempt of Task to Worker, with these GPU devices.
type Dispatch struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
	GPUs    []int32
	// Instance: for a call, the library instance to run it in. Lib: for a
	// library instance (a task the core made), the library to start.
	Instance TaskID
	Lib      LibID
	// Inline: inputs the worker does not hold, which travel from the
	// manager inside the message (see FileSpec.Inline); every other input
	// that is not the caller's own inline content is on the worker.
	Inline []FileID
}

// Stop: stop the idle library instance on Worker; it reports InstanceEnded.
type Stop struct {
	Instance TaskID
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

// Requeued: the task goes back to the queue after attempt Attempt ended
// with Reason. Attempts counts the dispatches so far.
type Requeued struct {
	Task    TaskID
	Attempt uint32
	Reason  Outcome
}

// Done: the task ended for good. Attempt is its last attempt (0 if it never
// ran); the outcome is final. Exactly one Done is emitted per task.
type Done struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID // where the last attempt ran, 0 if it never ran
	Outcome Outcome
}

// StaleResult: a TaskFinished or TaskReturned that did not match the
// current attempt was ignored.
type StaleResult struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
}

// Fetch: Worker must bring File into its cache from Source, and report a
// TransferDone for Transfer.
type Fetch struct {
	Transfer uint64
	Worker   WorkerID
	File     FileID
	Source   Source
	Size     int64 // expected, 0 if unknown
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

// FileLost: File can never be had again; tasks that need it fail.
type FileLost struct {
	File FileID
	Why  string
}

func (Fetch) isAction()         {}
func (Stop) isAction()          {}
func (LibraryBroken) isAction() {}
func (Recreated) isAction()     {}
func (Rerun) isAction()         {}
func (FileLost) isAction()      {}
func (Dispatch) isAction()      {}
func (Kill) isAction()          {}
func (Requeued) isAction()      {}
func (Done) isAction()          {}
func (StaleResult) isAction()   {}
