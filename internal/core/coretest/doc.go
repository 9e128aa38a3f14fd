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
// replays it exactly.
//
// BenchCore measures the core alone: decisions per second, memory per queued
// task, and how the cost of a decision grows with workers and queued tasks.
// It needs no *testing.T or *testing.B, so the CLI can call it.
package coretest
