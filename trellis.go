// Package trellis is the Go API of trellis, a workflow execution platform
// that runs standalone programs, data-intensive task graphs and serverless
// function calls on one pool of workers.
//
// A program connects to a manager with Dial, or starts an embedded manager
// with local workers with local.Start (package trellis/local; this package
// is a client only and links neither manager nor worker); declares files
// (LocalFile, Buffer, Output); submits tasks; and waits for their results:
//
//	c, err := local.Start(ctx, local.Config{Workers: 2})
//	defer c.Close()
//	t := trellis.NewTask("wc -l < in.txt > count.txt")
//	t.AddInput(trellis.LocalFile("data.txt"), "in.txt")
//	t.AddOutput(trellis.Output("count.txt"), "count.txt")
//	h, err := c.Submit(ctx, t)
//	res, err := h[0].Wait(ctx)
//
// A task that reads a file that another task writes (the same *File as the
// other's output) waits for it; the manager releases it, with no round trip
// through the client.
package trellis

import (
	"errors"
	"fmt"
	"time"
)

// Version is the trellis release.
const Version = "0.1.0"

// Errors a caller can check with errors.Is.
var (
	ErrUnauthenticated = errors.New("trellis: refused by the manager")
	ErrInvalid         = errors.New("trellis: invalid request")
	ErrNotFound        = errors.New("trellis: not found")
	ErrClosed          = errors.New("trellis: client closed")
	// ErrManagerLost: the manager restarted (and forgot the session's tasks),
	// or stayed unreachable for the client's manager timeout.
	ErrManagerLost = errors.New("trellis: lost the manager")
	// ErrSessionEnded: the manager ended the client's session, and
	// cancelled its unfinished tasks, because the client was away (its
	// event stream closed) for longer than the manager's client grace.
	// Wait returns it once the client is back; so does Submit.
	ErrSessionEnded = errors.New("trellis: session ended")
)

// Resources is what a task needs. Zero memory or disk means no reservation
// and no limit; zero cores means one core.
type Resources struct {
	Cores    float64 `json:"cores"` // fractions allowed
	MemoryMB int64   `json:"memory_mb"`
	DiskMB   int64   `json:"disk_mb"`
	GPUs     int     `json:"gpus"`
}

// Mount places a file at a path in a task's sandbox.
type Mount struct {
	File *File
	Path string
}

// Task is a command line with files and resources. Build one with NewTask,
// which sets the defaults, then set fields or use the Add methods.
type Task struct {
	Name         string // for people; defaults to the command
	Command      string // run with /bin/sh -c inside a private sandbox directory
	Inputs       []Mount
	Outputs      []Mount
	Env          []string // KEY=VALUE
	Resources    Resources
	Retries      int  // further attempts after a worker is lost (and, with RetryOnError, after a failure)
	RetryOnError bool // retry failures of the command itself too
	TimeLimit    time.Duration
	Priority     int // higher runs first
	Category     string
	Tags         []string
	After        []*Task // tasks, in the same Submit call, that must succeed first
	Call         *Call   // set: a function call of an installed library instead of a command
	// Key names the task in the client's session (unique in it; a UUID,
	// say). Submitting a task whose key the session used before returns
	// the task already submitted. Empty: the client numbers it.
	Key string
	// UnplaceableTimeout fails the task (ResourceExceeded) once it has
	// waited this long while no connected worker could run it, even idle.
	// 0: the manager's --unplaceable-timeout; negative: wait for ever.
	UnplaceableTimeout time.Duration
	// Deterministic says that the same inputs give the same outputs
	// (recorded for the recovery layer; docs/recovery.md). Default: no.
	Deterministic bool
	// Effects says what the task does beyond its outputs, and so whether
	// it may run twice (docs/recovery.md). Default: EffectsNone.
	Effects Effects
	// Workflow labels the task with the workflow it belongs to, so that
	// an operator can cancel all of that workflow's unfinished tasks
	// (trellis cancel --workflow). Empty: the client's WithWorkflow label.
	Workflow string
	// Keep says how the task's temp outputs survive the loss of workers:
	// Lineage(), Replicate(n), Checkpoint(CheckpointSync) or
	// Checkpoint(CheckpointAsync) (docs/recovery.md). The zero value lets
	// the manager choose: lineage if Deterministic, else an asynchronous
	// checkpoint where the manager has a --checkpoint-dir, else lineage.
	Keep Keep
}

