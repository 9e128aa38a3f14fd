package journal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"trellis/internal/journal"
	"trellis/internal/journal/journaltest"
)

// The records of these tests are "key=value" assignments: the state is
// the last value of each key, and lastWins folds them to one per key.

func sets(from, to int) [][]byte {
	var recs [][]byte
	for i := from; i <= to; i++ {
		recs = append(recs, fmt.Appendf(nil, "k%d=%d", i%3, i))
	}
	return recs
}

// lastWins keeps the last assignment of each key, in the order of those.
func lastWins(recs [][]byte) ([][]byte, error) {
	last := make(map[string]int)
	for i, r := range recs {
		k, _, ok := strings.Cut(string(r), "=")
		if !ok {
			return nil, fmt.Errorf("record %q is no assignment", r)
		}
		last[k] = i
	}
	var out [][]byte
	for i, r := range recs {
		k, _, _ := strings.Cut(string(r), "=")
		if last[k] == i {
			out = append(out, r)
		}
	}
	return out, nil
}

// state replays the journal in dir into its state.
func state(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := make(map[string]string)
	for _, r := range journaltest.Read(t, dir) {
		k, v, _ := strings.Cut(string(r), "=")
		st[k] = v
	}
	return st
}

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, sets(1, 10))
	want := state(t, dir)
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := j.Compact(lastWins)
	if err != nil {
		t.Fatal(err)
	}
	if info.Upto != 10 || info.Records != 3 || info.Bytes == 0 || info.At.IsZero() {
		t.Errorf("Compact() = %+v, want 10 records folded into 3", info)
	}
	if n, b := j.Since(); n != 0 || b != 0 {
		t.Errorf("Since() after Compact = %d records, %d bytes; want 0, 0", n, b)
	}
	j.Close()
	if diff := cmp.Diff(sets(8, 10), journaltest.Read(t, dir)); diff != "" {
		t.Errorf("replay after Compact (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, state(t, dir)); diff != "" {
		t.Errorf("state after Compact (-want +got):\n%s", diff)
	}

	// Records appended after a snapshot keep counting and replay after it.
	j, err = journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Durable(); got != 10 {
		t.Errorf("Durable() after reopening a compacted journal = %d, want 10", got)
	}
	if got := j.Snapshot(); got != info {
		t.Errorf("Snapshot() after reopening = %+v, want %+v", got, info)
	}
	for _, r := range sets(11, 12) {
		j.Append(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j.Run(ctx) // writes what is queued, then returns
	if n, b := j.Since(); n != 2 || b != int64(len("k2=11")+len("k0=12")) {
		t.Errorf("Since() = %d records, %d bytes; want 2 records, 10 bytes", n, b)
	}
	j.Close()
	if diff := cmp.Diff(append(sets(8, 10), sets(11, 12)...), journaltest.Read(t, dir)); diff != "" {
		t.Errorf("replay after appending to a compacted journal (-want +got):\n%s", diff)
	}
}

// TestCompactFaults cuts a compaction short at each of its writes, in each
// way a write can fail, as a crash there would: reopened, the journal
// replays to the same state, and a compaction cut after the snapshot was
// written is finished by Open (the records it stands for dropped).
func TestCompactFaults(t *testing.T) {
	const n = 25
	recs := sets(1, n)
	for _, op := range []journaltest.Op{journaltest.WriteSnapshot, journaltest.Drop} {
		for _, fault := range []journaltest.Fault{journaltest.WriteFails, journaltest.SyncFails, journaltest.ExecuteAndTimeout} {
			// A compaction writes one snapshot and makes one Drop.
			t.Run(fmt.Sprintf("op-%d/fault-%d", op, fault), func(t *testing.T) {
				dir := t.TempDir()
				journaltest.Write(t, dir, recs)
				want := state(t, dir)
				faulty := journaltest.NewFaulty(nil)
				faulty.FailCompaction(func(o journaltest.Op, _ journal.Seq) journaltest.Fault {
					if o != op {
						return journaltest.None
					}
					return fault
				})
				j, err := journal.Open(dir, journal.Options{Wrap: faulty.Wrap})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := j.Compact(lastWins); err == nil {
					t.Errorf("Compact with a failing write returned no error")
				} else if got := j.CompactErr(); got != err {
					t.Errorf("CompactErr() = %v after a failed Compact, want its error %v", got, err)
				}
				j.Close()
				j, err = journal.Open(dir, journal.Options{})
				if err != nil {
					t.Fatal(err)
				}
				rec, snap := j.Recovered(), j.Snapshot()
				j.Close()
				snapshotLanded := op == journaltest.Drop || fault != journaltest.WriteFails
				if snapshotLanded {
					if snap.Upto != n || rec.Kept != 0 || rec.Dropped != 0 {
						t.Errorf("reopened: snapshot up to %d, %v; want the snapshot up to %d and no record after it", snap.Upto, rec, n)
					}
					if op == journaltest.WriteSnapshot || fault == journaltest.WriteFails {
						if rec.Leftover != n {
							t.Errorf("reopened: %d leftover records dropped, want %d", rec.Leftover, n)
						}
					}
				} else if snap.Upto != 0 || rec.Kept != n {
					t.Errorf("reopened: snapshot up to %d, %v; want no snapshot and %d records", snap.Upto, rec, n)
				}
				if diff := cmp.Diff(want, state(t, dir)); diff != "" {
					t.Errorf("state after a compaction cut short (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestCompactErr: CompactErr says why the last compaction failed, and is
// nil again once one succeeds.
func TestCompactErr(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, sets(1, 5))
	faulty := journaltest.NewFaulty(nil)
	faulty.FailCompaction(func(journaltest.Op, journal.Seq) journaltest.Fault { return journaltest.WriteFails })
	j, err := journal.Open(dir, journal.Options{Wrap: faulty.Wrap})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.Compact(lastWins); err == nil || j.CompactErr() != err {
		t.Errorf("Compact with its write failing: %v, CompactErr() %v; want the same error", err, j.CompactErr())
	}
	faulty.FailCompaction(nil)
	if _, err := j.Compact(lastWins); err != nil || j.CompactErr() != nil {
		t.Errorf("Compact again without faults: %v, CompactErr() %v; want nil, nil", err, j.CompactErr())
	}
}

// TestCompactWhileAppending compacts again and again while records are
// appended and committed, in small segments (rolled every 512 bytes, and
// deleted by compactions meanwhile): the replay holds every record's
// effect, and the segments the last snapshot stands for are gone.
func TestCompactWhileAppending(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(dir, journal.Options{MaxBatch: 7, SegmentBytes: 512})
	if err != nil {
		t.Fatal(err)
	}
	stopCommitter := runCommitter(j)
	compacted := make(chan int)
	stop := make(chan struct{})
	go func() { // exits when stop is closed
		n := 0
		for {
			select {
			case <-stop:
				compacted <- n
				return
			default:
			}
			if _, err := j.Compact(lastWins); err != nil {
				t.Errorf("Compact: %v", err)
			}
			n++
		}
	}()
	recs := sets(1, 3000)
	var last journal.Seq
	for i, r := range recs {
		last = j.Append(r)
		if i%100 == 99 {
			waitDurable(t, j, last)
		}
	}
	waitDurable(t, j, last)
	close(stop)
	if n := <-compacted; n < 2 {
		t.Logf("only %d compactions ran while appending", n)
	}
	stopCommitter()
	if _, err := j.Compact(lastWins); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, journal.DirName, "*.seg"))
	if err != nil || len(segs) > 1 {
		t.Errorf("after a last compaction of every record, segments %v are left (%v); want at most one", segs, err)
	}
	j.Close()
	want := make(map[string]string)
	for _, r := range recs {
		k, v, _ := strings.Cut(string(r), "=")
		want[k] = v
	}
	if diff := cmp.Diff(want, state(t, dir)); diff != "" {
		t.Errorf("state after compacting while appending (-want +got):\n%s", diff)
	}
	if j, err = journal.Open(dir, journal.Options{}); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if got := j.Durable(); got != last {
		t.Errorf("Durable() after reopening = %d, want %d", got, last)
	}
}

func TestDue(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, sets(1, 9))
	j, err := journal.Open(dir, journal.Options{SnapshotRecords: 10, SnapshotBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.Due() {
		t.Errorf("Due() with 9 records, the threshold 10: true")
	}
	j.Append([]byte("k1=10"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j.Run(ctx)
	if !j.Due() {
		t.Errorf("Due() with 10 records, the threshold 10: false")
	}
	if _, err := j.Compact(lastWins); err != nil {
		t.Fatal(err)
	}
	if j.Due() {
		t.Errorf("Due() right after Compact: true")
	}
}

// TestDiskBytes: DiskBytes is measured at Open, by the committer after a
// commit (within about a second), and after a compaction; each time it is
// the size of the files then.
func TestDiskBytes(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, sets(1, 3))
	files := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, journal.FileName))
		if err != nil {
			t.Fatal(err)
		}
		n := fi.Size()
		ents, err := os.ReadDir(filepath.Join(dir, journal.DirName))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			n += fi.Size()
		}
		return n
	}
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, j)
	if got, want := j.DiskBytes(), files(); got != want {
		t.Errorf("DiskBytes() after Open = %d, want %d", got, want)
	}
	for _, r := range sets(4, 103) {
		j.Append(r)
	}
	waitDurable(t, j, 103)
	want := files()
	deadline := time.Now().Add(10 * time.Second)
	for j.DiskBytes() != want {
		if time.Now().After(deadline) {
			t.Fatalf("DiskBytes() = %d 10s after a commit, want %d", j.DiskBytes(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := j.Compact(lastWins); err != nil {
		t.Fatal(err)
	}
	if got, want := j.DiskBytes(), files(); got != want {
		t.Errorf("DiskBytes() after Compact = %d, want %d", got, want)
	}
}
