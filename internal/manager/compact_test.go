package manager

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/core"
	"trellis/internal/journal"
	"trellis/internal/journal/journaltest"
	pb "trellis/internal/proto/trellisv1"
)

// replayedState is what a manager holds after replaying a journal, for
// comparing two replays.
type replayedState struct {
	Epoch              uint64
	NextTask           core.TaskID
	Tally              core.Tally
	Stats              core.Stats
	Adrift             int
	Unknown            []core.Unknown
	Tasks              []string // each task ID the manager gave out: its state in the core and the manager
	Files              map[string]core.FileID
	Libraries          []string
	Succeeded, Failed  uint64
	CallsSucceeded     uint64
	CallsFailed        uint64
	Ended              Ended // by modality and kind
	Sessions           int
	Ready, Running     uint64
	Waiting, Finished  uint64
	LibrariesInStatus  int
	UnknownInStatus    int
	JournalRecordsKept int
}

// replayState starts a manager on dir (Listen replays its journal) and
// reads its state, without serving.
func replayState(t *testing.T, dir string) replayedState {
	t.Helper()
	m, err := Listen(Config{Listen: "127.0.0.1:0", Secret: "s", StateDir: dir, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("replay %s: %v", dir, err)
	}
	defer m.ln.Close()
	defer m.journal.Close()
	s := m.state
	r := replayedState{Epoch: m.epoch, NextTask: s.nextTask, Tally: s.core.Tally(), Stats: s.core.Stats(),
		Adrift: s.core.Adrift(), Unknown: s.core.Unknown(), Files: s.fileIDs,
		Succeeded: s.succeeded, Failed: s.failed, CallsSucceeded: s.callsSucceeded, CallsFailed: s.callsFailed, Ended: s.ended, Sessions: m.clients.Len()}
	for id := core.TaskID(1); id <= s.nextTask; id++ {
		st, attempt, ok := s.core.TaskState(id)
		rec := s.tasks[id]
		r.Tasks = append(r.Tasks, fmt.Sprintf("%d: core %v %v attempt %d; manager %v", id, ok, st, attempt, rec != nil && !rec.done))
	}
	for name, lib := range s.libs {
		r.Libraries = append(r.Libraries, fmt.Sprintf("%s removed=%v calls done=%d", name, lib.removed, lib.callsDone))
	}
	sort.Strings(r.Libraries)
	st := s.status()
	r.Ready, r.Running, r.Waiting, r.Finished = st.Ready, st.Running, st.Waiting, st.Finished
	r.LibrariesInStatus, r.UnknownInStatus = len(st.Libraries), len(st.UnknownTasks)
	return r
}

func rec(r *pb.JournalRecord) []byte {
	b, err := goproto.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

// directEnd is the record of a direct call's end.
func directEnd(session, library string, kind pb.ResultKind) *pb.JournalRecord {
	return &pb.JournalRecord{Rec: &pb.JournalRecord_DirectCallEnded{DirectCallEnded: &pb.DirectCallEnded{
		Lease: 1, Session: session, Key: "k", Library: library, Function: "f", Kind: kind, RunMs: 1}}}
}

// lifeRecords is a journal of three manager lives: submits of command
// tasks (one at-most-once) and calls, dispatches, attempts lost and
// dispatched again, ends, a cancel, an at-most-once task left unknown and
// reconciled, a library installed, removed and installed again, a session
// ended, and direct calls' ends of two sessions in each life (of every
// kind, one a newer trellis's; one after its session ended, one after its
// library was removed).
func lifeRecords() [][]byte {
	cmd := func(key string, effects pb.Effects) *pb.TaskSpec {
		return &pb.TaskSpec{Name: key, Key: key, Command: "true", Resources: &pb.Resources{Cores: 1}, Effects: effects}
	}
	call := &pb.TaskSpec{Name: "call", Key: "call", Call: &pb.CallSpec{Library: "lib", Function: "f"}}
	ok := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Stdout: []byte("out")}
	failed := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_FAILED, ExitCode: 1}
	started := func(e uint64) *pb.JournalRecord { return &pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: e}} }
	dispatched := func(task uint64, attempt uint32, w string, epoch uint64) *pb.JournalRecord {
		return &pb.JournalRecord{Rec: &pb.JournalRecord_Dispatched{Dispatched: &pb.JournalDispatched{TaskId: task, Attempt: attempt, Worker: w, Epoch: epoch}}}
	}
	done := func(task uint64, attempt uint32, o *pb.Outcome) *pb.JournalRecord {
		return &pb.JournalRecord{Rec: &pb.JournalRecord_Done{Done: &pb.JournalTaskDone{TaskId: task, Attempt: attempt, Outcome: o, Worker: "w"}}}
	}
	lib := &pb.InstallLibraryRequest{Library: &pb.LibrarySpec{Name: "lib", Command: "true", Resources: &pb.Resources{Cores: 1}}}
	const (
		success = pb.ResultKind_RESULT_KIND_SUCCESS
		fail    = pb.ResultKind_RESULT_KIND_FAILED
		newer   = pb.ResultKind(42) // a kind this trellis does not know
	)
	recs := []*pb.JournalRecord{
		started(1),
		{Rec: &pb.JournalRecord_Installed{Installed: lib}},
		{Rec: &pb.JournalRecord_Submitted{Submitted: &pb.SubmitRequest{Session: "s1", Tasks: []*pb.TaskSpec{
			cmd("a", pb.Effects_EFFECTS_NONE), cmd("b", pb.Effects_EFFECTS_IDEMPOTENT), cmd("c", pb.Effects_EFFECTS_AT_MOST_ONCE),
			cmd("d", pb.Effects_EFFECTS_NONE), cmd("e", pb.Effects_EFFECTS_NONE)}}}},
		directEnd("s1", "lib", success),
		dispatched(1, 1, "w1", 1),
		directEnd("s2", "lib", fail),
		dispatched(2, 1, "w1", 1),
		directEnd("s1", "lib", success),
		dispatched(3, 1, "w1", 1),
		done(1, 1, ok),
		{Rec: &pb.JournalRecord_Submitted{Submitted: &pb.SubmitRequest{Session: "s2", Tasks: []*pb.TaskSpec{call, cmd("f", pb.Effects_EFFECTS_NONE)}}}},
		dispatched(4, 1, "w1", 1),
		started(2),
		directEnd("s1", "lib", pb.ResultKind_RESULT_KIND_TIMED_OUT),
		dispatched(2, 2, "w2", 2), // lost with w1: dispatched again
		directEnd("s1", "lib", newer),
		dispatched(4, 2, "w2", 2),
		{Rec: &pb.JournalRecord_Cancelled{Cancelled: &pb.CancelRequest{TaskIds: []uint64{5}}}},
		done(2, 2, failed),
		{Rec: &pb.JournalRecord_Reconciled{Reconciled: &pb.ReconcileRequest{TaskId: 3, Verdict: pb.Verdict_VERDICT_RERUN}}},
		dispatched(3, 2, "w2", 2),
		done(4, 2, ok),
		started(3),
		{Rec: &pb.JournalRecord_SessionEnded{SessionEnded: &pb.JournalSessionEnded{Session: "s2", Why: "gone"}}},
		directEnd("s2", "lib", success), // reported after its session ended
		{Rec: &pb.JournalRecord_LibraryRemoved{LibraryRemoved: &pb.RemoveLibraryRequest{Name: "lib"}}},
		directEnd("s1", "lib", success), // ended after its library was removed
		done(3, 2, ok),
		{Rec: &pb.JournalRecord_Installed{Installed: lib}},
		directEnd("s1", "lib", success),
		dispatched(7, 1, "w3", 3),
		directEnd("s1", "lib", fail),
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = rec(r)
	}
	return out
}

