// Package core is trellis's scheduler as a deterministic state machine.
//
// The core owns the task queue, resource accounting on workers, placement,
// retries, and the catalog of files that tasks produce and consume. It does no
// I/O, starts no goroutines and reads no clock: it keeps no timers of its
// own (Tick and its Now are the caller's clock), and IDs are chosen by the caller. The same sequence of Step calls
// therefore always yields the same actions, which is what lets a seeded
// simulation (package coretest) drive it with many fake workers and faults,
// and what lets a journal replay it after a restart.
//
// Contract:
//   - One goroutine owns a Core. It is not safe for concurrent use.
//   - Step(ev) applies ev and returns the actions the caller must
//     execute, in order. The returned slice is reused by the next Step call:
//     consume it (or copy it) before stepping again.
//   - Every dispatch gets a new attempt number. A TaskFinished event whose
//     (task, attempt, worker) is not the one the core dispatched is stale:
//     it changes nothing and yields a StaleResult action.
//   - Resources are never over-committed: the sum of the resources of the
//     tasks running on a worker never exceeds what the worker offered.
//   - Every submitted task ends with exactly one Done action.
//   - Tasks that become ready during one Step are placed at its end, highest
//     priority first; a worker that frees capacity takes the best queued
//     task that fits it, or one of the same priority that is better placed
//     there (families.go), but never leaves it idle.
//
// Files the core has never seen (content inside the task) count
// as available and are never staged. A file named as an output of a submitted task is
// pending until that task succeeds; a consumer waits for it, and fails with
// InputMissing if its producer fails for good. A file has one producer: a
// task that claims an output another task claimed ends at once with a Done
// Failed.
//
// Recovery (TaskRecovered): a manager that restarts replays its journal
// into a new core: the batches submitted, then each task's end, in the
// order they happened, before any worker joins. A recovered task ends
// through the same path as a live report, so the replay yields the same
// Dones in the same order (the worker aside) and releases or fails the same
// consumers; it is not run again, unless its output lived only in workers
// and a task still needs it (lineage: Rerun, then Recreated).
//
// Forgetting: a Done is the last the caller hears of a task, unless it is
// Retained (it succeeded with outputs that live only in workers, and may run
// again to recreate them); a Forget then says when the core lets it go.
//
// Orderings (Task.After): a task runs only after every task its After names
// has succeeded. It may name tasks of its own batch, in any order, and
// tasks of earlier batches that the core has not forgotten (one that is
// still live, or one that succeeded and is retained for lineage, which
// counts as succeeded). If one of them fails for good (or was
// rejected, is unknown or forgotten, or the orderings within the batch
// form a cycle), the task ends with InputMissing and a reason naming it,
// and so, transitively, do the tasks after it and those reading its outputs.
//
// Data (see FilesDeclared): every file the core knows is staged: uploads at
// the manager (External), produced files, URLs (Origin) and unpacked
// archives (Derived), so that the catalog knows every copy on a worker.
// The exception is a small file at the manager (FileSpec.Inline,
// OutputInfo.Inline): it travels inside the dispatch (Dispatch.Inline), up
// to MaxInlinePerDispatch bytes per task. A task placed on a worker
// holds its resources there while Fetch actions bring its inputs; it is
// dispatched once every input is on that worker (or travels inline). The core picks each
// fetch's source (the least-loaded peer that holds a replica, then the
// manager or the origin), bounds concurrent fetches per source, retries
// elsewhere and backs off from failing peers; Tick is its clock for that.
// Placement prefers the worker that holds the most bytes of a task's
// inputs and whose cache has room for the rest (see cacheFits); it
// co-assigns the producers whose outputs one consumer reads, and never
// leaves a core idle for it (see families.go). When the last copy of a produced file is lost while an unfinished
// task reads it, its producer runs again (Rerun, then Recreated; never a
// second Done), recursively; a file that cannot be recreated ends with
// FileLost, and its readers with InputMissing and the reason.
//
// Levels (see Level, levels.go): the core decides when workers drop cached
// files. A task-level file is unlinked (Unlink) from every worker holding
// it when the last unfinished task that reads it ends; a workflow-level
// file once every session that declared it (FilesDeclared.Session) has
// ended (SessionEnded) and no unfinished task reads it. Worker and forever
// levels are never unlinked. The core forgets an unlinked replica when it
// emits the Unlink, as on FilesDropped; a later reader stages the file
// again, or has its producer run again. A Dispatch names the outputs its
// worker keeps (Dispatch.Keep): temp files always, outputs sent to the
// manager only while a task reads them. Stats.Moved counts the bytes
// fetches brought to workers, by source; WorkerInfo.TasksDone the tasks
// whose last attempt ran on each worker.
//
// Pruning (levels.go): a task-level file with a Depth N stays until, N
// levels down, no output of a task that read it is read by an unfinished
// task; that bounds how far back lineage re-runs producers. Stats.Pruned
// and WorkerInfo.Pruned count the bytes unlinked.
//
// Pins (pins.go): a worker evicts only the copies the core released. A
// Fetch holds its file on its worker until a Release names it; each task
// placed on a worker pins its inputs there until it leaves; a fetched copy
// whose last pin goes is released at the end of the step; a task placed
// where its input is a released copy claims it first (Fetch FromCache).
// So no task is dispatched with an input its worker may have evicted.
//
// A full cache (full.go): TaskReturned with CacheFull parks the task, not
// as a failure (Stats.HandedBack), as does a worker whose cache has no
// room for a task's inputs (cacheFits, before any fetch), until a cache
// frees space, a worker joins, or a Tick finds nothing running; a Tick
// that finds the caches deadlocked unlinks copies that lineage recreates
// (Stats.EvictedForSpace). It fails with ResourceExceeded
// only when no connected worker could ever hold its output.
//
// Unplaceable tasks (see unplaceable.go): a queued task (or call) that no
// connected, non-draining worker could run even if it were idle is told so
// by an Unplaceable action with the reason, when the reason appears or
// changes, and with none when it clears; never on every Tick. One action
// tells every task of a shape judged at once, or queued in a row, not one
// per task: a batch of 100,000 tasks submitted with no worker connected is
// told in one. Tick.Now is the core's only clock: a task unplaceable for
// its UnplaceableTimeout, counted from the first Tick after it was told,
// ends with ResourceExceeded.
//
// Checkpoints and the commit barrier (checkpoint.go): Task.Keep says how a
// task's outputs survive lost workers (lineage, Replicas copies, or a
// checkpoint: a copy at the manager, made with the report (sync) or asked
// for with Checkpoint after the task's end and counted on
// CheckpointCommitted (async)). A checkpointed file is never recreated,
// which bounds lineage. An effectful task (Effectful, AtMostOnce) waits
// until each nondeterministic input it reads is checkpointed; the core
// asks for that checkpoint itself.
//
// Tasks held ahead (ahead.go, SetAhead): with every core busy, a worker
// may be sent up to N plain tasks beyond its free resources (Dispatch.Ahead)
// while no open worker has room for them. It holds them in the order sent
// and starts the first once it fits; the core gives the resources that free
// there to its held tasks first, in the same order, and places nothing else
// there while it holds any, so both agree on what runs (Ahead lists them).
// A held task is Running to everything else: its Done, its worker's loss,
// its Kill.
package core
