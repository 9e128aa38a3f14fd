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
// to make a submit idempotent. They belong to the loop goroutine alone, as
// does the list of the session's tasks (Tasks).
//
// A session ends when its client ends it (Table.End), or when its client
// has been away too long (Table.Expire): a session is watched from the
// first Reader opened on it (a Watch stream), and once its last Reader
// closed it is away, until a Reader opens again. Expire ends the sessions
// away for at least the grace it is given; a session never watched (a
// client that only submits) never expires. The package reads no clock:
// the caller says when a Reader closed and what time it is. An ended
// session is remembered by name (the last MaxEnded of them): getting it,
// or reading it, returns an *Ended error that says why it ended. The
// unnamed session "" is shared by the clients that name none: it never
// expires, and ending it only forgets its events and keys.
package clients

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pb "trellis/internal/proto/trellisv1"
)

// MaxUnacked bounds the events one session holds for its client.
const MaxUnacked = 1 << 18

// MaxEnded bounds how many ended sessions a Table remembers.
const MaxEnded = 1 << 14

// Ended is the error for a session that has ended.
type Ended struct {
	Session string
	Why     string // how it ended, as a predicate: "was ended by its client"
}

func (e *Ended) Error() string { return fmt.Sprintf("session %s %s", e.Session, e.Why) }

// Table is the manager's sessions by name. It is safe for concurrent use.
type Table struct {
	mu       sync.Mutex // guards sessions, ended, endedOrder
	sessions map[string]*Session
	ended    map[string]string // why each ended session ended
	// endedOrder is the names in ended, oldest first: past MaxEnded the
	// oldest is forgotten.
	endedOrder []string

	wakeMu sync.Mutex // guards unwoken; taken with no session's mu held
	// unwoken: sessions put to since the last Wake, their watchers not
	// yet woken.
	unwoken []*Session
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{sessions: make(map[string]*Session), ended: make(map[string]string)}
}

// Get returns the named session, making it if it is new, or an *Ended
// error if it has ended.
func (t *Table) Get(name string) (*Session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if why, ok := t.ended[name]; ok {
		return nil, &Ended{Session: name, Why: why}
	}
	s := t.sessions[name]
	if s == nil {
		s = &Session{name: name, table: t, next: 1, first: 1, keys: make(map[string]uint64), watchers: make(map[chan struct{}]bool)}
		t.sessions[name] = s
	}
	return s, nil
}

// Lookup returns the named session, or nil if there is none.
func (t *Table) Lookup(name string) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sessions[name]
}

// End ends the named session for why, and returns it (nil if it had no
// events, keys or streams yet, or had ended already). Its Readers then
// return an *Ended error once they have returned its events, and the
// session is no longer in the table: the caller still holding it may put
// events in it, which no one reads.
func (t *Table) End(name, why string) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	if name == "" { // shared: it only forgets its events and keys
		delete(t.sessions, name)
		return nil
	}
	if _, ok := t.ended[name]; ok {
		return nil
	}
	s := t.sessions[name]
	if s != nil {
		s.mu.Lock()
		t.endLocked(s, why)
		s.mu.Unlock()
		return s
	}
	t.remember(name, why)
	return nil
}

// Expire ends, for why, every session whose client has been away for at
// least grace at now: it was watched, and its last Reader closed grace or
// longer before now. It returns them in the order of their names.
func (t *Table) Expire(now time.Time, grace time.Duration, why string) []*Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gone []*Session
	for name, s := range t.sessions {
		if name == "" {
			continue // shared by every client that names no session
		}
		s.mu.Lock()
		if s.watched && s.readers == 0 && now.Sub(s.away) >= grace {
			t.endLocked(s, why)
			gone = append(gone, s)
		}
		s.mu.Unlock()
	}
	slices.SortFunc(gone, func(a, b *Session) int { return strings.Compare(a.name, b.name) })
	return gone
}

// endLocked ends s, which is in the table, for why; it wakes its Readers.
// t.mu and s.mu are held.
func (t *Table) endLocked(s *Session, why string) {
	s.ended = why
	s.wakeLocked()
	delete(t.sessions, s.name)
	t.remember(s.name, why)
}

// remember notes that the named session ended for why, forgetting the
// oldest ended session past MaxEnded. t.mu is held.
func (t *Table) remember(name, why string) {
	t.ended[name] = why
	t.endedOrder = append(t.endedOrder, name)
	if len(t.endedOrder) > MaxEnded {
		delete(t.ended, t.endedOrder[0])
		t.endedOrder[0] = ""
		t.endedOrder = t.endedOrder[1:]
	}
}

