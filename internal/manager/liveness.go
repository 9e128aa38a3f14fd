package manager

import (
	"context"
	"fmt"
	"sync"
	"time"

	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
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

// pingSweep bounds the sweep's period, so that a framed stream's ping
// goes within it of proto.PingIdle, and its loss within it of the answer's
// timeout.
const pingSweep = 5 * time.Second

// run sweeps until ctx ends.
func (l *liveness) run(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(max(min(timeout/4, pingSweep), time.Millisecond))
	defer t.Stop()
	var silent, ping []*session
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			silent, ping = l.silent(now, timeout, silent[:0], ping[:0])
			for _, s := range silent {
				idle := now.Sub(time.Unix(0, s.lastSeen.Load()))
				if s.pings && idle < timeout {
					s.close(fmt.Sprintf("no answer to a ping within %s (silent for %s)", proto.PingTimeout, idle.Round(time.Second)))
				} else {
					s.close(fmt.Sprintf("no heartbeat for %s", idle.Round(time.Second)))
				}
			}
			for _, s := range ping {
				if s.enqueue(&pb.ManagerMessage{Msg: &pb.ManagerMessage_Ping{Ping: &pb.Ping{}}}) {
					s.out.wake()
				}
			}
			clear(silent)
			clear(ping)
		}
	}
}

// silent appends to buf the sessions silent for timeout at now, and those
// with pings silent for proto.PingIdle and not answering a ping within
// proto.PingTimeout; to ping, those with pings silent for PingIdle and not
// pinged since (marked pinged).
func (l *liveness) silent(now time.Time, timeout time.Duration, buf, ping []*session) ([]*session, []*session) {
	limit := now.Add(-timeout).UnixNano()
	pingAt := now.Add(-proto.PingIdle).UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.sessions {
		seen := s.lastSeen.Load()
		switch {
		case seen <= limit:
			buf = append(buf, s)
		case !s.pings || seen > pingAt:
		case s.pinged.Load() != seen:
			s.pinged.Store(seen)
			s.pingedAt.Store(now.UnixNano())
			ping = append(ping, s)
		case now.UnixNano()-s.pingedAt.Load() >= int64(proto.PingTimeout):
			buf = append(buf, s)
		}
	}
	return buf, ping
}
