package manager

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	goproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"trellis/internal/journal"
	pb "trellis/internal/proto/trellisv1"
)

// Compaction (docs/recovery.md, "Snapshots"): off the loop, a goroutine
// folds the journal's records into a snapshot once enough have come since
// the last one (journal.Options.SnapshotRecords), so that a restart reads
// the records that still say something, not the manager's whole history.
// FoldJournal decides what still says something; it works on the records
// alone (no state of the loop), so that folding takes nothing from it.

// compactEvery is how often the compactor asks whether compaction is due.
const compactEvery = time.Second

// compactor folds the journal whenever it is due: at once (a restart on
// a long journal), then each compactEvery. It exits when ctx ends.
func (m *Manager) compactor(ctx context.Context) {
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	// A compaction that keeps failing (a full disk) is logged when it
	// starts failing and then once a minute, not each second.
	failing, logged := false, time.Time{}
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if !m.journal.Due() {
			continue
		}
		start := time.Now()
		info, err := m.journal.Compact(FoldJournal)
		if err != nil {
			if !failing || time.Since(logged) >= time.Minute {
				m.log.Error("cannot compact the journal; it is tried again each second, and nothing is lost meanwhile", "err", err)
				logged = time.Now()
			}
			failing = true
			continue
		}
		if failing {
			m.log.Info("the journal is compacted again")
			failing = false
		}
		m.log.Info("compacted the journal into a snapshot", "records_folded", info.Upto, "snapshot_records", info.Records,
			"snapshot_bytes", info.Bytes, "took", time.Since(start).Round(time.Millisecond))
	}
}

