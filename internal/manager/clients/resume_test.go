package clients

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	pb "trellis/internal/proto/trellisv1"
)

func TestResubmitFinds(t *testing.T) {
	done := func(id uint64) *pb.TaskEvent {
		return &pb.TaskEvent{TaskId: id, Key: "k" + string(rune('0'+id)), State: pb.TaskState_TASK_STATE_DONE, Attempt: 1,
			Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}
	}
	tests := []struct {
		name      string
		resumable bool
		kept      []uint64 // tasks (keys k1, k2, k3 name tasks 1, 2, 3) whose ends the session kept
		finished  []uint64 // tasks that have finished
		keys      []string
		want      Resubmission
		wantErr   bool
	}{
		{name: "new keys", resumable: true, keys: []string{"n1", "n2"}},
		{name: "no keys", resumable: true, keys: []string{"", ""}},
		{name: "known, none finished", resumable: true, keys: []string{"k1", "k2"},
			want: Resubmission{Again: true, IDs: []uint64{1, 2}}},
		{name: "known, one finished, kept", resumable: true, kept: []uint64{2}, finished: []uint64{2}, keys: []string{"k1", "k2"},
			want: Resubmission{Again: true, IDs: []uint64{1, 2}, Finished: []uint64{2}, Resend: []*pb.TaskEvent{done(2)}}},
		{name: "order of the keys", resumable: true, kept: []uint64{1, 2, 3}, finished: []uint64{1, 2, 3}, keys: []string{"k3", "k1"},
			want: Resubmission{Again: true, IDs: []uint64{3, 1}, Finished: []uint64{3, 1}, Resend: []*pb.TaskEvent{done(3), done(1)}}},
		{name: "not resumable: nothing sent again", kept: nil, finished: []uint64{1}, keys: []string{"k1", "k2"},
			want: Resubmission{Again: true, IDs: []uint64{1, 2}, Finished: []uint64{1}}},
		{name: "finished, not kept", resumable: true, finished: []uint64{1}, keys: []string{"k1"}, wantErr: true},
		{name: "known mixed with new", resumable: true, keys: []string{"k1", "n1"}, wantErr: true},
		{name: "a known key twice", resumable: true, kept: []uint64{1}, finished: []uint64{1}, keys: []string{"k1", "k1"},
			want: Resubmission{Again: true, IDs: []uint64{1, 1}, Finished: []uint64{1, 1}, Resend: []*pb.TaskEvent{done(1), done(1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := NewTable().Get("s")
			if tc.resumable {
				s.SetResumable()
			}
			for id := uint64(1); id <= 3; id++ {
				s.Keep("k"+string(rune('0'+id)), id)
			}
			for _, id := range tc.kept {
				ev := done(id)
				ev.Seq = 40 + id // sent before: the copy has no number
				s.Finished(ev.Key, ev)
			}
			finished := make(map[uint64]bool)
			for _, id := range tc.finished {
				finished[id] = true
			}
			got, err := s.Resubmit(tc.keys, func(id uint64) bool { return finished[id] })
			if (err != nil) != tc.wantErr {
				t.Fatalf("Resubmit(%v): error %v, want error %v", tc.keys, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Resubmit(%v) mismatch (-want +got):\n%s", tc.keys, diff)
			}
		})
	}
}

func TestFinishedKeptOnlyWhenResumable(t *testing.T) {
	tab := NewTable()
	plain, _ := tab.Get("plain")
	plain.Finished("k", &pb.TaskEvent{Key: "k"})
	shared, _ := tab.Get("")
	shared.SetResumable()
	shared.Finished("k", &pb.TaskEvent{Key: "k"})
	mine, _ := tab.Get("mine")
	mine.SetResumable()
	mine.Finished("k", &pb.TaskEvent{Key: "k"})
	mine.Finished("", &pb.TaskEvent{})
	for _, tc := range []struct {
		s    *Session
		want int
	}{{plain, 0}, {shared, 0}, {mine, 1}} {
		if kept, _ := tc.s.Kept(); kept != tc.want {
			t.Errorf("session %q keeps %d results, want %d", tc.s.Name(), kept, tc.want)
		}
	}
}

// TestKeptTailsBounded: past maxKeptTailBytes of stdout and stderr, a
// resumable session keeps results without them, marked truncated, and
// leaves the event its client was sent as it was.
func TestKeptTailsBounded(t *testing.T) {
	defer func(n int) { maxKeptTailBytes = n }(maxKeptTailBytes)
	maxKeptTailBytes = 10
	s, _ := NewTable().Get("s")
	s.SetResumable()
	ev := func(id uint64, out string) *pb.TaskEvent {
		return &pb.TaskEvent{TaskId: id, Key: fmt.Sprint("k", id), State: pb.TaskState_TASK_STATE_DONE,
			Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Stdout: []byte(out), Stderr: []byte("e")}}
	}
	first, second := ev(1, "12345678"), ev(2, "abc")
	s.Keep("k1", 1)
	s.Keep("k2", 2)
	s.Finished("k1", first)
	s.Finished("k2", second)
	r, err := s.Resubmit([]string{"k1", "k2"}, func(uint64) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	want := []*pb.TaskEvent{ev(1, "12345678"), ev(2, "")}
	want[1].Outcome.Stderr, want[1].Outcome.StdoutTruncated, want[1].Outcome.StderrTruncated = nil, true, true
	if diff := cmp.Diff(want, r.Resend, protocmp.Transform()); diff != "" {
		t.Errorf("results sent again (-want +got):\n%s", diff)
	}
	if string(second.Outcome.Stdout) != "abc" {
		t.Errorf("the event sent first was changed: stdout %q", second.Outcome.Stdout)
	}
}
