package proto

import "time"

// The worker's connection to the manager checks itself with HTTP/2 pings,
// on both ends: one goes once nothing has come for PingIdle, and the
// connection is closed when its answer has not come in PingTimeout. So a
// peer whose host dies or whose link is cut is noticed within PingIdle +
// PingTimeout (55 s), and a heartbeat (every 30 s by default) is left to
// catch a session that stopped while its process still answers.
//
// PingIdle is longer than the default heartbeat, so that a worker that
// heartbeats is never pinged by the manager, and an idle worker pings its
// manager once every 45 s: each ping is a read and a write on each end,
// and with 15 s (as before) the pings were most of an idle manager's CPU
// at 10,000 workers, twice to three times its heartbeats (docs/
// benchmarks.md, "Capacity, eleventh part"). Clients keep 15 s: they are
// few, and their sessions' grace counts from their loss.
const (
	PingIdle    = 45 * time.Second
	PingTimeout = 10 * time.Second
)