// TestFoldKeepsState: for every prefix of a journal of three lives (every
// crash point), and every record a snapshot could have been taken after,
// a manager that replays the snapshot and the records after it holds the
// same state as one that replays the records alone; and the snapshot is
// smaller when there was something to fold.
func TestFoldKeepsState(t *testing.T) {
	all := lifeRecords()
	for n := 1; n <= len(all); n++ {
		plain := t.TempDir()
		journaltest.Write(t, plain, all[:n])
		want := replayState(t, plain)
		for k := 1; k <= n; k++ {
			dir := t.TempDir()
			journaltest.WriteCompacted(t, dir, all[:n], k, FoldJournal)
			if got := replayState(t, dir); !cmp.Equal(want, got) {
				t.Errorf("%d records, snapshot after %d: state (-without +with compaction):\n%s", n, k, cmp.Diff(want, got))
			}
		}
	}
	folded, err := FoldJournal(all)
	if err != nil {
		t.Fatal(err)
	}
	// 3 Started become 1; of 8 Dispatched, 2 are kept (task 3's, which was
	// reconciled, and the last, task 7's, which has no end yet) and 1 of
	// task 3's; the 9 ends of direct calls become 3 records of counts:
	// s1's and s2's before the library's second install, s1's after.
	if got, want := len(folded), len(all)-2-5-9+3; got != want {
		t.Errorf("folded %d records into %d, want %d", len(all), got, want)
	}
	var counts []string
	for _, b := range folded {
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if d := r.GetDirectCallEnded(); d != nil {
			t.Errorf("the snapshot keeps the end of a direct call of %s: %v", d.Session, d)
		}
		if d := r.GetDirectCalls(); d != nil {
			c := d.Session + " " + d.Library + ":"
			for _, n := range d.Counts {
				c += fmt.Sprintf(" %d×%d", n.Calls, n.Kind)
			}
			counts = append(counts, c)
		}
	}
	if diff := cmp.Diff([]string{"s1 lib: 3×1 1×3 1×42", "s2 lib: 1×1 1×2", "s1 lib: 1×1 1×2"}, counts); diff != "" {
		t.Errorf("the snapshot's counts of direct calls (-want +got):\n%s", diff)
	}
}