// Keep is how a task's temp outputs are kept (Task.Keep). Make one with
// Lineage, Replicate or Checkpoint; the zero value is the default.
type Keep struct {
	how      keepHow
	replicas int
}

type keepHow uint8

const (
	keepDefault keepHow = iota
	keepLineage
	keepReplicate
	keepCheckpointSync
	keepCheckpointAsync
)

// CheckpointMode says when a checkpoint is made.
type CheckpointMode int

// Checkpoint modes.
const (
	// CheckpointAsync: copied to the checkpoint directory after the task
	// counts as done; its consumers do not wait for the copy, but an
	// effectful consumer of a nondeterministic task does (the commit
	// barrier).
	CheckpointAsync CheckpointMode = iota
	// CheckpointSync: copied before the task counts as done.
	CheckpointSync
)

// Lineage keeps outputs only in workers' caches: a lost output is made
// again by running its task.
func Lineage() Keep { return Keep{how: keepLineage} }

// Replicate keeps n copies of each output on distinct workers (2 to 64),
// then falls back to lineage if every copy is lost.
func Replicate(n int) Keep { return Keep{how: keepReplicate, replicas: n} }

// Checkpoint copies each output to the manager's --checkpoint-dir, where
// it survives the loss of every worker.
func Checkpoint(mode CheckpointMode) Keep {
	if mode == CheckpointSync {
		return Keep{how: keepCheckpointSync}
	}
	return Keep{how: keepCheckpointAsync}
}

func (k Keep) String() string {
	switch k.how {
	case keepLineage:
		return "lineage"
	case keepReplicate:
		return fmt.Sprintf("replicate %d", k.replicas)
	case keepCheckpointSync:
		return "checkpoint sync"
	case keepCheckpointAsync:
		return "checkpoint async"
	}
	return "default"
}

// Effects is what a task does beyond writing its outputs.
type Effects int

// Effects a task may have.
const (
	// EffectsNone: outputs only; the task runs again whenever needed.
	EffectsNone Effects = iota
	// EffectsIdempotent: an external effect that the task applies once per
	// TRELLIS_IDEMPOTENCY_KEY (or call key); it runs again whenever needed.
	EffectsIdempotent
	// EffectsAtMostOnce: never dispatched twice. When an attempt is lost
	// (its worker dies, the manager restarts and the worker does not come
	// back with it), the task waits in unknown until an operator runs
	// trellis reconcile; retries apply only to inputs that could not be
	// had before it started.
	EffectsAtMostOnce
)

// Verdict is an operator's answer about a task in unknown (Client.Reconcile).
type Verdict int

// Verdicts.
const (
	VerdictDone   Verdict = iota + 1 // it took effect: the task succeeds (one with outputs fails: they are gone)
	VerdictFailed                    // it did not, and is not to: the task fails
	VerdictRerun                     // it did not: run it again, once
)

// Call is a function call: it runs in a slot of a library instance, with
// the same queue, retries, time limit and cancellation as any task.
type Call struct {
	Library  string
	Function string
	Args     []byte // JSON by convention
}

// NewCall returns a task calling function of library with args. Large
// args travel as a file, through the data layer; a call may also read
// input files and write output files (AddInput, AddOutput), in the
// directory that the SDKs' Dir(ctx) / call_dir() name.
func NewCall(library, function string, args []byte) *Task {
	return &Task{Name: library + "." + function, Call: &Call{Library: library, Function: function, Args: args}, Retries: DefaultRetries}
}

