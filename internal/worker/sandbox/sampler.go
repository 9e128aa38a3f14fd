package sandbox

import (
	"container/heap"
	"fmt"
	"sync"
	"sync/atomic"
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
//
// The watches wait in a min-heap by due time, one heap per base interval
// (a worker has one, Spec.PollInterval): a wake-up looks at the watches it
// samples and no other, where a walk of every watch at every wake-up cost
// more than the samples themselves at 256 runs (docs/benchmarks.md,
// capacity, ninth part). Within one heap, due order is the order of "due
// within half the base interval", so a wake-up takes exactly the watches
// the rule names.
//
// A run whose memory limit the kernel enforces in a v1 cell is only
// checked for the kernel's kill of one of its processes, and that check
// says false until the cell's out-of-memory eventfd counts an event in the
// run. Those eventfds are in an epoll set of the sampler's (made with the
// first v1 cell, kept for the process's life), which the goroutine waits
// on with its next due time as the deadline, through the Go runtime's
// poller (no thread blocked): such a run waits outside the heaps, costs no
// sample and no wake-up, and enters a heap, due at once, when its eventfd
// becomes readable (add, eventLocked).
type sampler struct {
	mu      sync.Mutex
	queues  []*dueQueue // guarded by mu: one per base interval
	n       int         // guarded by mu: watches queued
	running bool        // guarded by mu: the goroutine runs
	// next is when the goroutine wakes next (guarded by mu): a watch
	// added due no earlier needs no wake-up of its own.
	next    time.Time
	wake    chan struct{} // a watch was added: look at the due times again
	wakeups int           // guarded by mu: wake-ups that sampled, for tests
	added   int           // guarded by mu: watches added, for tests
	samples int           // guarded by mu: samples taken, for tests

	// ev is the epoll set of the cells' out-of-memory eventfds (cgroup
	// v1), made when the first cell's is put in (watchEvents); nil until
	// then, or while it cannot be made. notes are the eventfds in it, and
	// waiting the watches whose only check waits for an event of theirs
	// (both guarded by mu, by eventfd).
	ev      atomic.Pointer[pollSet]
	notes   map[int]*oomNotes
	waiting map[int]*watch
}

// dueQueue is a min-heap of the watches of one base interval by due time.
type dueQueue struct {
	base time.Duration
	ws   []*watch
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
	// oom, where not nil, says that the kernel killed a process of the
	// run for its memory limit of oomMB (cell.oomKilled): the rest of the
	// run is then killed too. events are the cell's out-of-memory
	// notifications (nil for none), and oomSeen what they counted when
	// the run started, then at its last sample: oom says false while they
	// count no more than at the start (cell.oomEvents).
	oom     func() bool
	oomMB   int64
	events  *oomNotes
	oomSeen int64
	q       *dueQueue // the heap w is in; nil when in none
	idx     int       // w's index in q.ws
}

var samplers = newSampler()

func newSampler() *sampler {
	return &sampler{wake: make(chan struct{}, 1)}
}

// add starts sampling w, first after its base interval. It wakes the
// goroutine only where w is due before its next wake-up: with hundreds of
// runs starting a second, a wake-up for each was a goroutine switch and a
// look at every watch per start.
//
// A watch whose only check is oom, on a cell whose eventfd is in the
// sampler's epoll set, is not sampled at all until that eventfd counts an
// event: oom says false until then, and the kernel signals the event before
// it kills (cell.oomKilled). Then it is sampled at once, and again after
// the base interval where that sample found no kill yet; on the usual
// schedule after. So a run that never runs out of memory costs no sample
// and no wake-up.
func (s *sampler) add(w *watch, now time.Time) {
	w.interval, w.due = w.base, now.Add(w.base)
	s.mu.Lock()
	s.added++
	if s.waitsLocked(w) {
		s.n++
		w.idx = -1
		s.waiting[w.events.fd] = w
		if !s.running {
			s.running = true
			go s.run() // exits when no watch is left
		}
		s.mu.Unlock()
		return
	}
	s.pushLocked(w)
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

// pushLocked puts w into the heap of its base interval, making the heap
// if there is none. Heaps are kept when they empty (a worker has one base
// interval; a test more): a run that waits for its out-of-memory event
// enters one at the event, often when no other run is sampled.
func (s *sampler) pushLocked(w *watch) {
	var q *dueQueue
	for _, x := range s.queues {
		if x.base == w.base {
			q = x
			break
		}
	}
	if q == nil {
		q = &dueQueue{base: w.base}
		s.queues = append(s.queues, q)
	}
	heap.Push(q, w)
	s.n++
}

// waitsLocked reports whether w's only check waits for its cell's
// out-of-memory event (add), and none was counted in its run so far. It
// reads the eventfd under s.mu, as the goroutine drains it (eventLocked):
// an event is counted either here, and w goes to the heap, or after w
// waits, and eventLocked moves it there.
func (s *sampler) waitsLocked(w *watch) bool {
	if w.oom == nil || w.events == nil || w.memLimit > 0 || w.diskLimit > 0 || s.notes[w.events.fd] != w.events || s.waiting[w.events.fd] != nil {
		return false
	}
	return w.events.count() <= w.oomSeen
}

// watchEvents puts a cell's out-of-memory eventfd into the sampler's epoll
// set (made the first time), for the life of the cell; false where it
// cannot be, and the cell's runs are sampled on the usual schedule.
func (s *sampler) watchEvents(o *oomNotes) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notes == nil {
		s.notes, s.waiting = make(map[int]*oomNotes), make(map[int]*watch)
	}
	if s.ev.Load() == nil {
		// Made the first time, or tried again where it could not be
		// (EMFILE): the cells meanwhile are sampled on the usual schedule.
		if ev, err := newPollSet(); err == nil {
			s.ev.Store(ev)
			s.poke() // a goroutine waiting on its timer waits on the set from now on
		}
	}
	if ev := s.ev.Load(); ev == nil || ev.add(o.fd) != nil {
		return false
	}
	s.notes[o.fd] = o
	return true
}

// unwatchEvents takes a cell's eventfd out of the set, before it is
// closed.
func (s *sampler) unwatchEvents(o *oomNotes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notes[o.fd] == o {
		s.ev.Load().del(o.fd)
		delete(s.notes, o.fd)
	}
}

// eventLocked takes what the eventfd fd, readable, counted (so that the
// set is not ready for it again), and moves the watch waiting for it into
// the heap, due now.
func (s *sampler) eventLocked(fd int, now time.Time) {
	o := s.notes[fd]
	if o == nil {
		return // closed meanwhile
	}
	o.count()
	if w := s.waiting[fd]; w != nil {
		delete(s.waiting, fd)
		s.n--
		w.due = now
		s.pushLocked(w)
	}
}

// remove stops sampling w and returns the peak memory it sampled. It does
// not close w's scanner.
func (s *sampler) remove(w *watch) (peak int64) {
	s.mu.Lock()
	if w.q != nil {
		w.q.removeAt(w.idx)
		s.n--
	} else if w.events != nil && s.waiting[w.events.fd] == w {
		delete(s.waiting, w.events.fd)
		s.n--
	}
	peak, last := w.peak, s.n == 0
	s.mu.Unlock()
	if last {
		s.poke() // the goroutine ends now, not when its timer fires
	}
	return peak
}

// poke wakes the goroutine to look at the watches again.
func (s *sampler) poke() {
	if ev := s.ev.Load(); ev != nil {
		ev.poke()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sampler) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var ready []int // the eventfds the set found readable
	for {
		s.mu.Lock()
		if s.n == 0 {
			s.running = false
			s.mu.Unlock()
			return
		}
		now := time.Now()
		for _, fd := range ready {
			s.eventLocked(fd, now)
		}
		next := s.sampleDue(now)
		s.next = next
		ev := s.ev.Load()
		s.mu.Unlock()
		if ev != nil {
			var err error
			if ready, err = ev.wait(next, ready[:0]); err != nil {
				// Only a bad epoll descriptor or buffer fails here: a bug
				// (as in the output drainer), not a spin on every turn.
				panic("sandbox: the sampler's wait failed: " + err.Error())
			}
			continue
		}
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-s.wake:
		}
	}
}

