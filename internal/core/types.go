package core

import (
	"fmt"
	"time"
)

// TaskID names a task. The caller assigns IDs; they must be unique.
type TaskID uint64

// WorkerID names one connection of a worker. A worker that reconnects gets a new ID.
type WorkerID uint64

// InstanceID names a library instance. The core makes instances and numbers
// them from 1, apart from tasks: an InstanceID is never a TaskID.
type InstanceID uint64

// FileID names a file in the catalog. The caller interns cache names into IDs.
type FileID uint64

// Resources is an amount of each resource a worker offers or a task needs.
type Resources struct {
	MilliCores int64 // thousandths of a core, so that fractions are exact
	MemoryMB   int64
	DiskMB     int64
	GPUs       int64
}

// Fits reports whether need fits into r.
func (r Resources) Fits(need Resources) bool {
	return need.MilliCores <= r.MilliCores && need.MemoryMB <= r.MemoryMB &&
		need.DiskMB <= r.DiskMB && need.GPUs <= r.GPUs
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.MilliCores + o.MilliCores, r.MemoryMB + o.MemoryMB, r.DiskMB + o.DiskMB, r.GPUs + o.GPUs}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.MilliCores - o.MilliCores, r.MemoryMB - o.MemoryMB, r.DiskMB - o.DiskMB, r.GPUs - o.GPUs}
}

func (r Resources) String() string {
	return fmt.Sprintf("cores=%g memory=%dMB disk=%dMB gpus=%d", float64(r.MilliCores)/1000, r.MemoryMB, r.DiskMB, r.GPUs)
}

// Task is what the core needs to know of a task to schedule it. The rest of
// the spec (command, environment, files' names) stays with the caller.
type Task struct {
	ID           TaskID
	Resources    Resources
	Priority     int32    // higher runs first; equal priorities run in submission order
	Retries      int32    // further attempts allowed after a worker is lost (or, with RetryOnError, after a failure)
	Inputs       []FileID // files that must be available before the task runs
	Outputs      []FileID // files the task produces; available once it succeeds
	Lib          LibID
	Role         Role // a plain task, or a call of library Lib's functions
	RetryOnError bool
	// After lists tasks that must succeed before this one runs: tasks of
	// the same TasksSubmitted batch (in any order), or of an earlier batch
	// that the core has not forgotten. One that has succeeded is satisfied;
	// one that fails (or was rejected, forgotten or never submitted) ends
	// this task with InputMissing and a reason naming it. Orderings within
	// a batch that form a cycle end the tasks on it the same way.
	After []TaskID
	// UnplaceableTimeout: how long the task may wait, ready, while no
	// connected worker could run it (see Unplaceable) before it ends with
	// ResourceExceeded. 0 waits for ever. The core measures it with Tick.
	UnplaceableTimeout time.Duration
	// AtMostOnce: the task's effect must not be applied twice, so it is
	// never dispatched twice. Where an attempt's fate is unknown (its
	// worker was lost, it was handed back or killed by its worker, its
	// library crashed, or it was dispatched before a restart and not
	// adopted), the task goes to unknown (see Unknown) and waits for a
	// Reconcile. Any other end is final: Retries apply only to inputs that
	// could not be had before the command started (InputMissing).
	AtMostOnce bool
	// Effectful: the task has an effect beyond its outputs (idempotent or
	// at-most-once), so it must never read a value that a replay could
	// change: the commit barrier (see checkpoint.go) holds it until each
	// nondeterministic input it reads has a checkpointed copy.
	Effectful bool
	// Nondeterministic: running the task again may give other outputs.
	// The zero value, deterministic, is the core's: the caller maps the
	// API's default (nondeterministic command tasks) onto it.
	Nondeterministic bool
	// Keep: how the task's produced outputs are kept against the loss of
	// workers (see checkpoint.go); Replicas goes with KeepReplicate.
	Keep     Keep
	Replicas int32
}

// Keep says how a task's produced outputs survive the loss of workers.
type Keep uint8

// Ways to keep outputs. The zero value is lineage.
const (
	// KeepLineage: a lost output is made again by running its producer.
	KeepLineage Keep = iota
	// KeepReplicate: Task.Replicas copies on distinct workers (the core
	// places the extra copies as transfers); lineage if all are lost.
	KeepReplicate
	// KeepCheckpointSync: the worker sends each output to the manager's
	// checkpoint store before the task counts as done (as FileSpec.Upload).
	KeepCheckpointSync
	// KeepCheckpointAsync: once the task is done, the core asks for a copy
	// of each output in the checkpoint store (Checkpoint) and counts it
	// there once the caller says so (CheckpointCommitted).
	KeepCheckpointAsync
)

