package clients

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	pb "trellis/internal/proto/trellisv1"
)

func seqs(evs []*pb.TaskEvent) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

// get returns the named session of tab, failing the test if it ended.
func get(t *testing.T, tab *Table, name string) *Session {
	t.Helper()
	s, err := tab.Get(name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	return s
}

// put puts n events in s and wakes its watchers, as the manager's loop
// does once it has handled an event.
func put(s *Session, n int) {
	for i := 0; i < n; i++ {
		s.Put(&pb.TaskEvent{TaskId: uint64(i + 1)})
	}
	s.table.Wake()
}

func TestSessionResume(t *testing.T) {
	tests := []struct {
		name  string
		put   int
		ack   uint64
		after uint64
		want  []uint64
	}{
		{"from the start", 3, 0, 0, []uint64{1, 2, 3}},
		{"resume after a cursor", 5, 0, 2, []uint64{3, 4, 5}},
		{"acknowledged events are gone", 5, 3, 0, []uint64{4, 5}},
		{"cursor past the acknowledgement", 5, 2, 4, []uint64{5}},
		{"nothing after the last", 3, 0, 3, nil},
		{"a cursor from the future", 3, 0, 9, nil},
		{"ack beyond the last", 3, 7, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := get(t, NewTable(), "s")
			put(s, tc.put)
			s.Ack(tc.ack)
			if diff := cmp.Diff(tc.want, seqs(s.After(tc.after))); diff != "" {
				t.Errorf("After(%d) seqs mismatch (-want +got):\n%s", tc.after, diff)
			}
		})
	}
}

func TestSessionNumbersOnAfterAck(t *testing.T) {
	s := get(t, NewTable(), "s")
	put(s, 3)
	s.Ack(3)
	put(s, 2)
	if diff := cmp.Diff([]uint64{4, 5}, seqs(s.After(0))); diff != "" {
		t.Errorf("seqs after an ack of everything (-want +got):\n%s", diff)
	}
	if held, _ := s.Held(); held != 2 {
		t.Errorf("Held() = %d, want 2", held)
	}
}

func TestSessionBounded(t *testing.T) {
	s := get(t, NewTable(), "s")
	put(s, MaxUnacked+10)
	held, dropped := s.Held()
	if held != MaxUnacked || dropped != 10 {
		t.Errorf("Held() = %d, %d; want %d, 10", held, dropped, MaxUnacked)
	}
	if evs := s.After(0); len(evs) != MaxUnacked || evs[0].Seq != 11 {
		t.Errorf("After(0): %d events from seq %d; want %d from 11", len(evs), evs[0].Seq, MaxUnacked)
	}
}

func TestSessionWakesEveryWatcher(t *testing.T) {
	s := get(t, NewTable(), "s")
	a, stopA := s.Watch()
	b, stopB := s.Watch()
	defer stopB()
	put(s, 2) // coalesced: one wake each
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Errorf("watcher %s was not woken", name)
		}
	}
	stopA()
	put(s, 1)
	select {
	case <-a:
		t.Errorf("a stopped watcher was woken")
	default:
	}
}

// TestPutWakesOnTableWake: Put keeps events without waking watchers; the
// table's Wake wakes the watchers of every session put to since the last
// one, once.
func TestPutWakesOnTableWake(t *testing.T) {
	tab := NewTable()
	a, b, idle := get(t, tab, "a"), get(t, tab, "b"), get(t, tab, "idle")
	chA, stopA := a.Watch()
	defer stopA()
	chB, stopB := b.Watch()
	defer stopB()
	chIdle, stopIdle := idle.Watch()
	defer stopIdle()
	for i := range 3 {
		a.Put(&pb.TaskEvent{TaskId: uint64(i + 1)})
	}
	b.Put(&pb.TaskEvent{TaskId: 9})
	woken := func() map[string]bool {
		got := make(map[string]bool)
		for name, ch := range map[string]<-chan struct{}{"a": chA, "b": chB, "idle": chIdle} {
			select {
			case <-ch:
				got[name] = true
			default:
			}
		}
		return got
	}
	if got := woken(); len(got) > 0 {
		t.Fatalf("watchers woken by Put alone: %v", got)
	}
	tab.Wake()
	if diff := cmp.Diff(map[string]bool{"a": true, "b": true}, woken()); diff != "" {
		t.Errorf("woken by Wake (-want +got):\n%s", diff)
	}
	tab.Wake()
	if got := woken(); len(got) > 0 {
		t.Errorf("woken by a second Wake with nothing put: %v", got)
	}
	if evs := a.After(0); len(evs) != 3 || evs[2].Seq != 3 {
		t.Errorf("a.After(0) = %v; want the 3 events put, seq 1 to 3", seqs(evs))
	}
}

