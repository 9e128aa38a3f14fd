// Package clients keeps what the manager owes each client session: its
// task events, numbered and held until the client acknowledges them, and
// the keys the client gave its tasks.
//
// Events of a session are numbered 1, 2, 3, … (TaskEvent.Seq). A Watch
// stream sends them from a cursor; the client applies each once, in order,
// and acknowledges what it applied (Ack, or the cursor of its next Watch).
// A stream that breaks loses nothing: the next one resumes from the
// client's cursor. A session therefore holds at most the events its client
// has not acknowledged, and never more than MaxUnacked of them: beyond
// that the oldest go (Dropped counts them), so a client that never
// acknowledges cannot grow the manager without bound.
//
// Keys are chosen by the client, unique in its session; the loop uses them
// to make a submit idempotent. They belong to the loop goroutine alone.
package clients

import (
	"context"
	"sync"

	pb "trellis/internal/proto/trellisv1"
)

// MaxUnacked bounds the events one session holds for its client.
const MaxUnacked = 1 << 18

// Table is the manager's sessions by name. It is safe for concurrent use.
type Table struct {
	mu       sync.Mutex // guards sessions
	sessions map[string]*Session
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{sessions: make(map[string]*Session)} }

// Get returns the named session, making it if it is new.
func (t *Table) Get(name string) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sessions[name]
	if s == nil {
		s = &Session{next: 1, first: 1, keys: make(map[string]uint64), watchers: make(map[chan struct{}]bool)}
		t.sessions[name] = s
	}
	return s
}

// Lookup returns the named session, or nil if there is none.
func (t *Table) Lookup(name string) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[name]
}

// End forgets the named session: its events and keys.
func (t *Table) End(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.sessions, name)
}

// Len is the number of sessions.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// Session is one client session.
type Session struct {
	mu       sync.Mutex      // guards first, events, next, dropped, watchers
	first    uint64          // seq of events[0]
	events   []*pb.TaskEvent // not yet acknowledged, in seq order
	next     uint64          // seq of the next event put
	dropped  uint64          // events dropped unacknowledged, over MaxUnacked
	watchers map[chan struct{}]bool

	keys map[string]uint64 // task key -> task ID; the loop's alone
}

// Put numbers ev, keeps it until it is acknowledged, and wakes watchers.
// ev must not change afterwards.
func (s *Session) Put(ev *pb.TaskEvent) {
	s.mu.Lock()
	ev.Seq = s.next
	s.next++
	s.events = append(s.events, ev)
	if len(s.events) > MaxUnacked {
		s.dropLocked(s.first)
		s.dropped++
	}
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
}

// After returns the events with seq greater than after, in order.
func (s *Session) After(after uint64) []*pb.TaskEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if after < s.first {
		after = s.first - 1
	}
	i := after - s.first + 1
	if i >= uint64(len(s.events)) {
		return nil
	}
	return append([]*pb.TaskEvent(nil), s.events[i:]...)
}

// Ack forgets the events up to seq: the client has applied them.
func (s *Session) Ack(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq >= s.first {
		s.dropLocked(min(seq, s.next-1))
	}
}

// dropLocked forgets the events up to seq, which is below s.next.
func (s *Session) dropLocked(seq uint64) {
	n := seq - s.first + 1
	clear(s.events[:n])
	s.events = s.events[n:]
	s.first = seq + 1
	if len(s.events) == 0 {
		s.events = nil // let the backing array go
	}
}

// Held returns how many events the session holds, and how many it dropped
// unacknowledged.
func (s *Session) Held() (held int, dropped uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events), s.dropped
}

// Watch returns a channel that receives a value (coalesced) after each Put,
// and a function that stops it.
func (s *Session) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watchers[ch] = true
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}
}

// Reader follows a session's events for one stream, from a cursor.
type Reader struct {
	s      *Session
	wake   <-chan struct{}
	stop   func()
	cursor uint64 // seq of the last event returned
}

// Read acknowledges the session's events up to after and returns a Reader
// of those after it. Close it when the stream ends.
func (s *Session) Read(after uint64) *Reader {
	s.Ack(after)
	wake, stop := s.Watch()
	return &Reader{s: s, wake: wake, stop: stop, cursor: after}
}

// Next waits for events after the last it returned and returns them, in
// order, or ctx's error if ctx ends first.
func (r *Reader) Next(ctx context.Context) ([]*pb.TaskEvent, error) {
	for {
		if evs := r.s.After(r.cursor); len(evs) > 0 {
			r.cursor = evs[len(evs)-1].Seq
			return evs, nil
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops the reader.
func (r *Reader) Close() { r.stop() }

// Task returns the ID of the task the session submitted with key.
func (s *Session) Task(key string) (uint64, bool) {
	id, ok := s.keys[key]
	return id, ok
}

// Keep remembers that key names task id.
func (s *Session) Keep(key string, id uint64) { s.keys[key] = id }
