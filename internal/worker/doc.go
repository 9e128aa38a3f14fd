// Package worker is the trellis worker: it connects out to a manager, offers
// its resources, runs what it is assigned in private sandbox directories,
// and reports how each attempt ended.
//
// Ownership: Run owns the connection and every goroutine the worker starts;
// it returns only after they have exited. Each connection is a session: a
// state struct owned by one loop goroutine, driven by typed events (the
// manager's messages; the ends of attempts, fetches and library instances;
// heartbeat, hold and drain timers). The I/O runs in goroutines that feed
// events back: one reads the manager's messages, one sends (a connect
// stream allows one sender), and each attempt, fetch, upload and library
// instance has its own (attempts' goroutines are reused: runners.go).
//
// Shutdown is apart from kill: Drain stops taking work and lets running
// attempts finish (until DrainTimeout, after which they are killed and
// handed back), while cancelling Run's context kills and hands back at
// once. Either way the manager is told, so it is never confused about what
// ran where. A worker that loses its manager kills what it runs (the manager
// has queued those tasks again) and reconnects as a new worker.
//
// Runs sent ahead (pb.Run.Ahead, ahead.go) wait in the session in the
// order they came and start, first first, once they fit beside the attempts
// running, as the manager's core expects; a drain hands them back, a Kill
// ends one cancelled without starting it, and a broken connection drops
// them (the manager runs them again).
//
// The worker never imports the manager or the core: it speaks only the
// wire protocol of package proto.
package worker
