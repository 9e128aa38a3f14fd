// Package manager is the network shell around the scheduler core.
//
// One port serves everything: the connect RPC service (clients' Submit,
// Watch, Cancel and Status, workers' Work stream), the file store under
// /files/, and /healthz. Every request must carry the shared secret.
//
// Ownership and ordering: one goroutine (loop) owns the core and all
// bookkeeping around it (task specs, sessions, mailboxes). Handlers send it
// events on a channel and wait for replies where they need one. It executes
// the core's actions in order; sending to a worker never blocks it: each
// worker session has a bounded outbound queue and a worker that lets it
// overflow is disconnected. Staged task outputs are committed to the store
// only when the core accepts the attempt that produced them, so a stale or
// duplicate attempt never replaces a delivered file. The specs stored at
// submit and install are never changed after: each dispatch sends a spec
// built for it (dispatch.go), with what the core decided for that dispatch
// (inline inputs, the outputs the worker keeps). Which cached files workers
// delete is the core's decision too (core.Unlink).
package manager
