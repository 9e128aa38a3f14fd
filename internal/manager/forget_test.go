package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/journal/journaltest"
	pb "trellis/internal/proto/trellisv1"
)

// forgetRecords is a journal of sessions that end one after another while
// a live one goes on: s0 (tasks 1 and 2), s1 (4) and s2 (5) end with every
// task ended; s5 (6) ended before its task's end was journaled; s3 (7, 8)
// submitted its tasks twice (a resubmit); s4 had a submit refused (a
// library not installed) before one of task 9; s6 (10) ended last; the
// live session has task 3 (dispatched) and 11 (queued).
func forgetRecords() [][]byte {
	cmd := func(key string) *pb.TaskSpec {
		return &pb.TaskSpec{Name: key, Key: key, Command: "true", Resources: &pb.Resources{Cores: 1}}
	}
	submit := func(session string, tasks ...*pb.TaskSpec) *pb.JournalRecord {
		return &pb.JournalRecord{Rec: &pb.JournalRecord_Submitted{Submitted: &pb.SubmitRequest{Session: session, Tasks: tasks}}}
	}
	done := func(task uint64) *pb.JournalRecord {
		return &pb.JournalRecord{Rec: &pb.JournalRecord_Done{Done: &pb.JournalTaskDone{TaskId: task, Attempt: 1, Worker: "w",
			Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}}}
	}
	ended := func(session string, tasks ...uint64) *pb.JournalRecord {
		return &pb.JournalRecord{Rec: &pb.JournalRecord_SessionEnded{SessionEnded: &pb.JournalSessionEnded{Session: session, Why: "was ended by its client", Tasks: tasks}}}
	}
	refused := &pb.TaskSpec{Name: "r", Key: "r", Call: &pb.CallSpec{Library: "nolib", Function: "f"}}
	recs := []*pb.JournalRecord{
		{Rec: &pb.JournalRecord_Started{Started: 1}},
		submit("s0", cmd("a"), cmd("b")), // tasks 1, 2
		submit("live", cmd("l1")),        // 3
		submit("s1", cmd("a")),           // 4
		done(1), done(2), done(4),
		{Rec: &pb.JournalRecord_Dispatched{Dispatched: &pb.JournalDispatched{TaskId: 3, Attempt: 1, Worker: "w1", Epoch: 1}}},
		{Rec: &pb.JournalRecord_Dispatched{Dispatched: &pb.JournalDispatched{TaskId: 4, Attempt: 1, Worker: "w1", Epoch: 1}}},
		ended("s0", 1, 2),
		submit("s2", cmd("a")), // 5
		ended("s1", 4),
		submit("s5", cmd("a")), // 6, whose end is not journaled yet
		ended("s5", 6),
		done(5), ended("s2", 5),
		submit("s3", cmd("a"), cmd("b")), // 7, 8
		submit("s3", cmd("a"), cmd("b")), // the same again
		done(7), done(8), ended("s3", 7, 8),
		submit("s4", refused),
		submit("s4", cmd("a")), // 9
		done(9), ended("s4", 9),
		submit("s6", cmd("a")), // 10
		done(10), ended("s6", 10),
		submit("live", cmd("l2")), // 11
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = rec(r)
	}
	return out
}

// kept is a replayed state without what a fold forgets: the tasks of
// forgotten sessions, the file IDs and the totals that counted them.
func kept(r replayedState, forgotten map[int]bool) replayedState {
	var tasks []string
	for i, t := range r.Tasks {
		if !forgotten[i+1] {
			tasks = append(tasks, t)
		}
	}
	return replayedState{Epoch: r.Epoch, NextTask: r.NextTask, Tasks: tasks, Sessions: r.Sessions, Ready: r.Ready, Running: r.Running, Waiting: r.Waiting}
}

