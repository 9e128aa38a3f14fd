package sandbox

import (
	"fmt"
	"sync"
	"time"
)

// sampler samples the memory and disk of every limited run of the process
// from one goroutine, not a timer and a goroutine wake-up per run: each
// wake-up samples every watch due then, or due within half its base
// interval (so that runs started at nearly the same time share wake-ups).
// With hundreds of runs at once, a wake-up per sample was most of what
// watching them cost once the samples themselves were cheap
// (docs/benchmarks.md, capacity). The goroutine runs while there is a
// watch.
type sampler struct {
	mu      sync.Mutex
	watches map[*watch]struct{} // guarded by mu
	running bool                // guarded by mu: the goroutine runs
	// next is when the goroutine wakes next (guarded by mu): a watch
	// added due no earlier needs no wake-up of its own.
	next    time.Time
	wake    chan struct{} // a watch was added: look at the due times again
	wakeups int           // guarded by mu: wake-ups that sampled, for tests
	added   int           // guarded by mu: watches added, for tests
}

// watch is one run's limits and the state of its samples. Its fields are
// the sampler's (under its mu) once added.
type watch struct {
	scan                *groupScanner // nil without a memory limit
	dir                 string
	memLimit, diskLimit int64 // bytes; 0 for none
	memMB, diskMB       int64 // the limits as given, for messages
	base, interval      time.Duration
	due                 time.Time
	lastRSS, lastDisk   int64
	sampled             bool  // a sample was taken: lastRSS and lastDisk hold it
	peak                int64 // the largest resident memory sampled
	// over is told the limit exceeded, once, from the sampler's
	// goroutine with the sampler's lock held (it kills the run).
	over func(verdict)
	done bool // over was called: no more samples
	// oom, where not nil, says that the kernel killed a process of the run
	// for its memory limit of oomMB (cell.oomKilled): the rest of the run
	// is then killed too.
	oom   func() bool
	oomMB int64
}

var samplers = newSampler()

func newSampler() *sampler {
	return &sampler{watches: make(map[*watch]struct{}), wake: make(chan struct{}, 1)}
}

// add starts sampling w, first after its base interval. It wakes the
// goroutine only where w is due before its next wake-up: with hundreds of
// runs starting a second, a wake-up for each was a goroutine switch and a
// look at every watch per start.
func (s *sampler) add(w *watch, now time.Time) {
	w.interval, w.due = w.base, now.Add(w.base)
	s.mu.Lock()
	s.watches[w] = struct{}{}
	s.added++
	wake := s.running && w.due.Before(s.next)
	if !s.running {
		s.running = true
		go s.run() // exits when no watch is left
	}
	s.mu.Unlock()
	if wake {
		s.poke()
	}
}

// remove stops sampling w and returns the peak memory it sampled. It does
// not close w's scanner.
func (s *sampler) remove(w *watch) (peak int64) {
	s.mu.Lock()
	delete(s.watches, w)
	peak, last := w.peak, len(s.watches) == 0
	s.mu.Unlock()
	if last {
		s.poke() // the goroutine ends now, not when its timer fires
	}
	return peak
}

// poke wakes the goroutine to look at the watches again.
func (s *sampler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sampler) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		if len(s.watches) == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		next := s.sampleDue(time.Now())
		s.next = next
		s.mu.Unlock()
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-s.wake:
		}
	}
}

// sampleDue samples the watches due by now (or within half their base
// interval) and returns when the next is due.
func (s *sampler) sampleDue(now time.Time) (next time.Time) {
	sampled := false
	for w := range s.watches {
		if w.done {
			continue
		}
		if !w.due.After(now.Add(w.base / 2)) {
			s.sample(w, now)
			sampled = true
		}
		if !w.done && (next.IsZero() || w.due.Before(next)) {
			next = w.due
		}
	}
	if sampled {
		s.wakeups++
	}
	if next.IsZero() {
		next = now.Add(time.Hour) // every watch is done: remove ends them
	}
	return next
}

// sample takes one sample of w: over a limit, it tells w.over;
// else it sets when the next is due. The first sample has nothing to
// compare with: under half the limits, it counts as steady (a task's
// start is not growth), so a short task is sampled at 1, 3, 7, 15, 23 ×
// the base interval, not at 1, 2, 4, 8, 16 and 24.
func (s *sampler) sample(w *watch, now time.Time) {
	if w.oom != nil && w.oom() {
		w.peak = max(w.peak, mbToBytes(w.oomMB))
		w.stop(verdict{kind: MemoryExceeded, message: kernelOOMMessage(w.oomMB)})
		return
	}
	steady := true
	if w.memLimit > 0 {
		rss, _ := w.scan.rssAt(now)
		w.peak = max(w.peak, rss)
		if rss > w.memLimit {
			w.stop(verdict{kind: MemoryExceeded, message: fmt.Sprintf("killed: resident memory %d MB exceeded the limit of %d MB", ceilMB(rss), w.memMB)})
			return
		}
		steady = (rss <= w.lastRSS || !w.sampled) && rss <= w.memLimit/2
		w.lastRSS = rss
	}
	if w.diskLimit > 0 {
		size := dirSize(w.dir)
		if size > w.diskLimit {
			w.stop(verdict{kind: DiskExceeded, message: fmt.Sprintf("killed: sandbox holds %d MB, over the disk limit of %d MB", ceilMB(size), w.diskMB)})
			return
		}
		steady = steady && (size <= w.lastDisk || !w.sampled) && size <= w.diskLimit/2
		w.lastDisk = size
	}
	w.sampled = true
	w.interval = nextPoll(w.interval, w.base, steady)
	w.due = now.Add(w.interval)
}

func (w *watch) stop(v verdict) {
	w.done = true
	w.over(v)
}
