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
	unsent  int  // results of calls that were never submitted
	known   bool // Submitted was called
	stop    chan struct{}
	stopped chan struct{}

	stuck map[uint64]bool // waiting while no connected worker could run them
}

// NewProgress writes progress to out; interactive redraws one line.
func NewProgress(out io.Writer, interactive bool) *Progress {
	return &Progress{out: out, interactive: interactive, state: make(map[uint64]trellis.State), ok: make(map[uint64]bool),
		stuck: make(map[uint64]bool)}
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
				p.draw(false)
			case <-p.stop:
				return
			}
		}
	}()
}

// Submitted marks the tasks known, so that they count as waiting.
func (p *Progress) Submitted(hs []*trellis.Handle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range hs {
		if _, seen := p.state[h.ID]; !seen {
			p.state[h.ID] = trellis.StateWaiting
		}
	}
	p.known = true
}

// Unsent records the result of a call that was never submitted, such as
// one whose arguments could not be read.
func (p *Progress) Unsent(r *trellis.Result) {
	p.mu.Lock()
	p.unsent++
	p.mu.Unlock()
	if !p.interactive {
		p.line(fmt.Sprintf("failed  %s: %s: %s", r.Name, r.Kind, r.Message))
	}
}

// Event records one task event.
func (p *Progress) Event(ev trellis.Event) {
	p.mu.Lock()
	p.state[ev.Task] = ev.State
	if ev.Result != nil {
		p.ok[ev.Task] = ev.Result.OK()
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
		if r.OK() {
			p.line(fmt.Sprintf("done    %s (%s on %s)", ev.Name, r.RunTime.Round(time.Millisecond), r.Worker))
		} else {
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
	failed := p.unsent
	for id, s := range p.state {
		switch s {
		case trellis.StateWaiting:
			waiting++
		case trellis.StateRunning:
			running++
		case trellis.StateDone:
			if p.ok[id] {
				done++
			} else {
				failed++
			}
		}
	}
	if !p.known {
		waiting = p.total - running - done - failed
	}
	var stuck string
	if len(p.stuck) > 0 {
		stuck = fmt.Sprintf(" (%d that no connected worker can run)", len(p.stuck))
	}
	msg := fmt.Sprintf("[%s] %s: %d waiting%s, %d running, %d done, %d failed (of %d)",
		time.Since(p.start).Round(100*time.Millisecond), p.name, waiting, stuck, running, done, failed, p.total)
	switch {
	case p.interactive && final:
		fmt.Fprintf(p.out, "\r\033[K%s\n", msg)
	case p.interactive:
		fmt.Fprintf(p.out, "\r\033[K%s", msg)
	default:
		fmt.Fprintln(p.out, msg)
	}
}
