package manager

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	pb "trellis/internal/proto/trellisv1"
)

// The outbound queue keeps order, signals while not empty, and refuses
// the message past outboundLimit.
func TestOutQueue(t *testing.T) {
	q := newOutQueue()
	for i := range outboundLimit {
		if !q.push(&pb.ManagerMessage{Msg: &pb.ManagerMessage_Run{Run: &pb.Run{TaskId: uint64(i)}}}) {
			t.Fatalf("push %d of %d refused, want it queued", i+1, outboundLimit)
		}
	}
	if q.push(&pb.ManagerMessage{}) {
		t.Errorf("push past %d queued messages accepted, want it refused", outboundLimit)
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready signal with messages queued")
	}
	msgs := q.take()
	var got []uint64
	for _, m := range msgs[:3] {
		got = append(got, m.GetRun().TaskId)
	}
	if diff := cmp.Diff([]uint64{0, 1, 2}, got); diff != "" || len(msgs) != outboundLimit {
		t.Errorf("take: %d messages, first (-want +got):\n%s", len(msgs), diff)
	}
	if rest := q.take(); len(rest) != 0 || !q.push(&pb.ManagerMessage{}) {
		t.Errorf("after take: %d left, or a push refused; want empty and room", len(rest))
	}
}
