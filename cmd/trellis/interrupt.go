package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// interrupts returns a context that ends on the first SIGINT or SIGTERM,
// and a function that tells which signal ended it (nil while none did). A
// second signal exits at once; remote says the tasks run at a manager
// elsewhere, which then cancels them after its client grace.
func interrupts(remote bool) (ctx context.Context, interrupted func() os.Signal, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value // os.Signal
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // exits when stop is called, or with the process on a second signal
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case sig := <-sigs:
				if n == 0 {
					got.Store(sig)
					cancel()
					continue
				}
				rest := ", without waiting for the workflow's tasks to be killed"
				if remote {
					rest = "; the manager cancels the workflow's unfinished tasks once this client has been away for its --client-grace, unless the same trellis run is started again within it (it resumes the workflow)"
				}
				fmt.Fprintf(os.Stderr, "trellis: %s again: exiting at once%s\n", signalName(sig), rest)
				os.Exit(exitCode(sig))
			case <-done:
				return
			}
		}
	}()
	interrupted = func() os.Signal {
		sig, _ := got.Load().(os.Signal)
		return sig
	}
	return ctx, interrupted, func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
		cancel()
	}
}

// interruptedExit says that sig interrupted the workflow and whether its
// unfinished tasks were cancelled (closeErr: ending the session failed),
// and exits with 128 plus the signal's number, as shells do.
func interruptedExit(sig os.Signal, closeErr error) error {
	if closeErr != nil {
		fmt.Fprintf(os.Stderr, "trellis: %s: the workflow is interrupted, but its session could not be ended (%v): the manager cancels its unfinished tasks once this client has been away for its --client-grace\n", signalName(sig), closeErr)
	} else {
		fmt.Fprintf(os.Stderr, "trellis: %s: the workflow is interrupted and its unfinished tasks are cancelled\n", signalName(sig))
	}
	return exitError{exitCode(sig)}
}

func signalName(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT"
}

func exitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}