// TestFoldForgetsOldSessions: with a manager that remembers one ended
// session, the fold forgets the records of the sessions that ended before
// it, when they prove what their submits gave out (s0, s1, s2; not s5,
// with a task not ended, nor s3, which resubmitted, nor s4, which had a
// submit refused), and stands for
// their submits with Forgotten records. For every prefix of the journal
// (crash point) and every record a snapshot could follow, and for a
// snapshot folded twice, a replay gives every other task the same ID and
// state, and the next task the same ID, as a replay of every record.
func TestFoldForgetsOldSessions(t *testing.T) {
	defer func(n int) { foldKeepEnded = n }(foldKeepEnded)
	foldKeepEnded = 1
	all := forgetRecords()
	forgotten := map[int]bool{1: true, 2: true, 4: true, 5: true}
	for n := 1; n <= len(all); n++ {
		plain := t.TempDir()
		journaltest.Write(t, plain, all[:n])
		want := kept(replayState(t, plain), forgotten)
		for k := 1; k <= n; k++ {
			dir := t.TempDir()
			journaltest.WriteCompacted(t, dir, all[:n], k, FoldJournal)
			if got := kept(replayState(t, dir), forgotten); !cmp.Equal(want, got) {
				t.Errorf("%d records, snapshot after %d: state (-without +with compaction):\n%s", n, k, cmp.Diff(want, got))
			}
		}
	}
	folded, err := FoldJournal(all)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := FoldJournal(folded)
	if err != nil {
		t.Fatal(err)
	}
	var forgottenRecs []string
	for _, b := range twice {
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if f := r.GetForgotten(); f != nil {
			forgottenRecs = append(forgottenRecs, fmt.Sprintf("%q: %d", f.Session, f.Tasks))
		}
	}
	// s0's submit before the live session's; s1's and s2's, merged, before s5's.
	if diff := cmp.Diff([]string{`"s0": 2`, `"": 2`}, forgottenRecs); diff != "" {
		t.Errorf("Forgotten records (-want +got):\n%s", diff)
	}
	dir := t.TempDir()
	journaltest.Write(t, dir, twice)
	plain := t.TempDir()
	journaltest.Write(t, plain, all)
	if want, got := kept(replayState(t, plain), forgotten), kept(replayState(t, dir), forgotten); !cmp.Equal(want, got) {
		t.Errorf("folded twice: state (-without +with compaction):\n%s", cmp.Diff(want, got))
	}
	// The 3 submits of s0, s1 and s2 become 2 Forgotten; their 4 ends, the
	// dispatch of task 4 and their 3 session ends go.
	if got, want := len(twice), len(all)-3+2-4-1-3; got != want {
		t.Errorf("folded %d records into %d, want %d", len(all), got, want)
	}
}

// TestSnapshotBoundedAcrossSessions: a manager that runs session after
// session (each submits two tasks, which end, and then ends) keeps a
// snapshot of the sessions it remembers, not of all: folded again and
// again as sessions come, the snapshot stays within one Started, one
// Forgotten and the records of the last foldKeepEnded sessions.
func TestSnapshotBoundedAcrossSessions(t *testing.T) {
	defer func(n int) { foldKeepEnded = n }(foldKeepEnded)
	foldKeepEnded = 5
	const perSession = 4 // a submit, two ends, the session's end
	snapshot := [][]byte{rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: 1}})}
	id := uint64(0)
	for round := range 10 {
		for s := range 50 {
			session := fmt.Sprintf("s%d-%d", round, s)
			snapshot = append(snapshot, rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Submitted{Submitted: &pb.SubmitRequest{Session: session,
				Tasks: []*pb.TaskSpec{{Name: "a", Key: "a", Command: "true"}, {Name: "b", Key: "b", Command: "true"}}}}}))
			for range 2 {
				id++
				snapshot = append(snapshot, rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Done{Done: &pb.JournalTaskDone{TaskId: id,
					Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}}}))
			}
			snapshot = append(snapshot, rec(&pb.JournalRecord{Rec: &pb.JournalRecord_SessionEnded{SessionEnded: &pb.JournalSessionEnded{Session: session, Tasks: []uint64{id - 1, id}}}}))
		}
		var err error
		if snapshot, err = FoldJournal(snapshot); err != nil {
			t.Fatal(err)
		}
		if max := 2 + foldKeepEnded*perSession; len(snapshot) > max {
			t.Fatalf("after %d sessions the snapshot holds %d records, want at most %d", 50*(round+1), len(snapshot), max)
		}
	}
	var given uint64
	for _, b := range snapshot {
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		given += r.GetForgotten().GetTasks()
	}
	if want := id - 2*uint64(foldKeepEnded); given != want {
		t.Errorf("the Forgotten records give out %d task IDs, want %d", given, want)
	}
}

// TestSessionEndListsTasks: the journal record of a session's end lists
// the IDs of the tasks submitted in it, for compaction to forget it later.
func TestSessionEndListsTasks(t *testing.T) {
	dir := t.TempDir()
	m, stop := startWithState(t, dir)
	if _, err := submit(t, m, missingInput("a"), missingInput("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Handler().EndSession(context.Background(), connect.NewRequest(&pb.EndSessionRequest{Session: "s1"})); err != nil {
		t.Fatal(err)
	}
	// A session's end is journaled without being waited for: wait for its
	// record (the fifth: a start, the submit, two ends, the session's end).
	for deadline := time.Now().Add(10 * time.Second); m.journal.Durable() < 5; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the journal holds %d records durable, want 5", m.journal.Durable())
		}
	}
	stop()
	var got []uint64
	for _, b := range journaltest.Read(t, dir) {
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if e := r.GetSessionEnded(); e != nil {
			got = e.Tasks
		}
	}
	if diff := cmp.Diff([]uint64{1, 2}, got); diff != "" {
		t.Errorf("tasks listed by the session's end (-want +got):\n%s", diff)
	}
}