// sampleDue samples the watches due by now (or within half their base
// interval) and returns when the next is due. It allocates nothing.
func (s *sampler) sampleDue(now time.Time) (next time.Time) {
	sampled := false
	for _, q := range s.queues {
		soon := now.Add(q.base / 2)
		for len(q.ws) > 0 && !q.ws[0].due.After(soon) {
			// A sample moves w's due time to now plus at least the base
			// interval, past soon: each watch is sampled once here.
			w := q.ws[0]
			s.sample(w, now)
			s.samples++
			sampled = true
			if w.done {
				q.removeAt(0) // over its limit: no more samples
				s.n--
			} else {
				heap.Fix(q, 0)
			}
		}
		if len(q.ws) > 0 && (next.IsZero() || q.ws[0].due.Before(next)) {
			next = q.ws[0].due
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

// removeAt takes the watch at index i out of the heap.
func (q *dueQueue) removeAt(i int) {
	heap.Remove(q, i)
}

// dueQueue is a container/heap.Interface; Push and Pop are heap's only.
func (q *dueQueue) Len() int           { return len(q.ws) }
func (q *dueQueue) Less(i, j int) bool { return q.ws[i].due.Before(q.ws[j].due) }

func (q *dueQueue) Swap(i, j int) {
	q.ws[i], q.ws[j] = q.ws[j], q.ws[i]
	q.ws[i].idx, q.ws[j].idx = i, j
}

func (q *dueQueue) Push(x any) {
	w := x.(*watch)
	w.q, w.idx = q, len(q.ws)
	q.ws = append(q.ws, w)
}

func (q *dueQueue) Pop() any {
	last := len(q.ws) - 1
	w := q.ws[last]
	q.ws[last] = nil
	q.ws = q.ws[:last]
	w.q, w.idx = nil, -1
	return w
}

// sample takes one sample of w: over a limit, it tells w.over;
// else it sets when the next is due. The first sample has nothing to
// compare with: under half the limits, it counts as steady (a task's
// start is not growth), so a short task is sampled at 1, 3, 7, 15, 23 ×
// the base interval, not at 1, 2, 4, 8, 16 and 24.
// A new out-of-memory event of the run's cell is not steady.
func (s *sampler) sample(w *watch, now time.Time) {
	if w.oom != nil && w.oom() {
		w.peak = max(w.peak, mbToBytes(w.oomMB))
		w.stop(verdict{kind: MemoryExceeded, message: kernelOOMMessage(w.oomMB)})
		return
	}
	steady := true
	if w.events != nil {
		// The kernel signals an out-of-memory event before it kills: a
		// sample that finds a new event but no kill yet is not steady, so
		// the kill is seen after the base interval.
		n := w.events.count()
		steady = n <= w.oomSeen
		w.oomSeen = n
	}
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
