// Package manager is the network shell around the scheduler core.
//
// One port serves everything: the connect RPC service (clients' Submit,
// Watch, Ack, Cancel and Status, workers' Work stream), the file store under
// /files/, and /healthz. Every request but /healthz must carry the shared
// secret, checked from its headers before a byte of its body is read, and
// each RPC's request is bounded (edge.go); connections on which no request
// carried the secret are bounded in number (package gate).
//
// Ownership and ordering: one goroutine (loop) owns the core and what the
// shell keeps around it (task records until the core forgets them, worker
// sessions, file declarations). Handlers send it events on a channel and
// wait for replies where they need one. Client sessions (package clients:
// numbered events until acknowledged, task keys) and the published
// Snapshot are read by handlers without entering the loop. It executes
// the core's actions in order; sending to a worker never blocks it: each
// worker session has a bounded outbound queue and a worker that lets it
// overflow is disconnected. Staged task outputs are committed to the store
// only for an attempt whose success the core will count (core.Accepts), so
// a stale or duplicate attempt never replaces a delivered file; the commit
// comes before the core sees the report, and one that fails makes the
// report a failure, so the core never counts a success the store lacks.
//
// A client session ends when its client ends it (EndSession) or has been
// away, with no Watch stream of it open, for Config.ClientGrace (package
// clients decides which, the loop asks each tick): the loop then cancels
// the session's unfinished tasks (clients.go).
//
// With Config.StateDir the loop journals submits, installs, cancels,
// session ends and each task's end (package journal; journal.go says
// which effect waits for which record), replays the journal at start into
// the same code paths, and takes a new epoch; the run ID stays the same.
//
// Submit and InstallLibrary look their inputs up at the store in the
// handler, before the event reaches the loop, which learns of the store only
// through events. The manager never writes into a request, nor into its
// records after it built them: the record of a task (or library) is its own
// copy, built once at submit with what the submit decides (inline inputs'
// size and digest, outputs' upload and cache levels), and each dispatch
// sends a spec built for it (dispatch.go) with what the core decided for
// that dispatch (inline inputs, the outputs the worker keeps). Decisions
// about tasks and files are the core's: "after" orderings (core.Task.After),
// who produces a file (Core.Producer), which cached files workers delete
// (core.Unlink).
package manager