// Library is a long-running process hosting named functions, started on
// workers as calls need it (or at once: Eager), each instance holding its
// Resources and serving Slots calls at a time.
type Library struct {
	Name         string
	Command      string  // starts the library process (/bin/sh -c), in a sandbox with its inputs
	Inputs       []Mount // code, model, data
	Env          []string
	Resources    Resources
	Slots        int    // calls one instance runs at once; 0 means 1
	Mode         string // "direct" (default) or "fork" (each call in a forked child, where the SDK supports it)
	MaxInstances int    // 0: as many as calls need
	Eager        int    // instances to start at once
	// EveryWorker keeps an instance on every worker that has room for one:
	// at install, when a worker joins, and when room comes back while no
	// task waits. Lazy deployment still starts more as calls need them.
	EveryWorker  bool
	StartTimeout time.Duration
}

// DefaultRetries is the Retries that NewTask sets.
const DefaultRetries = 3

// NewTask returns a task running command with one core and the default retries.
func NewTask(command string) *Task {
	return &Task{Command: command, Resources: Resources{Cores: 1}, Retries: DefaultRetries}
}

// AddInput places f at path in the task's sandbox. The task cannot change
// it for the tasks after it (see docs/operations.md).
func (t *Task) AddInput(f *File, path string) *Task {
	t.Inputs = append(t.Inputs, Mount{f, path})
	return t
}

// AddOutput brings the file the task leaves at path back as f. path may
// be an input's too: the command gets its own writable copy of that input,
// may change it in place, and f is the file as it left it; what other tasks
// read as that input is unchanged.
func (t *Task) AddOutput(f *File, path string) *Task {
	t.Outputs = append(t.Outputs, Mount{f, path})
	return t
}

// ResultKind says how a task ended.
type ResultKind int

// Kinds of result. enums.go converts them to and from the wire's.
const (
	Success ResultKind = iota + 1
	Failed
	TimedOut
	ResourceExceeded
	InputMissing
	WorkerLost
	Cancelled
)

var kindNames = [...]string{"", "success", "failed", "timed out", "resource exceeded", "input missing", "worker lost", "cancelled"}

func (k ResultKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Result is how a task ended.
type Result struct {
	Task            uint64
	Name            string
	Kind            ResultKind
	ExitCode        int
	Message         string
	Stdout, Stderr  []byte // tails, bounded
	StdoutTruncated bool
	StderrTruncated bool
	Attempts        int
	Worker          string // where the last attempt ran
	RunTime         time.Duration
	PeakMemoryMB    int64
	Output          []byte // a call's result
	Traceback       string // a failed call's traceback, when the library gives one
}

// OK reports whether the task succeeded.
func (r *Result) OK() bool { return r.Kind == Success }

// Err returns nil on success, else an error describing the failure.
func (r *Result) Err() error {
	if r.OK() {
		return nil
	}
	return fmt.Errorf("task %d (%s): %s: %s", r.Task, r.Name, r.Kind, r.Message)
}

// State is where a task is, as Event reports it.
type State int

// Task states as the client sees them.
const (
	StateWaiting State = iota + 1
	StateRunning
	StateDone
)

func (s State) String() string {
	switch s {
	case StateWaiting:
		return "waiting"
	case StateRunning:
		return "running"
	case StateDone:
		return "done"
	}
	return "unknown"
}

// Event reports a change of one task's state, for progress displays.
type Event struct {
	Task    uint64
	Name    string
	State   State
	Attempt int
	Worker  string
	Note    string  // why the task went back to waiting, for instance
	Result  *Result // when State is StateDone
	// Unplaceable is set while the task waits and no connected worker
	// could run it, even idle: why, as "no connected worker has 64 cores
	// (largest: 2)". The task's next event without it ends that.
	Unplaceable string
}
