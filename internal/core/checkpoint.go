package core

import "slices"

// Checkpoints and the commit barrier (RECOVERY.md, rules 3, 5 and 6).
//
// A task's Keep says how its produced outputs survive the loss of workers:
// by lineage (its producer runs again), by Replicas copies on distinct
// workers, or by a checkpoint: a copy in the caller's checkpoint store (the
// manager's --checkpoint-dir), which the core counts as a copy at the
// manager (fileEntry.manager). A checkpoint is made before the task counts
// as done (KeepCheckpointSync: the worker sends it with its report, as an
// Upload output) or after (KeepCheckpointAsync: the core asks for it with
// Checkpoint, and the caller answers CheckpointCommitted once the copy is
// durable, or CheckpointFailed).
//
// A checkpointed file is never lost: dropReplica and lose recreate only
// files with no copy at the manager, so lineage stops at it (the
// durability frontier), and pruning may drop its worker copies.
//
// The commit barrier: a nondeterministic output (its producer's
// Task.Nondeterministic) may change when its producer runs again, so an
// effectful task (Task.Effectful or AtMostOnce) must not read it before
// it is checkpointed: such a consumer waits for the file as for a missing
// input until CheckpointCommitted, and the core asks for the checkpoint
// itself when the producer's Keep did not. So an effect is never applied
// with a value that a replay could replace, and a lost uncommitted value
// (rule 5) is made again before any effectful consumer has read it; the
// consumers that read it without effects and have not ended lose their
// copy with it, and run again on the new value.

// CheckpointCommitted: the checkpoint of File the core asked for
// (Checkpoint) is durable in the checkpoint store; or, in a replay, a
// checkpoint the journal recorded. Tasks may fetch the file from the
// manager from now on. A commit of a file being made again (its copies
// were lost before the commit) changes nothing.
type CheckpointCommitted struct {
	File FileID
	// Worker: the worker the Checkpoint named; a commit from another
	// (asked before it was lost) changes nothing. 0: a replay.
	Worker WorkerID
	Size   int64
	Inline bool // small enough to travel inside Run messages (see FileSpec.Inline)
}

// CheckpointFailed: the checkpoint of File could not be made (its worker
// could not send it). The core asks again, from a worker that holds it, at
// the next Tick.
type CheckpointFailed struct {
	File   FileID
	Worker WorkerID // the worker the Checkpoint named: a stale failure changes nothing
	Why    string
}

// Checkpoint: copy File from Worker's cache to the checkpoint store, and
// report CheckpointCommitted once the copy is durable (or
// CheckpointFailed). The core asks for one checkpoint of a file at a time.
type Checkpoint struct {
	File   FileID
	Worker WorkerID
}

// Barred: Task, which has effects, waits for File, the output of a
// nondeterministic task, to be checkpointed before it may run (the commit
// barrier), for the caller to tell its client. A Checkpoint of File
// follows, unless one was asked already.
type Barred struct {
	Task TaskID
	File FileID
}

// barredRead is a barred task that began to wait for a ready file.
type barredRead struct {
	task TaskID
	file *fileEntry
}

func (CheckpointCommitted) isEvent() {}
func (CheckpointFailed) isEvent()    {}
func (Checkpoint) isAction()         {}
func (Barred) isAction()             {}

// barred reports whether t may not read an uncommitted nondeterministic
// file (see above): an effectful task or call (library instances are
// neither).
func (t *task) barred() bool {
	return (t.spec.Effectful || t.spec.AtMostOnce) && t.spec.Role != Instance
}

// uncommitted reports whether e holds a value that running its producer
// again may change, with no checkpointed copy.
func (e *fileEntry) uncommitted() bool {
	return e.kind == Produced && e.nondet && !e.manager
}

// keepOutputs applies t's Keep to its outputs, once they are claimed.
func (c *Core) keepOutputs(spec *Task) {
	for _, f := range spec.Outputs {
		e := c.files.files[f]
		if e == nil {
			continue
		}
		e.nondet, e.ckpt = spec.Nondeterministic, spec.Keep
		switch spec.Keep {
		case KeepReplicate:
			e.want = max(e.want, spec.Replicas, 1)
		case KeepCheckpointSync:
			if e.keep == keepAlways {
				e.keep = keepIfRead // it goes to the manager: a worker copy only while read
			}
		}
	}
}

// produced marks outputs ready, and releases the tasks that waited for
// them (see wake).
func (c *Core) produced(outputs []FileID) {
	for _, f := range outputs {
		if e := c.files.files[f]; e != nil {
			e.state = fileReady
			c.wake(e)
		}
	}
}

