package sandbox

import (
	"context"
	"fmt"
	"math"
	"time"
)

// verdict is what the monitor saw: the kind and message of the limit it
// enforced (kind 0 when it killed nothing), and the peak resident memory of
// the group in bytes (0 when memory was not sampled).
type verdict struct {
	kind    Kind
	message string
	peak    int64
}

// monitor watches one run from its own goroutine. A nil *monitor watches
// nothing, and its stop returns the zero verdict.
type monitor struct {
	stopc chan struct{}
	done  chan verdict
}

// startMonitor starts watching the process c, unless there is nothing to
// watch: no wall time, no limits, and a context that cannot be cancelled.
func startMonitor(ctx context.Context, spec *Spec, c *Child, dir string, start time.Time) *monitor {
	if spec.WallTime <= 0 && spec.MemoryMB <= 0 && spec.DiskMB <= 0 && ctx.Done() == nil {
		return nil
	}
	m := &monitor{stopc: make(chan struct{}), done: make(chan verdict, 1)}
	go m.run(ctx, *spec, c, dir, start) // exits on stop, or once it has killed the group
	return m
}

// stop ends the watch and returns the verdict. It must be called exactly once
// per started monitor, before the shell is reaped.
func (m *monitor) stop() verdict {
	if m == nil {
		return verdict{}
	}
	close(m.stopc)
	return <-m.done
}

func (m *monitor) run(ctx context.Context, spec Spec, c *Child, dir string, start time.Time) {
	var v verdict
	defer func() { m.done <- v }()

	var timeout <-chan time.Time
	if spec.WallTime > 0 {
		t := time.NewTimer(spec.WallTime - time.Since(start))
		defer t.Stop()
		timeout = t.C
	}
	if spec.PollInterval <= 0 {
		spec.PollInterval = DefaultPollInterval
	}
	var over <-chan verdict
	if spec.MemoryMB > 0 || spec.DiskMB > 0 {
		w := &watch{dir: dir, memLimit: mbToBytes(spec.MemoryMB), diskLimit: mbToBytes(spec.DiskMB),
			memMB: spec.MemoryMB, diskMB: spec.DiskMB, base: spec.PollInterval}
		if spec.MemoryMB > 0 {
			w.scan = newCellScanner(c.Pid(), c.cell.procsFile(), c.cell.procsFD())
			defer w.scan.close() // after remove, below: the sampler no longer reads it
		}
		samplers.add(w, time.Now())
		defer func() { v.peak = samplers.remove(w) }()
		over = w.over
	}
	kill := func(k Kind, msg string) {
		c.Kill()
		v.kind, v.message = k, msg
	}
	for {
		select {
		case <-m.stopc:
			return
		case <-ctx.Done():
			kill(Cancelled, fmt.Sprintf("killed: cancelled (%v)", ctx.Err()))
			return
		case <-timeout:
			kill(TimedOut, fmt.Sprintf("killed: wall time %v exceeded", spec.WallTime))
			return
		case o := <-over:
			kill(o.kind, o.message)
			return
		}
	}
}

// maxPollBackoff bounds how far a steady task's sampling slows down: to
// maxPollBackoff × Spec.PollInterval between samples.
const maxPollBackoff = 8

// nextPoll is the wait before the next memory and disk sample, after one
// that waited cur: the base interval after a sample that found memory or
// disk grown (or over half its limit), else twice cur, up to
// maxPollBackoff × base. Most tasks hold their memory steady for most of
// their life: a worker running hundreds at once then samples each a few
// times a second, not 20 (each sample is a read of /proc/PID/stat, about
// 11 µs of kernel time; docs/benchmarks.md, capacity). A steady task that
// then grows at once is seen up to maxPollBackoff × base late.
func nextPoll(cur, base time.Duration, steady bool) time.Duration {
	if !steady {
		return base
	}
	return min(2*cur, maxPollBackoff*base)
}

// mbToBytes converts MiB to bytes, saturating instead of overflowing; 0 and
// negative sizes give 0, meaning no limit.
func mbToBytes(mb int64) int64 {
	switch {
	case mb <= 0:
		return 0
	case mb > math.MaxInt64>>20:
		return math.MaxInt64
	}
	return mb << 20
}
