package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	pb "trellis/internal/proto/trellisv1"
)

// Simulation makes a worker a measuring tool (trellis worker --simulate):
// it speaks the real protocol with the real session code, but runs
// nothing. Each command task succeeds the moment it arrives, or after
// Delay, with OutputBytes of standard output. It starts no sandbox, no
// guard process and no file server, and says in its hello that it is
// simulated, so that status shows it. Library instances and calls are
// not simulated: they fail.
type Simulation struct {
	Delay       time.Duration
	OutputBytes int
}

// simulate is a simulated worker's attempt: success after the delay, or
// cancelled if ctx ends first.
func (w *Worker) simulate(ctx context.Context, run *pb.Run) *pb.Outcome {
	sim := w.cfg.Simulate
	start := time.Now()
	if sim.Delay > 0 {
		t := time.NewTimer(sim.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fail(pb.ResultKind_RESULT_KIND_CANCELLED, "cancelled")
		}
	}
	o := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, RunMs: time.Since(start).Milliseconds()}
	if sim.OutputBytes > 0 {
		o.Stdout = make([]byte, sim.OutputBytes)
		for i := range o.Stdout {
			o.Stdout[i] = 'x'
		}
	}
	return o
}

// RunSimulated runs n simulated workers (cfg.Simulate must be set) from
// this process, each its own worker with its own connection to the
// manager, named NAME-1 … NAME-n, with a directory of its own under
// cfg.Workdir. It returns when every one has returned: when ctx ends or
// they are drained (Drain drains them all through drain).
func RunSimulated(ctx context.Context, cfg Config, n int, drain <-chan struct{}) error {
	if cfg.Simulate == nil {
		return fmt.Errorf("worker: RunSimulated without a Simulation")
	}
	if cfg.Name == "" {
		cfg.Name = "sim"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	workers := make([]*Worker, 0, n)
	errs := make([]error, n)
	var err error
	for i := range n {
		c := cfg
		c.Name = fmt.Sprintf("%s-%d", cfg.Name, i+1)
		if cfg.Workdir != "" {
			c.Workdir = filepath.Join(cfg.Workdir, c.Name)
		}
		w, werr := New(c)
		if werr != nil {
			err = fmt.Errorf("simulated worker %d of %d: %w", i+1, n, werr)
			cancel() // the others stop
			break
		}
		workers = append(workers, w)
		wg.Add(1)
		go func() { // exits when the worker's Run returns
			defer wg.Done()
			errs[i] = w.Run(ctx)
		}() // at once: connecting overlaps preparing the next ones
	}
	done := make(chan struct{})
	go func() { // exits when every worker returned
		wg.Wait()
		close(done)
	}()
	select {
	case <-drain:
		for _, w := range workers {
			w.Drain()
		}
		<-done
	case <-done:
	}
	if err != nil {
		return err
	}
	for i, err := range errs[:len(workers)] {
		if err != nil {
			return fmt.Errorf("simulated worker %s: %w", workers[i].cfg.Name, err)
		}
	}
	return nil
}
