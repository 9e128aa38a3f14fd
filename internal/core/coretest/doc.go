// Package coretest drives the scheduler core (package core) in seeded
// simulations and benchmarks it.
//
// Run plays a random but reproducible history against a core: fake workers
// with random resources join, drain, leave and crash; tasks with random
// shapes, priorities, retries and file dependencies are submitted, finish
// with random outcomes and are cancelled; stale and duplicate reports are
// injected. After every Step it checks the actions against an independent
// model built from the actions alone (no over-commit, no GPU given twice, one
// Done per task, attempts increase, inputs are ready before a dispatch, every
// attempt ends the way the event says it should). At the end it stops the
// faults, adds workers big enough for every task and runs until every task
// has its Done. A failure names the seed and the step, so that
//
//	go test ./internal/core -run 'TestSimulation$/faulty' -seed 7
//
// replays it exactly (add -simtrace to print every event and its actions).
//
// With the data fields of Config set, tasks also write temp files (some
// replicated) and read URLs and archives unpacked on the worker, all
// declared with FilesDeclared. The fake workers answer Fetch actions and
// keep their own record of the files they really hold (from transfers,
// task outputs and the cache they rejoin with); they drop replicas, fail
// transfers and are lost. The model then also checks, from the actions and
// those holdings: a task is dispatched only where its staged inputs really
// are; a fetch names a source that has the file and stays within the
// limits per peer, manager and origin; the core's view of each worker's
// files and transfers is the real one; Rerun only follows a Done success of
// a file that is really gone, Recreated only follows a Rerun, and FileLost
// only reports a file no worker holds, once. After the run settles, a probe
// task reads each temp file that no worker holds: it must be recreated, or
// fail with the reason of the file's FileLost. Then every temp file a task
// read is available, lost with a reason its waiting readers failed with, or
// was never produced; and no transfer is left in flight.
//
// With Config.Libraries set, the run installs libraries (with random
// slots, Max, Eager, EveryWorker, resources, and inputs that tasks produce;
// some always fail to start, others now and then) and submits calls mixed
// with plain tasks. The fake workers host the instances the core starts:
// each reports InstanceReady or a set-up failure, runs the calls dispatched
// to it, ends with "stopped" after a Stop, and crashes (failed, or over its
// memory) with the calls it runs; libraries are installed again. The model
// then also checks, from the actions alone: no instance runs more calls than
// its slots; a call goes only to a ready, not stopping, instance of its
// library on the worker named (not draining); instances hold their
// library's resources and GPUs, and a library has at most Max of them; only
// idle instances are stopped; a LibraryBroken comes once per install and
// names a start failure, and the calls that wait (or come later) fail with
// its reason at once; Eager and EveryWorker instances start when there is
// room; every call of an instance that ends is retried or done. At the end
// every call has its Done, those of a library that never starts failed
// with the set-up failure it broke with, and only idle, ready instances are
// left.
//
// With Config.KeepFraction set (in a data run), tasks get a random Keep
// (lineage, replicas, a checkpoint with the report or after it), and some
// are nondeterministic or have effects; the harness answers the core's
// Checkpoint actions, committed or failed, some late (after the worker lost
// the file). The model then also checks (ckpt.go): a task with effects is
// dispatched only when each input a nondeterministic task wrote has a copy
// at the manager (the commit barrier); no Rerun names a checkpointed file
// (lineage stops there); a task kept by a sync checkpoint is done only with
// its outputs at the manager; a Checkpoint names a ready file that needs
// one, from a worker that holds it, one at a time; a Barred names a waiting
// task with effects and an uncommitted input, whose checkpoint is asked
// for; a commit counts exactly when it answers the file's last Checkpoint
// from a worker that still holds it. At the end, every async-kept output a
// worker holds is checkpointed.
//
// With Config.UnplaceableFraction set (and in every run), the model also
// checks the Unplaceable actions: each names queued tasks (or calls) that no
// open worker could run, even idle, with a reason that appears, changes or
// clears, never the same twice; one action tells the tasks told together,
// so no two in a row have the same reason (Stats.UnplaceableActions counts
// them, Stats.Unplaceable the tasks); a task told so is told it cleared once an
// open worker could run it; every ready task no open worker could run was
// told (checked with the placement check); and a Tick, each one second on
// the simulated clock, ends exactly the tasks unplaceable for their
// UnplaceableTimeout, counted from the first Tick after they were told.
//
// With Config.Ahead set (core.SetAhead), the fake workers hold the tasks
// dispatched ahead in order, start the first as soon as it fits beside what
// runs, end a held task that is killed at once (cancelled, never started:
// the next held one starts if it fits), and hand them back when they drain,
// as real workers do; one in four random workers is an older one that says
// it holds none (WorkerJoined.HoldsAhead). The model checks each held
// dispatch (a plain task without GPUs that is not at-most-once, on a worker
// that holds tasks, could run it, hosts no library instance, holds fewer
// than Ahead, and runs or holds no task that needs less than it; and, where
// it sees every reservation, no open worker had room for it, those that
// hold tasks included, once each started what the step freed there), each
// Started (one, for an attempt dispatched ahead there), that the core's
// list of held tasks on
// each worker (Core.Ahead) is the worker's, in order, after every step, and
// every invariant above with held tasks lost, cancelled and handed back.
// A Tick may top up held lists (Stats.TickHeld), never place a task that
// fits a free core.
//
// RunGraph plays one task graph (the graph of trellis bench dag, map/reduce,
// layered, a tree reduction, all-to-all) on a fixed set of workers with no
// faults, on a simulated clock with seeded task durations and transfers
// that take time in proportion to their size, under a placement policy
// (core.SetPlacement), and returns the bytes moved between workers and the
// makespan: two runs of one GraphConfig differ only in the policy, which is
// how the transfer-volume invariant of graph-aware placement is checked.
// Independently of the core, it checks that each dispatch finds its inputs
// on its worker and each fetch names a peer that holds the file. With
// GraphConfig.Ahead its workers hold tasks dispatched ahead and start them
// as cores free, and no dispatch may over-commit one.
//
// BenchCore measures the core alone: decisions per second, memory per queued
// task, and how the cost of a decision grows with workers and queued tasks.
// It needs no *testing.T or *testing.B, so the CLI can call it.
package coretest
