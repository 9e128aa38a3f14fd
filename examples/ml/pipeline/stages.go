package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"trellis"
)

// stage is one step of the pipeline as the report shows it: its tasks or
// calls, where they ran and how long the step took.
type stage struct {
	name    string
	calls   bool // function calls, not command tasks
	count   int
	workers map[string]int // results by worker
	seconds float64        // from the end of the step before (or the submission) to the last result
}

func newStage(name string, calls bool) *stage {
	return &stage{name: name, calls: calls, workers: make(map[string]int)}
}

// where lists the workers that ran the stage, with counts when it is more
// than one task.
func (s *stage) where() string {
	var parts []string
	for _, w := range slices.Sorted(maps.Keys(s.workers)) {
		if s.count == 1 {
			parts = append(parts, w)
		} else {
			parts = append(parts, fmt.Sprintf("%s x%d", w, s.workers[w]))
		}
	}
	return strings.Join(parts, ", ")
}

// progress writes lines stamped with the time since start.
type progress struct {
	w     io.Writer
	start time.Time
}

func (p progress) printf(format string, args ...any) {
	fmt.Fprintf(p.w, "[%6.2fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// stageClock times stages that follow one another: each lasts from the end
// of the one before (or from mark) to its own last result.
type stageClock struct {
	mark   time.Time
	stages []*stage
}

// await waits for hs, the tasks or calls of s, recording where each ran and
// handing each result to each (if not nil) as it arrives.
func (sc *stageClock) await(ctx context.Context, s *stage, hs []*trellis.Handle, each func(i int, r *trellis.Result) error) error {
	err := waitAll(ctx, hs, func(i int, r *trellis.Result) error {
		s.count++
		s.workers[r.Worker]++
		if each != nil {
			return each(i, r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	now := time.Now()
	s.seconds = now.Sub(sc.mark).Seconds()
	sc.mark = now
	sc.stages = append(sc.stages, s)
	return nil
}

// waitAll waits for every handle and calls done with each result in the
// order they arrive, from this goroutine. It returns at the first failed
// task or error of done.
func waitAll(ctx context.Context, hs []*trellis.Handle, done func(i int, r *trellis.Result) error) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	arrived := make(chan int, len(hs)) // room for all: senders never block
	for i, h := range hs {
		wg.Go(func() { // exits when the result is in or waitAll returns
			select {
			case <-h.Done():
				arrived <- i
			case <-ctx.Done():
			}
		})
	}
	for range hs {
		select {
		case i := <-arrived:
			r, err := hs[i].Wait(ctx)
			if err != nil {
				return err
			}
			if !r.OK() {
				return failure(r)
			}
			if err := done(i, r); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// failure describes a failed task or call with what it left on stderr.
func failure(r *trellis.Result) error {
	err := r.Err()
	if tail := strings.TrimSpace(string(r.Stderr)); tail != "" {
		err = fmt.Errorf("%w\nstderr: %s", err, tail)
	}
	if r.Traceback != "" {
		err = fmt.Errorf("%w\ntraceback: %s", err, r.Traceback)
	}
	return err
}