var keepNames = [...]string{"lineage", "replicate", "checkpoint sync", "checkpoint async"}

func (k Keep) String() string {
	if int(k) < len(keepNames) {
		return keepNames[k]
	}
	return fmt.Sprintf("keep(%d)", k)
}

// LibID names an installed library.
type LibID uint32

// Role says what a task is to the core.
type Role uint8

// Roles. Instances are made by the core itself (see LibraryInstalled).
const (
	Plain    Role = iota
	Call          // a function call: runs in a slot of an instance of Lib
	Instance      // a running library process of Lib, made by the core
)

// FileKind says where a file comes from, which decides how a task's worker
// gets it.
type FileKind uint8

// File kinds.
const (
	External FileKind = iota + 1 // uploaded by the client to the manager: staged from there or a peer, unless Inline
	Origin                       // a URL: fetched from its origin, or from peers that have it
	Produced                     // written by a task: from peers that hold it, or the manager
	Derived                      // made on the worker from another file (an unpacked archive)
)

// Level says how long workers keep a file in their cache, and so when the
// core unlinks it from them (see Unlink). The zero value, a file never
// declared with a level, is never unlinked.
type Level uint8

// Cache levels.
const (
	LevelTask     Level = iota + 1 // until no unfinished task reads it (and, with FileSpec.Depth, its readers' outputs)
	LevelWorkflow                  // until every session that declared it ended and no unfinished task reads it
	LevelWorker                    // for the worker's life: never unlinked by the core
	LevelForever                   // across worker restarts: never unlinked by the core
)

// FileSpec declares a file to the core. Kind 0 declares only the file's
// Level and session (see FilesDeclared), leaving the rest as it was: for a
// file at the manager's store, told with its size when a task reads it, or
// for a file declared again.
type FileSpec struct {
	ID    FileID
	Kind  FileKind
	Level Level // 0 leaves it as it was
	// Depth: LevelTask: keep the file until the readers of its readers,
	// Depth levels down, are done too (see prune), so that losing a file
	// later re-runs at most Depth producers back. Set with Level.
	Depth    int32
	From     FileID // Derived: the file it is made from
	Replicas int32  // Produced: copies to keep on distinct workers (0 means 1)
	Size     int64  // when known
	// Inline: External: small enough to travel from the manager inside the
	// Run message, so never staged (see Dispatch.Inline).
	Inline bool
	// Upload: Produced: its producer sends it to the manager too, and the
	// worker keeps a copy only if an unfinished task reads it when the
	// producer is dispatched (see Dispatch.Keep). A declared Produced file
	// without Upload is always kept; an output never declared never is.
	Upload bool
}

// OutputInfo is what a worker reports of an output it produced.
type OutputInfo struct {
	File    FileID
	Size    int64
	Kept    bool // in the worker's cache: a replica
	Manager bool // at the manager's store
	Inline  bool // Manager: small enough to travel inside the Run message (see FileSpec.Inline)
}

// CachedFile is a file a worker holds when it joins.
type CachedFile struct {
	File FileID
	Size int64
}

// SourceKind says where a fetch gets a file.
type SourceKind uint8

// Source kinds.
const (
	FromManager SourceKind = iota + 1
	FromPeer
	FromOrigin
	FromDerive // made on the worker itself from another cached file
	// FromCache: the worker's own cache: a claim of a copy the core
	// released to its eviction (see pins.go). It moves no bytes.
	FromCache
)

var sourceNames = [...]string{"", "manager", "peer", "origin", "derive", "cache"}

func (k SourceKind) String() string {
	if int(k) < len(sourceNames) && k != 0 {
		return sourceNames[k]
	}
	return fmt.Sprintf("source(%d)", k)
}

// Source is where a fetch gets a file.
type Source struct {
	Kind SourceKind
	Peer WorkerID // FromPeer
	From FileID   // FromDerive
}

// Kind says how an attempt or a task ended.
type Kind uint8

// The kinds of ending. The zero value is not a valid kind.
const (
	Success Kind = iota + 1
	Failed
	TimedOut
	ResourceExceeded
	InputMissing
	WorkerLost
	Cancelled
)

var kindNames = [...]string{"", "success", "failed", "timed out", "resource exceeded", "input missing", "worker lost", "cancelled"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Outcome is how an attempt ended, as a worker reports it.
type Outcome struct {
	Kind     Kind
	ExitCode int32
	Message  string
}

// State is where a task is in its life.
type State uint8

// Task states.
const (
	Waiting  State = iota + 1 // for input files
	Ready                     // queued for a worker
	Running                   // dispatched to a worker
	Finished                  // done, for good
	Staging                   // placed on a worker, its inputs being brought there
)

var stateNames = [...]string{"", "waiting", "ready", "running", "finished", "staging"}

func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}
