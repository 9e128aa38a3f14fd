package clients

import (
	"context"
	"testing"

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

func put(s *Session, n int) {
	for i := 0; i < n; i++ {
		s.Put(&pb.TaskEvent{TaskId: uint64(i + 1)})
	}
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
			s := NewTable().Get("s")
			put(s, tc.put)
			s.Ack(tc.ack)
			if diff := cmp.Diff(tc.want, seqs(s.After(tc.after))); diff != "" {
				t.Errorf("After(%d) seqs mismatch (-want +got):\n%s", tc.after, diff)
			}
		})
	}
}

func TestSessionNumbersOnAfterAck(t *testing.T) {
	s := NewTable().Get("s")
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
	s := NewTable().Get("s")
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
	s := NewTable().Get("s")
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

func TestTableEnd(t *testing.T) {
	tab := NewTable()
	s := tab.Get("s")
	s.Keep("k", 7)
	put(s, 1)
	if got := tab.Get("s"); got != s {
		t.Fatalf("Get returned a new session for a known name")
	}
	tab.End("s")
	fresh := tab.Get("s")
	if _, ok := fresh.Task("k"); ok || len(fresh.After(0)) != 0 || tab.Len() != 1 {
		t.Errorf("after End, the session still has its keys or events")
	}
}

func TestReaderNext(t *testing.T) {
	s := NewTable().Get("s")
	put(s, 3)
	r := s.Read(1) // acknowledges 1
	defer r.Close()
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