func TestTableEnd(t *testing.T) {
	tab := NewTable()
	s := get(t, tab, "s")
	s.Keep("k", 7)
	put(s, 1)
	if got := get(t, tab, "s"); got != s {
		t.Fatalf("Get returned a new session for a known name")
	}
	if got := tab.End("s", "was ended by its client"); got != s {
		t.Errorf("End returned %p, want the session %p", got, s)
	}
	var ended *Ended
	if _, err := tab.Get("s"); !errors.As(err, &ended) || err.Error() != "session s was ended by its client" {
		t.Errorf("Get after End: %v; want *Ended %q", err, "session s was ended by its client")
	}
	if _, err := s.Read(0); !errors.As(err, &ended) {
		t.Errorf("Read after End: %v; want *Ended", err)
	}
	if got := tab.End("s", "again"); got != nil || tab.Len() != 0 {
		t.Errorf("a second End returned %v with %d sessions; want nil and none", got, tab.Len())
	}
	if _, err := tab.Get("s"); err == nil || err.Error() != "session s was ended by its client" {
		t.Errorf("Get after a second End: %v; want the first reason", err)
	}
	// A session ended before the table knew it: a late Submit is refused.
	if got := tab.End("unknown", "was ended by its client"); got != nil {
		t.Errorf("End of an unknown session returned %v, want nil", got)
	}
	if _, err := tab.Get("unknown"); !errors.As(err, &ended) {
		t.Errorf("Get of a session ended before it was known: %v; want *Ended", err)
	}
}

// TestUnnamedSessionNeverEnds: the session "" is shared by the clients
// that name none: ending it forgets its events and keys, nothing more.
func TestUnnamedSessionNeverEnds(t *testing.T) {
	tab := NewTable()
	s := get(t, tab, "")
	s.Keep("k", 7)
	if got := tab.End("", "was ended by its client"); got != nil {
		t.Errorf("End(\"\") returned a session to cancel")
	}
	if fresh := get(t, tab, ""); fresh == s {
		t.Errorf("after End, the unnamed session is the same")
	} else if _, ok := fresh.Task("k"); ok {
		t.Errorf("after End, the unnamed session still has its keys")
	}
}

func TestTableRemembersBoundedEnded(t *testing.T) {
	tab := NewTable()
	for i := range MaxEnded + 1 {
		tab.End(fmt.Sprint(i), "was ended by its client")
	}
	if _, err := tab.Get("0"); err != nil {
		t.Errorf("Get of the oldest of %d ended sessions: %v; want it forgotten", MaxEnded+1, err)
	}
	if _, err := tab.Get("1"); err == nil {
		t.Errorf("Get of the second oldest of %d ended sessions: no error; want it remembered", MaxEnded+1)
	}
}