// FoldJournal is the manager's journal.Fold: it drops the records whose
// replay changes nothing that the records after them do not set again.
// Replaying the result leaves the manager in the same state as replaying
// recs (TestFoldKeepsState). It drops:
//   - every Started but one, carrying the highest epoch (replay takes the
//     highest);
//   - a Dispatched followed by its task's Done (the end decides; an
//     attempt adrift is only waited for until its task's end), or by a
//     later Dispatched of the same task (the last one names the attempt
//     and the worker that replay waits for), unless a Reconciled names the
//     task (reconcile acts on the unknown state a Dispatched leads to).
//   - the records of sessions that ended before the last clients.MaxEnded
//     (forget.go): a Forgotten record stands for their submits; their
//     direct calls' ends go too, with the counts they fed (finished
//     calls, successes and failures), as their tasks' ends do.
//
// It folds the ends of direct calls (DirectCallEnded, and the
// JournalDirectCalls of an earlier fold) of the sessions kept into one
// JournalDirectCalls record per session and library, of their counts by
// kind, where the first of them was: replay only counts them
// (state.directCallEnded says why nothing else of them is needed), so a
// long-lived session's calls take one record however many it makes. The
// records between two library installs are folded apart (an install
// closes every such run): a call counts as a call done of its library
// only once the library is installed, and this keeps each end on the same
// side of every install.
//
// Everything else is kept, in order: submits and installs (task and file
// IDs are given out in their order), ends, cancels and ended sessions.
func FoldJournal(recs [][]byte) ([][]byte, error) {
	decoded := make([]*pb.JournalRecord, len(recs))
	var epoch uint64
	ended := make(map[uint64]int)      // task -> index of its last Done
	dispatched := make(map[uint64]int) // task -> index of its last Dispatched
	reconciled := make(map[uint64]bool)
	shapes := make(map[int]submitInfo) // by index: the submits
	installs := make(map[int]bool)     // by index: the library installs
	for i, b := range recs {
		// Only the small kinds the fold looks into are decoded: a submit
		// of many tasks is kept as it is, unread but for its session and
		// how many tasks it names.
		num, _, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("record %d of those to fold: %w", i+1, protowire.ParseError(n))
		}
		switch num {
		case kindStarted, kindDone, kindDispatched, kindReconciled, kindSessionEnded, kindForgotten, kindDirectCallEnded, kindDirectCalls:
		case kindInstalled:
			installs[i] = true
			decoded[i] = &pb.JournalRecord{}
			continue
		case kindSubmitted:
			session, tasks, err := submitShape(b)
			if err != nil {
				return nil, fmt.Errorf("record %d of those to fold: %w", i+1, err)
			}
			shapes[i] = submitInfo{session, tasks}
			decoded[i] = &pb.JournalRecord{}
			continue
		default:
			decoded[i] = &pb.JournalRecord{}
			continue
		}
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("record %d of those to fold: %w", i+1, err)
		}
		decoded[i] = &r
		switch x := r.Rec.(type) {
		case *pb.JournalRecord_Started:
			epoch = max(epoch, x.Started)
		case *pb.JournalRecord_Done:
			ended[x.Done.TaskId] = i
		case *pb.JournalRecord_Dispatched:
			dispatched[x.Dispatched.TaskId] = i
		case *pb.JournalRecord_Reconciled:
			reconciled[x.Reconciled.TaskId] = true
		}
	}
	out := make([][]byte, 0, len(recs))
	if epoch > 0 {
		b, err := goproto.Marshal(&pb.JournalRecord{Rec: &pb.JournalRecord_Started{Started: epoch}})
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	forget := toForget(decoded, shapes, ended, reconciled)
	// IDs given out by forgotten submits not yet written: one Forgotten
	// record stands for them, before the next submit kept (or at the end).
	var pending uint64
	pendingSession := ""
	flush := func() error {
		if pending == 0 {
			return nil
		}
		b, err := forgottenRecord(pending, pendingSession)
		if err != nil {
			return err
		}
		out = append(out, b)
		pending, pendingSession = 0, ""
		return nil
	}
	forgotten := func(n uint64, session string) {
		if pending > 0 && pendingSession != session {
			session = "" // several sessions
		}
		pending, pendingSession = pending+n, session
	}
	var calls directCalls
	for i, r := range decoded {
		if installs[i] {
			calls.closeRuns()
		}
		switch x := r.Rec.(type) {
		case *pb.JournalRecord_Started:
			continue
		case *pb.JournalRecord_Dispatched:
			id := x.Dispatched.TaskId
			if forget.tasks[id] {
				continue
			}
			if end, ok := ended[id]; !reconciled[id] && (ok && end > i || dispatched[id] > i) {
				continue
			}
		case *pb.JournalRecord_Done:
			if forget.tasks[x.Done.TaskId] {
				continue
			}
		case *pb.JournalRecord_SessionEnded:
			if forget.sessions[x.SessionEnded.Session] {
				continue
			}
		case *pb.JournalRecord_Forgotten:
			forgotten(x.Forgotten.Tasks, x.Forgotten.Session)
			continue
		case *pb.JournalRecord_DirectCallEnded:
			d := x.DirectCallEnded
			if !forget.sessions[d.Session] {
				out = calls.add(out, d.Session, d.Library, d.Kind, 1)
			}
			continue
		case *pb.JournalRecord_DirectCalls:
			d := x.DirectCalls
			if !forget.sessions[d.Session] {
				for _, c := range d.Counts {
					out = calls.add(out, d.Session, d.Library, c.Kind, c.Calls)
				}
			}
			continue
		default:
			if sh, ok := shapes[i]; ok {
				if forget.sessions[sh.session] {
					forgotten(uint64(sh.tasks), sh.session)
					continue
				}
				if err := flush(); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, recs[i])
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if err := calls.write(out); err != nil {
		return nil, err
	}
	return out, nil
}

// directCalls folds the ends of direct calls: each run of a session's
// calls of a library (up to the next library install) becomes one
// JournalDirectCalls record of their counts by kind, in the place of the
// run's first end in the fold's output.
type directCalls struct {
	open map[directRun]*callCounts // the runs an end may still join
	all  []*callCounts             // every run, in order
}

// directRun names a run of direct calls' ends.
type directRun struct{ session, library string }

// callCounts is a run's counts, and its place in the fold's output.
type callCounts struct {
	at     int
	run    directRun
	byKind map[pb.ResultKind]uint64
}

// add counts n ends of kind in the open run of session and library, or
// starts one in the next place of out (left nil for write to fill).
func (d *directCalls) add(out [][]byte, session, library string, kind pb.ResultKind, n uint64) [][]byte {
	if n == 0 {
		return out
	}
	run := directRun{session, library}
	c := d.open[run]
	if c == nil {
		if d.open == nil {
			d.open = make(map[directRun]*callCounts)
		}
		c = &callCounts{at: len(out), run: run, byKind: make(map[pb.ResultKind]uint64)}
		d.open[run] = c
		d.all = append(d.all, c)
		out = append(out, nil)
	}
	c.byKind[kind] += n
	return out
}

// closeRuns ends every open run: the ends after it start new ones.
func (d *directCalls) closeRuns() { clear(d.open) }

// write fills each run's place in out with its JournalDirectCalls record.
func (d *directCalls) write(out [][]byte) error {
	for _, c := range d.all {
		r := &pb.JournalDirectCalls{Session: c.run.session, Library: c.run.library}
		for _, k := range slices.Sorted(maps.Keys(c.byKind)) {
			r.Counts = append(r.Counts, &pb.JournalCallCount{Kind: k, Calls: c.byKind[k]})
		}
		b, err := goproto.Marshal(&pb.JournalRecord{Rec: &pb.JournalRecord_DirectCalls{DirectCalls: r}})
		if err != nil {
			return fmt.Errorf("direct calls record of session %q, library %q: %w", c.run.session, c.run.library, err)
		}
		out[c.at] = b
	}
	return nil
}

// The field numbers of JournalRecord's kinds that FoldJournal decodes.
var (
	kindStarted         = fieldNumber("started")
	kindDone            = fieldNumber("done")
	kindDispatched      = fieldNumber("dispatched")
	kindReconciled      = fieldNumber("reconciled")
	kindSubmitted       = fieldNumber("submitted")
	kindSessionEnded    = fieldNumber("session_ended")
	kindForgotten       = fieldNumber("forgotten")
	kindDirectCallEnded = fieldNumber("direct_call_ended")
	kindDirectCalls     = fieldNumber("direct_calls")
	kindInstalled       = fieldNumber("installed")
)

func fieldNumber(name protoreflect.Name) protowire.Number {
	return (&pb.JournalRecord{}).ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// ensure FoldJournal is a journal.Fold.
var _ journal.Fold = FoldJournal
