package core

// Action is an output of Step for the caller to carry out.
type Action interface{ isAction() }

// Dispatch: send attempt Attempt of Task to Worker, with these GPU devices.
type Dispatch struct {
	Task    TaskID
	Attempt uint32
	Worker  WorkerID
	GPUs    []int32
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

func (Dispatch) isAction()    {}
func (Kill) isAction()        {}
func (Requeued) isAction()    {}
func (Done) isAction()        {}
func (StaleResult) isAction() {}
