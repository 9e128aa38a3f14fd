package worker

import (
	"os"
	"runtime"
)

// A worker's own work per task (the fork, the reap, the report, the next
// run's sandbox) is a chain of short steps, each handing the next to
// another goroutine. With more Ps than the cores it offers, each hand-off
// woke another thread to steal the readied goroutine, and the chain paid
// a thread wake-up at most steps: one 1-core worker over TCP on a 2-core
// machine ran `bench tasks` at 0.88–0.90 of the spawn ceiling with 2 Ps
// and 0.94–0.95 with 1, its CPU per task 0.103 ms against 0.080
// (docs/benchmarks.md). So a worker runs Go code on as many threads as
// the cores it offers, rounded up.

// ProcsFor returns the Ps (GOMAXPROCS) for a worker offering milliCores,
// given the runtime's default procs: the cores rounded up, at least 1 and
// at most procs.
func ProcsFor(milliCores int64, procs int) int {
	n := int((milliCores + 999) / 1000)
	return max(1, min(n, procs))
}

// TuneProcs sets GOMAXPROCS to ProcsFor the cores the worker offers,
// unless GOMAXPROCS is set in the environment (the user's choice stands).
// It returns the Ps Go code runs on from now. Call it once, before the
// worker starts: it is the process's setting, for a process that runs one
// worker (not an embedded cluster's, whose manager shares the process).
func TuneProcs(milliCores int64) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	n := ProcsFor(milliCores, runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(n)
	return n
}