// TestFoldRefusesGarbage: a record that is no journal record stops the
// compaction (the journal stays as it is) instead of being dropped.
func TestFoldRefusesGarbage(t *testing.T) {
	if _, err := FoldJournal([][]byte{rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: 1}}), {0xff, 0xff}}); err == nil {
		t.Errorf("FoldJournal of a record that does not decode: no error")
	}
	if _, err := FoldJournal([][]byte{{}}); err == nil {
		t.Errorf("FoldJournal of an empty record: no error")
	}
}

var _ journal.Fold = FoldJournal

// TestFoldDirectCalls: the ends of direct calls (DirectCallEnded, which
// replay only counts) are folded into one record of counts per session,
// and go with their session when it is forgotten: a
// manager whose clients make direct calls session after session (one
// session submits a task too, another stays live) keeps a snapshot of a
// bounded number of them, folded again and again; and a replay of it
// gives the same counters (finished calls, successes and failures, the
// library's calls done) and state as a replay of the records without the
// forgotten sessions'. The calls of the live session and of the last
// foldKeepEnded ended ones are all kept and counted.
func TestFoldDirectCalls(t *testing.T) {
	defer func(n int) { foldKeepEnded = n }(foldKeepEnded)
	foldKeepEnded = 3
	const calls = 20 // per session
	lib := &pb.InstallLibraryRequest{Library: &pb.LibrarySpec{Name: "lib", Command: "true", Resources: &pb.Resources{Cores: 1}}}
	call := func(session string, i int) []byte {
		kind := pb.ResultKind_RESULT_KIND_SUCCESS
		if i%4 == 0 {
			kind = pb.ResultKind_RESULT_KIND_FAILED
		}
		return rec(&pb.JournalRecord{Rec: &pb.JournalRecord_DirectCallEnded{DirectCallEnded: &pb.DirectCallEnded{
			Lease: uint64(i), Session: session, Key: fmt.Sprint(i), Library: "lib", Function: "f", Kind: kind, RunMs: 1}}})
	}
	head := [][]byte{
		rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: 1}}),
		rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Installed{Installed: lib}}),
	}
	var all, kept [][]byte // every record; those of the sessions a fold keeps
	all = append(all, head...)
	kept = append(kept, head...)
	const sessions = 40
	for s := range sessions {
		name := fmt.Sprintf("s%d", s)
		var recs [][]byte
		var tasks []uint64
		if s == 0 {
			recs = append(recs,
				rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Submitted{Submitted: &pb.SubmitRequest{Session: name,
					Tasks: []*pb.TaskSpec{{Name: "a", Key: "a", Command: "true"}}}}}),
				rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Done{Done: &pb.JournalTaskDone{TaskId: 1,
					Outcome: &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS}}}}))
			tasks = []uint64{1}
		}
		for i := range calls {
			recs = append(recs, call(name, i), call("live", i))
		}
		recs = append(recs, rec(&pb.JournalRecord{Rec: &pb.JournalRecord_SessionEnded{SessionEnded: &pb.JournalSessionEnded{Session: name, Tasks: tasks}}}))
		all = append(all, recs...)
		for _, b := range recs {
			var r pb.JournalRecord
			if err := goproto.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if s >= sessions-foldKeepEnded || r.GetDirectCallEnded().GetSession() == "live" {
				kept = append(kept, b)
			} else if s == 0 && r.GetSubmitted() != nil {
				kept = append(kept, rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Forgotten{Forgotten: &pb.JournalForgotten{Tasks: 1, Session: name}}}))
			}
		}
	}
	// Folded as the records come, a session at a time.
	var snapshot [][]byte
	per := (len(all) - len(head)) / sessions
	for from, to := 0, len(head)+per; from < len(all); from, to = to, min(to+per, len(all)) {
		var err error
		if snapshot, err = FoldJournal(append(snapshot, all[from:to]...)); err != nil {
			t.Fatal(err)
		}
	}
	direct := make(map[string]uint64) // session -> calls counted in the snapshot
	for _, b := range snapshot {
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if d := r.GetDirectCallEnded(); d != nil {
			t.Errorf("the snapshot keeps the end of a direct call of %s, not folded into a count", d.Session)
		}
		if d := r.GetDirectCalls(); d != nil {
			if _, ok := direct[d.Session]; ok {
				t.Errorf("the snapshot holds two records of counts of session %s", d.Session)
			}
			for _, c := range d.Counts {
				direct[d.Session] += c.Calls
			}
		}
	}
	counted := map[string]uint64{"live": sessions * calls}
	for s := sessions - foldKeepEnded; s < sessions; s++ {
		counted[fmt.Sprintf("s%d", s)] = calls
	}
	if diff := cmp.Diff(counted, direct); diff != "" {
		t.Errorf("direct calls counted in the snapshot by session (-want +got): the live one's and those of the last %d ended sessions\n%s", foldKeepEnded, diff)
	}
	folded, plain := t.TempDir(), t.TempDir()
	journaltest.Write(t, folded, snapshot)
	journaltest.Write(t, plain, kept)
	want, got := replayState(t, plain), replayState(t, folded)
	if !cmp.Equal(want, got) {
		t.Errorf("state (-the kept records +the snapshot):\n%s", cmp.Diff(want, got))
	}
	if n := uint64(sessions*calls + foldKeepEnded*calls); got.Stats.Direct != n {
		t.Errorf("replayed Stats.Direct = %d, want %d (the live session's calls and those of the last %d ended sessions)", got.Stats.Direct, n, foldKeepEnded)
	}
}

