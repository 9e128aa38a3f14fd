package sandbox

import (
	"context"
	"fmt"
	"math"
	"sync"
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

// monitor watches one run without a goroutine of its own: the context's
// end and the wall time's timer call kill from their callbacks
// (context.AfterFunc, time.AfterFunc), and so does the process's one
// sampler (sampler.go) when the run's memory or disk goes over its limit.
// A nil *monitor watches nothing, and its stop returns the zero verdict.
type monitor struct {
	c       *Child
	stopCtx func() bool // stops the context's callback; nil for none
	timer   *time.Timer // the wall time's; nil for none
	w       *watch      // the run's samples; nil for none

	mu      sync.Mutex // guards v, stopped
	v       verdict
	stopped bool
}

// startMonitor starts watching the process c, unless there is nothing to
// watch: no wall time, no limits, and a context that cannot be cancelled.
func startMonitor(ctx context.Context, spec *Spec, c *Child, dir string, start time.Time) *monitor {
	oom := c.oomWatch()
	if spec.WallTime <= 0 && spec.MemoryMB <= 0 && spec.DiskMB <= 0 && oom == nil && ctx.Done() == nil {
		return nil
	}
	m := &monitor{c: c}
	if ctx.Done() != nil {
		m.stopCtx = context.AfterFunc(ctx, func() {
			m.kill(verdict{kind: Cancelled, message: fmt.Sprintf("killed: cancelled (%v)", ctx.Err())})
		})
	}
	if spec.WallTime > 0 {
		wall := spec.WallTime
		m.timer = time.AfterFunc(wall-time.Since(start), func() {
			m.kill(verdict{kind: TimedOut, message: fmt.Sprintf("killed: wall time %v exceeded", wall)})
		})
	}
	if spec.MemoryMB > 0 || spec.DiskMB > 0 || oom != nil {
		base := spec.PollInterval
		if base <= 0 {
			base = DefaultPollInterval
		}
		m.w = &watch{dir: dir, memLimit: mbToBytes(spec.MemoryMB), diskLimit: mbToBytes(spec.DiskMB),
			memMB: spec.MemoryMB, diskMB: spec.DiskMB, base: base, over: m.kill, oom: oom, oomMB: c.memoryMB}
		if spec.MemoryMB > 0 {
			m.w.scan = newCellScanner(c.Pid(), c.cell.procsFile(), c.cell.procsFD())
		}
		if oom != nil {
			m.w.events, m.w.oomSeen = c.cell.oomEvents()
		}
		samplers.add(m.w, time.Now())
	}
	return m
}

// kill kills the group for the first reason given, unless the watch has
// stopped.
func (m *monitor) kill(v verdict) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped || m.v.kind != 0 {
		return
	}
	m.c.Kill()
	m.v.kind, m.v.message = v.kind, v.message
}

// stop ends the watch and returns the verdict. It must be called exactly once
// per started monitor, before the shell is reaped.
func (m *monitor) stop() verdict {
	if m == nil {
		return verdict{}
	}
	if m.stopCtx != nil {
		m.stopCtx()
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	var peak int64
	if m.w != nil {
		peak = samplers.remove(m.w) // after it, the sampler no longer kills
		if m.w.scan != nil {
			m.w.scan.close()
		}
	}
	m.mu.Lock() // waits for a kill under way
	defer m.mu.Unlock()
	m.stopped = true
	m.v.peak = peak
	return m.v
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