// TestExpire: which sessions Expire ends, for a grace of a minute, as
// Watch streams open and close. Times are seconds from the start.
func TestExpire(t *testing.T) {
	type step struct {
		at   int    // seconds
		op   string // open, close (the last Reader opened on name), expire
		name string
		want []string // expire: the sessions it ends
	}
	open := func(at int, name string) step { return step{at: at, op: "open", name: name} }
	closeAt := func(at int, name string) step { return step{at: at, op: "close", name: name} }
	expire := func(at int, want ...string) step { return step{at: at, op: "expire", want: want} }
	tests := []struct {
		name  string
		get   []string // sessions made without a Reader
		steps []step
	}{
		{"never watched: never expires", []string{"a"}, []step{expire(3600)}},
		{"watched and still open: never expires", nil, []step{open(0, "a"), expire(3600)}},
		{"away for the grace", nil, []step{open(0, "a"), closeAt(10, "a"), expire(69), expire(70, "a")}},
		{"back within the grace: the clock starts again", nil, []step{
			open(0, "a"), closeAt(10, "a"), open(50, "a"), expire(200), closeAt(200, "a"), expire(259), expire(260, "a")}},
		{"two streams: away once the last closes", nil, []step{
			open(0, "a"), open(0, "a"), closeAt(10, "a"), expire(100), closeAt(100, "a"), expire(159), expire(160, "a")}},
		{"several at once, by name", nil, []step{
			open(0, "b"), open(0, "a"), open(0, "c"), closeAt(0, "c"), closeAt(0, "a"), closeAt(0, "b"), expire(60, "a", "b", "c")}},
		{"ended once", nil, []step{open(0, "a"), closeAt(0, "a"), expire(60, "a"), expire(120)}},
		{"the unnamed session never expires", nil, []step{open(0, ""), closeAt(0, ""), expire(3600)}},
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tab := NewTable()
			for _, name := range tc.get {
				get(t, tab, name)
			}
			readers := make(map[string][]*Reader)
			for i, st := range tc.steps {
				now := start.Add(time.Duration(st.at) * time.Second)
				switch st.op {
				case "open":
					r, err := get(t, tab, st.name).Read(0)
					if err != nil {
						t.Fatalf("step %d: Read: %v", i, err)
					}
					readers[st.name] = append(readers[st.name], r)
				case "close":
					rs := readers[st.name]
					rs[len(rs)-1].Close(now)
					readers[st.name] = rs[:len(rs)-1]
				case "expire":
					var got []string
					for _, s := range tab.Expire(now, time.Minute, "was ended: away") {
						got = append(got, s.Name())
					}
					if diff := cmp.Diff(st.want, got); diff != "" {
						t.Errorf("step %d: Expire at %ds (-want +got):\n%s", i, st.at, diff)
					}
				}
			}
		})
	}
}

func TestReaderNext(t *testing.T) {
	s := get(t, NewTable(), "s")
	put(s, 3)
	r, err := s.Read(1) // acknowledges 1
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	evs, err := r.Next(ctx)
	if diff := cmp.Diff([]uint64{2, 3}, seqs(evs)); diff != "" || err != nil {
		t.Fatalf("first Next: %v (-want +got):\n%s", err, diff)
	}
	go put(s, 1) // exits at once: wakes the reader
	if evs, err = r.Next(ctx); err != nil || len(evs) != 1 || evs[0].Seq != 4 {
		t.Fatalf("second Next = %v, %v; want event 4", seqs(evs), err)
	}
	cancel()
	if _, err := r.Next(ctx); err == nil {
		t.Errorf("Next after ctx ended: no error")
	}
	if held, _ := s.Held(); held != 3 {
		t.Errorf("Held() = %d, want 3 (event 1 acknowledged)", held)
	}
}

// TestReaderSeesTheEnd: a Reader open when its session ends returns the
// events it has not returned yet, then an *Ended error; Close after the
// end is harmless.
func TestReaderSeesTheEnd(t *testing.T) {
	tab := NewTable()
	s := get(t, tab, "s")
	r, err := s.Read(0)
	if err != nil {
		t.Fatal(err)
	}
	put(s, 2)
	tab.End("s", "was ended by its client")
	ctx := context.Background()
	if evs, err := r.Next(ctx); err != nil || len(evs) != 2 {
		t.Fatalf("Next after End: %v, %v; want the 2 events first", seqs(evs), err)
	}
	var ended *Ended
	if evs, err := r.Next(ctx); !errors.As(err, &ended) {
		t.Errorf("Next at the end: %v, %v; want *Ended", seqs(evs), err)
	}
	r.Close(time.Now())
	r.Close(time.Now())
}
