package worker

import (
	"sync"
	"testing"
	"time"
)

// TestRunnersReused: attempts run one after another take the same runner
// goroutine; attempts at once take one each; close waits for them all.
func TestRunnersReused(t *testing.T) {
	r := newRunners()
	first := make(chan struct{})
	r.run(func() { close(first) })
	<-first
	for i := range 50 {
		// The runner takes the next once it waits on r.work again: handed
		// is run's first select, without its fallback of a new runner, so
		// each success is the one runner reused.
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
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 8 {
		wg.Add(1)
		r.run(func() { wg.Done(); <-release })
	}
	wg.Wait() // all eight run at once: none waited for another
	if got := r.started.Load(); got < 8 {
		t.Errorf("runners started after 8 runs at once: %d, want 8 or more", got)
	}
	close(release)
	r.close()
	if got := r.live.Load(); got != 0 {
		t.Errorf("runners live after close: %d, want 0", got)
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