// wake releases the tasks waiting for a ready file e, but for the barred
// ones while e is uncommitted: they go on waiting, and e is checkpointed.
func (c *Core) wake(e *fileEntry) {
	if e.state != fileReady || len(e.waiters) == 0 {
		return
	}
	waiters := e.waiters
	e.waiters = nil
	for _, id := range waiters {
		t := c.tasks[id]
		if t == nil || t.state != Waiting {
			continue
		}
		if t.barred() && e.uncommitted() {
			e.waiters = append(e.waiters, id)
			c.emit(Barred{Task: id, File: e.id})
			continue
		}
		if t.missing--; t.missing == 0 {
			c.makeReady(t)
		} else if !c.naive && !c.noPrefetch {
			c.prefetchFor = append(c.prefetchFor, id) // its other producers may all run on one worker
		}
	}
	if len(e.waiters) > 0 {
		c.checkpoint(e)
	}
}

// checkpoint asks for a checkpoint of e from a worker that holds it,
// unless e has a copy at the manager or one is asked for already. With no
// worker holding it (a replay: its copies went with the workers), the next
// Tick makes it again by lineage (see retryCheckpoints), unless a
// replayed CheckpointCommitted comes first; produced then asks again.
func (c *Core) checkpoint(e *fileEntry) {
	if e.manager || e.ckptFrom != 0 || e.state != fileReady || e.kind != Produced {
		return
	}
	for _, wid := range e.replicas {
		if c.workers[wid] != nil {
			e.ckptFrom = wid
			c.emit(Checkpoint{File: e.id, Worker: wid})
			return
		}
	}
	c.ckptRetry = append(c.ckptRetry, e.id)
}

// wantsCheckpoint reports whether e is to be checkpointed: by its
// producer's Keep, or for a barred task waiting for it; not once its level
// has expired (retire unlinks every copy: asking another holder as each
// goes would name a copy about to be unlinked).
func (e *fileEntry) wantsCheckpoint() bool {
	return !e.manager && !e.retired && (e.ckpt == KeepCheckpointAsync || e.state == fileReady && len(e.waiters) > 0)
}

// checkpointSourceLost: the worker e's checkpoint was asked from no
// longer holds it: ask another.
func (c *Core) checkpointSourceLost(w WorkerID, e *fileEntry) {
	if e.ckptFrom != w {
		return
	}
	e.ckptFrom = 0
	if e.wantsCheckpoint() {
		c.checkpoint(e)
	}
}

func (c *Core) checkpointCommitted(ev CheckpointCommitted) {
	e := c.files.files[ev.File]
	if e == nil || e.kind != Produced || e.state != fileReady || e.manager {
		return // unknown, being made again, or committed already
	}
	if ev.Worker != 0 && ev.Worker != e.ckptFrom {
		return // asked of a worker lost since: the value may be an old one
	}
	e.ckptFrom = 0
	e.manager, e.inline = true, ev.Inline
	if ev.Size > 0 {
		e.size = ev.Size
	}
	c.committed++
	c.wake(e)
}

func (c *Core) checkpointFailed(ev CheckpointFailed) {
	e := c.files.files[ev.File]
	if e == nil || e.ckptFrom == 0 || e.ckptFrom != ev.Worker {
		return
	}
	e.ckptFrom = 0
	c.ckptRetry = append(c.ckptRetry, e.id)
}

// retryCheckpoints asks again, at a Tick, for the checkpoints that
// failed or found no copy; a file still wanted with no copy left is made
// again (lose: only if a task needs it).
func (c *Core) retryCheckpoints() {
	retry := c.ckptRetry
	c.ckptRetry = nil
	for _, f := range retry {
		e := c.files.files[f]
		if e == nil || !e.wantsCheckpoint() || e.ckptFrom != 0 || e.state != fileReady {
			continue
		}
		if slices.ContainsFunc(e.replicas, func(w WorkerID) bool { return c.workers[w] != nil }) {
			c.checkpoint(e)
		} else {
			c.lose(e)
		}
	}
}

// checkpointOutputs asks for the checkpoints of t's outputs that its Keep
// makes after it is done.
func (c *Core) checkpointOutputs(t *task) {
	if t.spec.Keep != KeepCheckpointAsync {
		return
	}
	for _, f := range t.spec.Outputs {
		if e := c.files.files[f]; e != nil {
			c.checkpoint(e)
		}
	}
}

// Checkpointed reports whether f has a checkpointed copy (or any copy at
// the manager).
func (c *Core) Checkpointed(f FileID) bool {
	e := c.files.files[f]
	return e != nil && e.manager
}
