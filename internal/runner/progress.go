package runner

import (
	"fmt"
	"io"
	"sync"
	"time"

	"trellis"
)

// Progress shows a workflow's progress: on a terminal, one line redrawn in
// place; elsewhere, a line per finished task and a count every 10 seconds.
// Feed it the client's events with trellis.WithEvents(p.Event).
type Progress struct {
	out         io.Writer
	interactive bool

	mu      sync.Mutex // guards the fields below
	name    string
	total   int
	start   time.Time
	state   map[uint64]trellis.State
	ok      map[uint64]bool
	unsent  int                 // results of calls that were never submitted and failed
	skipped int                 // of those never submitted, the skipped ones
	known   bool                // Submitted was called
	names   map[uint64]string   // of the submitted tasks and calls
	after   map[uint64][]uint64 // the tasks and calls each waits for
	skips   map[uint64]bool     // ended without running: what they wait for did not succeed
	stop    chan struct{}
	stopped chan struct{}

	stuck map[uint64]bool // waiting while no connected worker could run them

	// The manager's counters, as differences from the run's start: tasks
	// run again to recreate lost files, and attempts handed back for a full
	// cache (see Follow).
	rerun, back  int
	counters     func() (rerun, back int, err error) // nil: not followed
	countersRead time.Time                           // owned by the drawing goroutine
}

// countersEvery bounds how often the progress asks the manager for its
// counters: a status read, which never waits for the manager's loop.
const countersEvery = time.Second

// Follow has the count line show, as they happen, the tasks the manager
// runs again to recreate lost files and the attempts it hands back for a
// full cache: counters reads them (differences from the run's start, as
// the summary counts them), at most once a second.
func (p *Progress) Follow(counters func() (rerun, back int, err error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counters = counters
}

// Counters sets the counts the final line shows: the summary's.
func (p *Progress) Counters(rerun, back int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rerun, p.back, p.counters = rerun, back, nil
}

// readCounters refreshes the counters when a second has passed since the
// last read, and says what grew, for a line of its own off a terminal.
func (p *Progress) readCounters() {
	p.mu.Lock()
	read := p.counters
	p.mu.Unlock()
	if read == nil || time.Since(p.countersRead) < countersEvery {
		return
	}
	p.countersRead = time.Now()
	rerun, back, err := read()
	if err != nil {
		return // the next read may succeed; the summary says the final counts
	}
	p.mu.Lock()
	grewRerun, grewBack := rerun > p.rerun, back > p.back
	p.rerun, p.back = max(p.rerun, rerun), max(p.back, back)
	p.mu.Unlock()
	if !p.interactive && grewRerun {
		p.line(fmt.Sprintf("re-run  %d tasks so far, to recreate lost files", rerun))
	}
	if !p.interactive && grewBack {
		p.line(fmt.Sprintf("waiting %d attempts so far handed back for cache space", back))
	}
}

// NewProgress writes progress to out; interactive redraws one line.
func NewProgress(out io.Writer, interactive bool) *Progress {
	return &Progress{out: out, interactive: interactive, state: make(map[uint64]trellis.State), ok: make(map[uint64]bool),
		stuck: make(map[uint64]bool), names: make(map[uint64]string), after: make(map[uint64][]uint64), skips: make(map[uint64]bool)}
}

// Begin starts the display for a workflow of total tasks.
func (p *Progress) Begin(name string, total int) {
	p.mu.Lock()
	p.name, p.total, p.start = name, total, time.Now()
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	p.mu.Unlock()
	every := 10 * time.Second
	if p.interactive {
		every = 200 * time.Millisecond
	}
	go func() { // exits when End closes p.stop
		defer close(p.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.readCounters()
				p.draw(false)
			case <-p.stop:
				return
			}
		}
	}()
}

// Submitted marks the tasks known, so that they count as waiting. after
// lists, by task ID, the IDs of the tasks and calls each one waits for (its
// inputs' producers among them): one that ends with its input missing
// after one of those failed counts as skipped, as the summary counts it,
// and its line names that one.
func (p *Progress) Submitted(hs []*trellis.Handle, after map[uint64][]uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range hs {
		if _, seen := p.state[h.ID]; !seen {
			p.state[h.ID] = trellis.StateWaiting
		}
		p.names[h.ID] = h.Name
	}
	for id, on := range after {
		p.after[id] = on
	}
	p.known = true
}

