package worker

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestRunnersReused: attempts run one after another take the same runner
// goroutine; attempts at once take one each; close waits for them all.
func TestRunnersReused(t *testing.T) {
	r := newRunners()
	before := runtime.NumGoroutine()
	first := make(chan struct{})
	r.run(func() { close(first) })
	<-first
	for i := range 50 {
		// The runner takes the next once it waits on r.work again (the
		// send that run tries first): poll for it.
		done := make(chan struct{})
		deadline := time.Now().Add(10 * time.Second)
		for !handed(r, func() { close(done) }) {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no runner idle 10s after the last ended", i)
			}
			time.Sleep(time.Millisecond)
		}
		<-done
	}
	if got := runtime.NumGoroutine() - before; got != 1 {
		t.Errorf("goroutines after 50 runs one after another: %d more, want 1 (one runner, reused)", got)
	}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		r.run(func() { wg.Done(); <-release })
	}
	wg.Wait() // all eight run at once: none waited for another
	close(release)
	r.close()
	// close returns once every runner called Done, a moment before it exits.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines 10s after close: %d more, want 0", runtime.NumGoroutine()-before)
		}
		time.Sleep(time.Millisecond)
	}
}

// handed reports whether an idle runner took f.
func handed(r *runners, f func()) bool {
	select {
	case r.work <- f:
		return true
	default:
		return false
	}
}
