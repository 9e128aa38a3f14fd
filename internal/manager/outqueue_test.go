package manager

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	pb "trellis/internal/proto/trellisv1"
)

// The outbound queue keeps order, signals only once woken, says which
// push is the first since a wake, and refuses the message past
// outboundLimit.
func TestOutQueue(t *testing.T) {
	q := newOutQueue()
	for i := range outboundLimit {
		first, ok := q.push(&pb.ManagerMessage{Msg: &pb.ManagerMessage_Run{Run: &pb.Run{TaskId: uint64(i)}}})
		if !ok {
			t.Fatalf("push %d of %d refused, want it queued", i+1, outboundLimit)
		}
		if first != (i == 0) {
			t.Fatalf("push %d: first = %v, want %v", i+1, first, i == 0)
		}
	}
	if _, ok := q.push(&pb.ManagerMessage{}); ok {
		t.Errorf("push past %d queued messages accepted, want it refused", outboundLimit)
	}
	select {
	case <-q.ready:
		t.Fatal("ready signal before a wake: the sender would write each push alone")
	default:
	}
	q.wake()
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready signal with messages queued, after a wake")
	}
	msgs := q.take()
	var got []uint64
	for _, m := range msgs[:3] {
		got = append(got, m.GetRun().TaskId)
	}
	if diff := cmp.Diff([]uint64{0, 1, 2}, got); diff != "" || len(msgs) != outboundLimit {
		t.Errorf("take: %d messages, first (-want +got):\n%s", len(msgs), diff)
	}
	rest := q.take()
	if first, ok := q.push(&pb.ManagerMessage{}); len(rest) != 0 || !ok || !first {
		t.Errorf("after take and wake: %d left, push ok %v first %v; want empty, room, and the first", len(rest), ok, first)
	}
}
