package proto

import "time"

// The worker's connection to the manager checks itself on both ends: over
// HTTP/2 with its pings, one once nothing has come for PingIdle, the
// connection closed when its answer has not come in PingTimeout; framed
// (package framed), with the manager's Ping message on the same terms
// (the liveness sweep) and the worker's TCP keepalives after PingIdle. So
// a peer whose host dies or whose link is cut is noticed within about
// PingIdle + PingTimeout (55 s), and a heartbeat (every 30 s by default)
// is left to catch a session that stopped while its process still answers.
//
// PingIdle is longer than the default heartbeat, so that a worker that
// heartbeats is never pinged by the manager, and an idle worker pings its
// manager once every 45 s. Each ping is a frame written and one read on
// each end: with 15 s (as before) an idle worker pinged twice per
// heartbeat and the manager pinged it once, six frames on the manager's
// side for the heartbeat's one, and perf put more than a third of the
// idle manager's CPU at 10,000 workers in them (docs/benchmarks.md,
// "Capacity, eleventh part"). Clients keep 15 s: they are few, and their
// sessions' grace counts from their loss.
const (
	PingIdle    = 45 * time.Second
	PingTimeout = 10 * time.Second
)
