package worker

import (
	"sync"
	"sync/atomic"
	"time"
)

// runners are the goroutines that run attempts: a runner that finished
// one waits a while for the next, so that a busy worker does not start a
// goroutine per attempt and grow its stack anew each time (an attempt's
// stack, through the sandbox and the fork, grows to several KB by
// copying: runtime.copystack was ~4% of the worker's CPU in `trellis bench
// capacity`, docs/benchmarks.md "Capacity, tenth part", measured while
// shells still went through os/exec).
type runners struct {
	work chan func()   // unbuffered: a send succeeds only when an idle runner takes it
	stop chan struct{} // closed by close: idle runners exit
	once sync.Once
	wg   sync.WaitGroup // every runner
	// started counts the runners ever started, live those not exited
	// (for tests).
	started, live atomic.Int64
}

// runnerIdle is how long a runner waits for the next attempt before it
// exits.
const runnerIdle = 10 * time.Second

func newRunners() *runners {
	return &runners{work: make(chan func()), stop: make(chan struct{})}
}

// run runs f on an idle runner, or on a new one if none is idle.
func (r *runners) run(f func()) {
	select {
	case r.work <- f:
		return
	default:
	}
	r.wg.Add(1)
	r.started.Add(1)
	r.live.Add(1)
	go r.loop(f) // exits when idle for runnerIdle, or once close is called and it is idle
}

func (r *runners) loop(f func()) {
	defer r.wg.Done()
	defer r.live.Add(-1)
	var idle *time.Timer
	for {
		f()
		f = nil // what the attempt held is not kept alive while idle
		if idle == nil {
			idle = time.NewTimer(runnerIdle)
		} else {
			idle.Reset(runnerIdle)
		}
		select {
		case f = <-r.work:
		case <-idle.C:
			return
		case <-r.stop:
			return
		}
	}
}

// close makes the idle runners exit and waits for every runner: call it
// once nothing more is run (the attempts have ended).
func (r *runners) close() {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
}
