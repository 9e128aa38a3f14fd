package manager

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// liveness loses the workers that fell silent, with one timer for all of
// them: a sweep every timeout/4 closes each session whose worker said
// nothing (heartbeat or other message) for timeout. A silent worker is
// lost between timeout and 1.25 × timeout after its last word. The cost is
// one atomic load per worker per sweep: nothing per heartbeat but the
// store of its time, and no timer per worker.
type liveness struct {
	mu       sync.Mutex
	sessions map[*session]struct{} // guarded by mu: the connected workers' sessions
}

func newLiveness() *liveness { return &liveness{sessions: make(map[*session]struct{})} }

func (l *liveness) add(s *session) {
	l.mu.Lock()
	l.sessions[s] = struct{}{}
	l.mu.Unlock()
}

func (l *liveness) remove(s *session) {
	l.mu.Lock()
	delete(l.sessions, s)
	l.mu.Unlock()
}

// run sweeps until ctx ends.
func (l *liveness) run(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(max(timeout/4, time.Millisecond))
	defer t.Stop()
	var silent []*session
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			silent = l.silent(now, timeout, silent[:0])
			for _, s := range silent {
				idle := now.Sub(time.Unix(0, s.lastSeen.Load()))
				s.close(fmt.Sprintf("no heartbeat for %s", idle.Round(time.Second)))
			}
			clear(silent)
		}
	}
}

// silent appends to buf the sessions silent for timeout at now.
func (l *liveness) silent(now time.Time, timeout time.Duration, buf []*session) []*session {
	limit := now.Add(-timeout).UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.sessions {
		if s.lastSeen.Load() <= limit {
			buf = append(buf, s)
		}
	}
	return buf
}
