package trellis

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	pb "trellis/internal/proto/trellisv1"
)

// TestUnplaceableMs: Task.UnplaceableTimeout on the wire keeps a limit a
// limit (never 0, the manager's default), and any negative one as -1.
func TestUnplaceableMs(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 0},
		{-time.Nanosecond, -1},
		{-time.Hour, -1},
		{time.Nanosecond, 1},
		{1500 * time.Microsecond, 2},
		{2 * time.Second, 2000},
	} {
		if got := unplaceableMs(tc.d); got != tc.want {
			t.Errorf("unplaceableMs(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestUnplaceableOfManyTasks: one event that tells several tasks why they
// wait (the manager's way: one per shape, not one per task) reaches
// WithEvents as an event of each task, and so does the one that clears it.
func TestUnplaceableOfManyTasks(t *testing.T) {
	f := newFakeManager()
	seen := make(chan Event, 16)
	c := dialFake(t, f, WithEvents(func(ev Event) { seen <- ev }))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tasks []*Task
	for _, name := range []string{"a", "b", "c"} {
		task := NewTask("true")
		task.Name = name
		tasks = append(tasks, task)
	}
	hs, err := c.Submit(ctx, tasks...)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	for _, why := range []string{"no worker is connected", ""} {
		ev := f.event(hs[0].ID, pb.TaskState_TASK_STATE_WAITING, nil)
		ev.Unplaceable = why
		for _, h := range hs[1:] {
			ev.AlsoTaskIds = append(ev.AlsoTaskIds, h.ID)
			ev.AlsoKeys = append(ev.AlsoKeys, f.keys[h.ID])
		}
		f.events <- &pb.TaskEvents{Events: []*pb.TaskEvent{ev}}
		var got []string
		for range hs {
			select {
			case e := <-seen:
				got = append(got, fmt.Sprintf("%s %d %s %q", e.Name, e.Task, e.State, e.Unplaceable))
			case <-ctx.Done():
				t.Fatalf("events seen after one that told three tasks %q: %q; want three", why, got)
			}
		}
		var want []string
		for _, h := range hs {
			want = append(want, fmt.Sprintf("%s %d %s %q", h.Name, h.ID, StateWaiting, why))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("events of one event that told three tasks %q (-want +got):\n%s", why, diff)
		}
	}
}
