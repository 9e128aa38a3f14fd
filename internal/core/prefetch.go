package core

import "slices"

// Prefetch (#11 item 1): a consumer's inputs start to travel while the
// last of its producers still run, so that the transfers overlap their
// compute, without moving a byte that placement would not move anyway.
//
// A consumer goes, once ready, to the worker that holds the most bytes of
// its inputs (see bestWorker). While it waits, that worker is decided when
// every producer it still waits for is placed on one worker W and W holds
// more of its finished inputs than any other worker could hold by then,
// counting an input that other tasks read too as if every worker might get
// a copy of it for them: the outputs still to come land on W (each counts
// at least a byte), so W's lead only grows. Then the finished inputs that
// W lacks are fetched to W at once, as they would be once the consumer is
// placed there; each arrives as a released copy (see releaseUnpinned),
// which the consumer claims. A consumer of more than MaxFamily inputs is
// left alone, so that each look at one stays cheap.
//
// Placement then moves the same bytes, earlier, with two exceptions left
// to the simulation to measure (TestPrefetchMovesNoMoreBytes): W may have
// no free core for the consumer when it is ready, which then goes
// elsewhere rather than wait; and a worker may gain copies of its inputs
// meanwhile (a replica, another consumer's staging). A prefetch starts only
// where its source has a free transfer slot now and the consumer's inputs
// fit in W's cache. One that fails is not tried again and spends none of
// the consumer's tries (FetchTries), unless the consumer was placed on W
// meanwhile and waits for it: then it fails as the consumer's own fetch.

// SetPrefetch turns the prefetch of consumers' inputs (on by default,
// under PlaceGraph) off or on, so that the simulation and the benchmarks
// can compare. Call it before the first Step.
func (c *Core) SetPrefetch(on bool) { c.noPrefetch = !on }

// wantPrefetch notes consumers waiting for e, whose producer was just
// placed or finished, to look at at the end of the step.
func (c *Core) wantPrefetch(e *fileEntry) {
	if c.naive || c.noPrefetch {
		return
	}
	c.prefetchFor = append(c.prefetchFor, e.waiters...)
}

// prefetchAll starts the prefetches of the consumers noted in this step,
// each once, in ID order.
func (c *Core) prefetchAll() {
	slices.Sort(c.prefetchFor)
	ids := slices.Compact(c.prefetchFor)
	for _, id := range ids {
		if t := c.tasks[id]; t != nil {
			c.prefetch(t)
		}
	}
	c.prefetchFor = c.prefetchFor[:0]
}

// prefetch brings t's finished inputs to the worker t is bound to go to,
// if that worker is decided (see the top of this file).
func (c *Core) prefetch(t *task) {
	if t.state != Waiting || t.spec.Role != Plain || t.barred() || t.spec.Resources.GPUs > 0 || len(t.spec.Inputs) > MaxFamily {
		return
	}
	var home *worker
	pending := int64(0)
	for _, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || e.state == fileReady {
			continue
		}
		if e.kind != Produced || e.state != filePending {
			return
		}
		p := c.tasks[e.producer]
		if p == nil || p.state != Staging && p.state != Running || p.worker == nil || home != nil && p.worker != home {
			return // a producer not placed yet, or producers on two workers: not decided
		}
		home = p.worker
		pending++
	}
	if home == nil || home.index < 0 || int64(t.missing) != pending || !home.total.Fits(t.spec.Resources) {
		return // nothing to wait for; a closed worker; t waits for more than inputs; or never fits there
	}
	// The bytes of t's finished inputs on each worker; home's outputs to
	// come count one byte each, as bestWorker counts them at least.
	if c.bytesOn == nil {
		c.bytesOn = make(map[WorkerID]int64)
	}
	clear(c.bytesOn)
	c.bytesOn[home.id] = pending
	lacking := false
	var shared int64 // of inputs other tasks read too: any worker may get a copy for them
	for _, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || e.state != fileReady || !e.staged() {
			continue
		}
		for _, w := range e.replicas {
			c.bytesOn[w] += max(e.size, 1)
		}
		if e.needers > 1 {
			shared += max(e.size, 1)
		}
		lacking = lacking || !e.holds(home.id)
	}
	if !lacking {
		return
	}
	if shared >= c.bytesOn[home.id] {
		return // a worker that holds none of them now may hold as many once t is ready
	}
	for w, n := range c.bytesOn {
		if w != home.id && n+shared >= c.bytesOn[home.id] {
			return // another worker may hold as many
		}
	}
	if fits, _ := c.cacheFits(t, home); !fits {
		return
	}
	for i, f := range t.spec.Inputs {
		e := c.files.files[f]
		if e == nil || e.state != fileReady || e.kind != Produced || !e.staged() || e.holds(home.id) || seenBefore(t.spec.Inputs, i) {
			continue
		}
		if _, busy := home.inflight[f]; busy {
			continue
		}
		if src, ok, _ := c.pickSource(home, e); ok && src.Kind == FromPeer {
			c.begin(home, e, src).prefetch = true
		}
	}
}
