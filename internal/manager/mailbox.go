package manager

import (
	"sync"

	pb "trellis/internal/proto/trellisv1"
)

// mailbox holds task events for one client session until a Watch stream
// takes them. It never blocks the loop: it grows instead (bounded in
// practice by the session's tasks, a few events each).
type mailbox struct {
	mu     sync.Mutex // guards events
	events []*pb.TaskEvent
	signal chan struct{} // 1-slot: something was put
}

func newMailbox() *mailbox { return &mailbox{signal: make(chan struct{}, 1)} }

func (b *mailbox) put(ev *pb.TaskEvent) {
	b.mu.Lock()
	b.events = append(b.events, ev)
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// take returns and clears what is queued.
func (b *mailbox) take() []*pb.TaskEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.events
	b.events = nil
	return evs
}