// TestSnapshotBoundedDirectCalls: a session that lives on and makes direct
// calls of two libraries, round after round, beside short sessions that
// make a few and end, keeps a snapshot of a bounded size: folded after
// each round, it never holds more than a start, the two installs, a record
// of counts per library of the live session, and those and the end of the
// last foldKeepEnded ended sessions, nor more bytes than twice those after the
// first round. A replay of it counts every call of the live session. And
// for crash points along the journal, with a snapshot taken at points
// between, a replay gives the same state (totals by kind, the libraries'
// calls done, the core's counts) as a replay of the records alone.
func TestSnapshotBoundedDirectCalls(t *testing.T) {
	const (
		rounds   = 40
		perRound = 250 // the live session's calls per round
		short    = 10  // each short session's calls
	)
	install := func(name string) []byte {
		return rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Installed{Installed: &pb.InstallLibraryRequest{
			Library: &pb.LibrarySpec{Name: name, Command: "true", Resources: &pb.Resources{Cores: 1}}}}})
	}
	kinds := []pb.ResultKind{pb.ResultKind_RESULT_KIND_SUCCESS, pb.ResultKind_RESULT_KIND_SUCCESS, pb.ResultKind_RESULT_KIND_FAILED,
		pb.ResultKind_RESULT_KIND_SUCCESS, pb.ResultKind_RESULT_KIND_TIMED_OUT}
	libs := []string{"a", "b"}
	all := [][]byte{rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: 1}}), install("a"), install("b")}
	var rs [][][]byte // the records of each round
	for r := range rounds {
		var recs [][]byte
		session := fmt.Sprintf("s%d", r)
		for i := range perRound {
			recs = append(recs, rec(directEnd("live", libs[i%2], kinds[i%len(kinds)])))
			if i < short {
				recs = append(recs, rec(directEnd(session, libs[i%2], kinds[(i+r)%len(kinds)])))
			}
		}
		recs = append(recs, rec(&pb.JournalRecord{Rec: &pb.JournalRecord_SessionEnded{SessionEnded: &pb.JournalSessionEnded{Session: session}}}))
		rs = append(rs, recs)
		all = append(all, recs...)
	}

	t.Run("bounded", func(t *testing.T) {
		defer func(n int) { foldKeepEnded = n }(foldKeepEnded)
		foldKeepEnded = 2
		snapshot := slices.Clone(all[:3])
		size := func() (n int) {
			for _, b := range snapshot {
				n += len(b)
			}
			return n
		}
		var first int
		for r, recs := range rs {
			var err error
			if snapshot, err = FoldJournal(append(snapshot, recs...)); err != nil {
				t.Fatal(err)
			}
			if r == 0 {
				first = size()
			}
			// A start, 2 installs, the live session's record of counts per
			// library, and those and an end of each session kept.
			if max := 3 + len(libs) + (len(libs)+1)*min(r+1, foldKeepEnded); len(snapshot) > max || size() > 2*first {
				t.Fatalf("after %d rounds (%d direct calls) the snapshot holds %d records, %d bytes; want at most %d records and %d bytes",
					r+1, (r+1)*(perRound+short), len(snapshot), size(), max, 2*first)
			}
		}
		dir := t.TempDir()
		journaltest.Write(t, dir, snapshot)
		got := replayState(t, dir)
		if want := uint64(rounds*perRound + foldKeepEnded*short); got.Stats.Direct != want {
			t.Errorf("replayed Stats.Direct = %d, want %d (every call of the live session and those of the last %d ended sessions)", got.Stats.Direct, want, foldKeepEnded)
		}
	})

	t.Run("crash points", func(t *testing.T) {
		for _, n := range []int{len(all) / 3, 2*len(all)/3 + 1, len(all)} {
			plain := t.TempDir()
			journaltest.Write(t, plain, all[:n])
			want := replayState(t, plain)
			for _, k := range []int{1, 3, n / 4, n/2 + 1, n - 1, n} {
				dir := t.TempDir()
				journaltest.WriteCompacted(t, dir, all[:n], k, FoldJournal)
				if got := replayState(t, dir); !cmp.Equal(want, got) {
					t.Errorf("%d records, snapshot after %d: state (-without +with compaction):\n%s", n, k, cmp.Diff(want, got))
				}
			}
		}
	})
}