// Len is the number of sessions.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// Session is one client session.
type Session struct {
	name  string
	table *Table // whose Wake wakes its watchers after a Put

	mu       sync.Mutex      // guards the fields below, up to keys
	first    uint64          // seq of events[0]
	events   []*pb.TaskEvent // not yet acknowledged, in seq order
	next     uint64          // seq of the next event put
	dropped  uint64          // events dropped unacknowledged, over MaxUnacked
	unwoken  bool            // events were put since the table's last Wake
	watchers map[chan struct{}]bool
	readers  int       // Readers open
	watched  bool      // a Reader was ever opened
	away     time.Time // when the last Reader closed
	ended    string    // why the session ended; "" while it lives

	keys  map[string]uint64 // task key -> task ID; the loop's alone
	tasks []uint64          // IDs of the tasks submitted in the session; the loop's alone

	// resumable, results and unkept: see resume.go; the loop's alone.
	resumable bool
	results   map[string]*pb.TaskEvent // DONE events of finished tasks, by key
	unkept    uint64                   // results not kept past MaxKept
	tailBytes int                      // stdout and stderr bytes in results
}

// Name is the session's name.
func (s *Session) Name() string { return s.name }

// Put numbers ev and keeps it until it is acknowledged. ev must not
// change afterwards. It wakes no watcher: the table's Wake does, once the
// caller has put what belongs together (the manager's loop calls it when
// it has handled an event), so that a watcher sends the events of one
// step of the loop in one message rather than the first alone.
func (s *Session) Put(ev *pb.TaskEvent) {
	s.mu.Lock()
	ev.Seq = s.next
	s.next++
	s.events = append(s.events, ev)
	if len(s.events) > MaxUnacked {
		s.dropLocked(s.first)
		s.dropped++
	}
	first := !s.unwoken
	s.unwoken = true
	s.mu.Unlock()
	if first {
		t := s.table
		t.wakeMu.Lock()
		t.unwoken = append(t.unwoken, s)
		t.wakeMu.Unlock()
	}
}

// Wake wakes the watchers of every session put to since the last Wake.
func (t *Table) Wake() {
	t.wakeMu.Lock()
	unwoken := t.unwoken
	t.unwoken = nil
	t.wakeMu.Unlock()
	for _, s := range unwoken {
		s.mu.Lock()
		s.unwoken = false
		s.wakeLocked()
		s.mu.Unlock()
	}
}

// wakeLocked wakes every watcher. s.mu is held.
func (s *Session) wakeLocked() {
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
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

// Watch returns a channel that receives a value (coalesced) at the
// Table's Wake after a Put (once per loop step, not per event) and when
// the session ends, and a function that stops it.
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
	closed bool
}

// Read acknowledges the session's events up to after and returns a Reader
// of those after it, or an *Ended error if the session has ended. While a
// Reader is open the client counts as present; Close it when the stream
// ends.
func (s *Session) Read(after uint64) (*Reader, error) {
	s.mu.Lock()
	if s.ended != "" {
		s.mu.Unlock()
		return nil, &Ended{Session: s.name, Why: s.ended}
	}
	s.readers++
	s.watched = true
	s.mu.Unlock()
	s.Ack(after)
	wake, stop := s.Watch()
	return &Reader{s: s, wake: wake, stop: stop, cursor: after}, nil
}

// Next waits for events after the last it returned and returns them, in
// order; ctx's error if ctx ends first; or an *Ended error once the
// session has ended and every event is returned.
func (r *Reader) Next(ctx context.Context) ([]*pb.TaskEvent, error) {
	for {
		if evs := r.s.After(r.cursor); len(evs) > 0 {
			r.cursor = evs[len(evs)-1].Seq
			return evs, nil
		}
		r.s.mu.Lock()
		why := r.s.ended
		r.s.mu.Unlock()
		if why != "" {
			return nil, &Ended{Session: r.s.name, Why: why}
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops the reader. now is when: if it was the session's last
// Reader, its client counts as away from then (see Table.Expire). A second
// Close does nothing.
func (r *Reader) Close(now time.Time) {
	if r.closed {
		return
	}
	r.closed = true
	r.stop()
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readers--; s.readers == 0 {
		s.away = now
	}
}

// Task returns the ID of the task the session submitted with key.
func (s *Session) Task(key string) (uint64, bool) {
	id, ok := s.keys[key]
	return id, ok
}

// Keep remembers that key names task id.
func (s *Session) Keep(key string, id uint64) { s.keys[key] = id }

// Submitted remembers that task id was submitted in the session, for
// Tasks. The unnamed session, which never ends, remembers none.
func (s *Session) Submitted(id uint64) {
	if s.name != "" {
		s.tasks = append(s.tasks, id)
	}
}

// Tasks returns the IDs of the tasks submitted in the session, in order:
// those whose unfinished tasks to cancel when it ends.
func (s *Session) Tasks() []uint64 { return s.tasks }