// Unsent records the result of a call that was never submitted, such as
// one whose arguments could not be read. skippedFor names the call it
// waits for, which could not be submitted either; "" if none.
func (p *Progress) Unsent(r *trellis.Result, skippedFor string) {
	p.mu.Lock()
	if skippedFor != "" {
		p.skipped++
	} else {
		p.unsent++
	}
	p.mu.Unlock()
	switch {
	case p.interactive:
	case skippedFor != "":
		p.line(fmt.Sprintf("skipped %s: it waits for %q, which was not submitted", r.Name, skippedFor))
	default:
		p.line(fmt.Sprintf("failed  %s: %s: %s", r.Name, r.Kind, r.Message))
	}
}

// skippedForLocked names what task id waited for and did not succeed, when
// r, its result, says it never ran for that; else "".
func (p *Progress) skippedForLocked(id uint64, r *trellis.Result) string {
	if r.Kind != trellis.InputMissing {
		return ""
	}
	for _, dep := range p.after[id] {
		if p.state[dep] == trellis.StateDone && !p.ok[dep] {
			return p.names[dep]
		}
	}
	return ""
}

// Event records one task event.
func (p *Progress) Event(ev trellis.Event) {
	p.mu.Lock()
	p.state[ev.Task] = ev.State
	skippedFor := ""
	if ev.Result != nil {
		p.ok[ev.Task] = ev.Result.OK()
		if skippedFor = p.skippedForLocked(ev.Task, ev.Result); skippedFor != "" {
			p.skips[ev.Task] = true
		}
	}
	if ev.Unplaceable != "" {
		p.stuck[ev.Task] = true
	} else {
		delete(p.stuck, ev.Task)
	}
	p.mu.Unlock()
	if ev.Unplaceable != "" {
		p.line(fmt.Sprintf("waiting %s: %s", ev.Name, ev.Unplaceable))
	}
	if ev.State == trellis.StateWaiting && ev.Note != "" {
		p.line(fmt.Sprintf("retry   %s: %s", ev.Name, ev.Note))
	}
	if r := ev.Result; r != nil && !p.interactive {
		switch {
		case r.OK():
			p.line(fmt.Sprintf("done    %s (%s on %s)", ev.Name, r.RunTime.Round(time.Millisecond), r.Worker))
		case skippedFor != "":
			p.line(fmt.Sprintf("skipped %s: it depends on %q, which did not succeed", ev.Name, skippedFor))
		default:
			p.line(fmt.Sprintf("failed  %s: %s: %s", ev.Name, r.Kind, r.Message))
		}
	}
}

// End stops the display, leaving a final count.
func (p *Progress) End() {
	close(p.stop)
	<-p.stopped
	p.draw(true)
}

func (p *Progress) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.interactive {
		fmt.Fprintf(p.out, "\r\033[K%s\n", s)
		return
	}
	fmt.Fprintln(p.out, s)
}

func (p *Progress) draw(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var waiting, running, done int
	failed, skipped := p.unsent, p.skipped
	for id, s := range p.state {
		switch s {
		case trellis.StateWaiting:
			waiting++
		case trellis.StateRunning:
			running++
		case trellis.StateDone:
			switch {
			case p.ok[id]:
				done++
			case p.skips[id]:
				skipped++
			default:
				failed++
			}
		}
	}
	if !p.known {
		waiting = p.total - running - done - failed - skipped
	}
	var stuck string
	if len(p.stuck) > 0 {
		stuck = fmt.Sprintf(" (%d that no connected worker can run)", len(p.stuck))
	}
	var extra string
	if p.rerun > 0 {
		extra += fmt.Sprintf(", %d re-run", p.rerun)
	}
	if p.back > 0 {
		extra += fmt.Sprintf(", %d handed back", p.back)
	}
	elapsed := time.Since(p.start)
	ended := done + failed + skipped
	msg := fmt.Sprintf("[%s] %s: %d waiting%s, %d running, %d done, %d failed, %d skipped%s (of %d, %d%%%s)",
		elapsed.Round(100*time.Millisecond), p.name, waiting, stuck, running, done, failed, skipped, extra, p.total,
		percent(ended, p.total), timeLeft(elapsed, ended, p.total))
	switch {
	case p.interactive && final:
		fmt.Fprintf(p.out, "\r\033[K%s\n", msg)
	case p.interactive:
		fmt.Fprintf(p.out, "\r\033[K%s", msg)
	default:
		fmt.Fprintln(p.out, msg)
	}
}

// percent is the share of total that ended, rounded down.
func percent(ended, total int) int {
	if total == 0 {
		return 100
	}
	return 100 * ended / total
}

// timeLeft estimates the time left at the pace so far: elapsed times what
// is left over what ended. It says nothing before anything ended, or after
// everything did.
func timeLeft(elapsed time.Duration, ended, total int) string {
	if ended == 0 || ended >= total {
		return ""
	}
	left := time.Duration(float64(elapsed) * float64(total-ended) / float64(ended))
	return fmt.Sprintf(", about %s left", left.Round(time.Second))
}