// BenchmarkReplayDirectCalls times a restart's replay (Listen on a state
// directory) of a journal of a live session's 100,000 direct calls' ends:
// one record per call, and folded into a snapshot of their counts. It
// reports the records replayed and their bytes.
func BenchmarkReplayDirectCalls(b *testing.B) {
	const n = 100_000
	recs := [][]byte{rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: 1}}),
		rec(&pb.JournalRecord{Rec: &pb.JournalRecord_Installed{Installed: &pb.InstallLibraryRequest{
			Library: &pb.LibrarySpec{Name: "lib", Command: "true", Resources: &pb.Resources{Cores: 1}}}}})}
	for i := range n {
		kind := pb.ResultKind_RESULT_KIND_SUCCESS
		if i%10 == 0 {
			kind = pb.ResultKind_RESULT_KIND_FAILED
		}
		recs = append(recs, rec(directEnd("live", "lib", kind)))
	}
	for _, folded := range []bool{false, true} {
		b.Run(fmt.Sprintf("folded=%v", folded), func(b *testing.B) {
			dir := b.TempDir()
			kept := recs
			if folded {
				journaltest.WriteCompacted(b, dir, recs, len(recs), FoldJournal)
				var err error
				if kept, err = FoldJournal(recs); err != nil {
					b.Fatal(err)
				}
			} else {
				journaltest.Write(b, dir, recs)
			}
			size := 0
			for _, r := range kept {
				size += len(r)
			}
			b.ResetTimer()
			for range b.N {
				m, err := Listen(Config{Listen: "127.0.0.1:0", Secret: "s", StateDir: dir, StoreDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				if got := m.state.core.Stats().Direct; got != n {
					b.Fatalf("replayed %d direct calls, want %d", got, n)
				}
				m.ln.Close()
				m.journal.Close()
			}
			b.ReportMetric(float64(len(kept)), "records")
			b.ReportMetric(float64(size), "record-bytes")
		})
	}
}
