package journal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"trellis/internal/journal"
	"trellis/internal/journal/journaltest"
)

func records(n int) [][]byte {
	var recs [][]byte
	for i := 1; i <= n; i++ {
		recs = append(recs, fmt.Appendf(nil, "record %d", i))
	}
	return recs
}

// start runs j's committer until the test ends.
func start(t *testing.T, j *journal.Journal) {
	stop := runCommitter(j)
	t.Cleanup(func() { stop(); j.Close() })
}

// runCommitter runs j's committer until stop is called; stop returns once
// it has.
func runCommitter(j *journal.Journal) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // exits when stop cancels ctx
		defer close(done)
		j.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

// waitDurable polls until j reports seq durable; a deadline detects a hang.
func waitDurable(t *testing.T, j *journal.Journal, seq journal.Seq) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for j.Durable() < seq {
		select {
		case <-j.Synced():
		case <-deadline:
			t.Fatalf("Durable() = %d after 10s, want %d (Err: %v)", j.Durable(), seq, j.Err())
		}
	}
}

func TestAppendReplayReopen(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, records(3))
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, j)
	if got, want := j.Recovered(), (journal.Recovery{Kept: 3}); got != want {
		t.Errorf("Recovered() = %v, want %v", got, want)
	}
	if s := j.Append([]byte("record 4")); s != 4 {
		t.Errorf("Append after 3 replayed records = %d, want 4", s)
	}
	waitDurable(t, j, 4)
	// The state directory is held while j is open.
	if _, err := journal.Open(dir, journal.Options{LockTimeout: time.Millisecond}); !errors.Is(err, journal.ErrLocked) {
		t.Errorf("second Open(%s) = %v, want ErrLocked", dir, err)
	} else if !strings.Contains(err.Error(), filepath.Join(dir, journal.FileName)) {
		t.Errorf("second Open error %q does not name the file", err)
	}
}

func TestReopenReplaysAll(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, records(5))
	if diff := cmp.Diff(records(5), journaltest.Read(t, dir)); diff != "" {
		t.Errorf("replay mismatch (-want +got):\n%s", diff)
	}
}

func TestNewerVersionRefused(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string) string // returns the path the error must name
	}{{
		name: "journal.db",
		damage: func(t *testing.T, dir string) string {
			raw(t, dir, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, journal.Version+1))
			})
			return filepath.Join(dir, journal.FileName)
		},
	}, {
		name: "segment header",
		damage: func(t *testing.T, dir string) string {
			path := segPath(dir, 1)
			b := readFile(t, path)
			binary.BigEndian.PutUint32(b[8:], journal.Version+1)
			binary.BigEndian.PutUint32(b[20:], crc32.Checksum(b[:20], crc32.MakeTable(crc32.Castagnoli)))
			writeFile(t, path, b)
			return path
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			journaltest.Write(t, dir, records(1))
			path := tt.damage(t, dir)
			_, err := journal.Open(dir, journal.Options{})
			var ve *journal.VersionError
			if !errors.As(err, &ve) || ve.Found != journal.Version+1 {
				t.Fatalf("Open of a format %d journal = %v, want a VersionError", journal.Version+1, err)
			}
			for _, want := range []string{path, fmt.Sprint("format ", journal.Version+1), "empty --state"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			// Refused, and not changed: still refused.
			if _, err := journal.Open(dir, journal.Options{}); !errors.As(err, &ve) {
				t.Errorf("second Open = %v, want a VersionError again", err)
			}
		})
	}
}

// raw edits journal.db under the journal's feet.
func raw(t *testing.T, dir string, f func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, journal.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(f); err != nil {
		t.Fatal(err)
	}
}

// segPath is the segment of dir's journal whose first record is first.
func segPath(dir string, first int) string {
	return filepath.Join(dir, journal.DirName, fmt.Sprintf("%020d.seg", first))
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The frames of records(n) in one segment: a 24-byte header, then 8 bytes
// of frame header and the 8 bytes of "record i" each.
const headerSize, frameSize = 24, 16

func frameAt(i int) int { return headerSize + frameSize*(i-1) }

// writeEach writes recs with one commit each, in segments of segBytes.
func writeEach(t *testing.T, dir string, recs [][]byte, segBytes int64) {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		j.Append(r)
		flush(t, j)
	}
	j.Close()
}

func TestDamagedTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   journal.Recovery
	}{{
		name: "torn last record",
		damage: func(t *testing.T, dir string) {
			b := readFile(t, segPath(dir, 1))
			writeFile(t, segPath(dir, 1), b[:len(b)-6])
		},
		want: journal.Recovery{Kept: 4, Dropped: 1, FirstDropped: 5, Reason: "record 5: torn (2 of its 8 bytes)"},
	}, {
		name: "torn frame header",
		damage: func(t *testing.T, dir string) {
			writeFile(t, segPath(dir, 1), readFile(t, segPath(dir, 1))[:frameAt(5)+3])
		},
		want: journal.Recovery{Kept: 4, Dropped: 1, FirstDropped: 5, Reason: "record 5: torn (3 bytes, shorter than its frame header)"},
	}, {
		name: "flipped bit in record 3",
		damage: func(t *testing.T, dir string) {
			b := readFile(t, segPath(dir, 1))
			b[frameAt(4)-1] ^= 0x10
			writeFile(t, segPath(dir, 1), b)
		},
		want: journal.Recovery{Kept: 2, Dropped: 3, FirstDropped: 3, Reason: "record 3: checksum mismatch (torn or corrupt)"},
	}, {
		name: "record 2's frame in record 4's place",
		damage: func(t *testing.T, dir string) {
			b := readFile(t, segPath(dir, 1))
			copy(b[frameAt(4):frameAt(5)], b[frameAt(2):frameAt(3)])
			writeFile(t, segPath(dir, 1), b)
		},
		want: journal.Recovery{Kept: 3, Dropped: 2, FirstDropped: 4, Reason: "record 4: checksum mismatch (torn or corrupt)"},
	}, {
		name: "a length over the bound",
		damage: func(t *testing.T, dir string) {
			b := readFile(t, segPath(dir, 1))
			binary.BigEndian.PutUint32(b[frameAt(2):], 1<<31)
			writeFile(t, segPath(dir, 1), b)
		},
		want: journal.Recovery{Kept: 1, Dropped: 1, FirstDropped: 2, Reason: "record 2: length 2147483648 is over 1073741824 (corrupt)"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			journaltest.Write(t, dir, records(5))
			tt.damage(t, dir)
			checkRecovery(t, dir, tt.want)
		})
	}
}

// TestMissingSegment: the segments must follow one another; from the
// first record missing on, nothing is kept.
func TestMissingSegment(t *testing.T) {
	dir := t.TempDir()
	writeEach(t, dir, records(5), 1) // a segment per record
	if err := os.Remove(segPath(dir, 2)); err != nil {
		t.Fatal(err)
	}
	checkRecovery(t, dir, journal.Recovery{Kept: 1, Dropped: 3, FirstDropped: 2,
		Reason: "record 2 is missing (the next segment, 00000000000000000003.seg, starts at record 3)"})
	if _, err := os.Stat(segPath(dir, 3)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("segment 3, after the gap, is still there: %v", err)
	}
}

// checkRecovery opens the damaged journal in dir, which held records(n),
// compares what it recovered with want, appends a record and checks that
// a replay then gives the intact prefix and it.
func checkRecovery(t *testing.T, dir string, want journal.Recovery) {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, j.Recovered()); diff != "" {
		t.Errorf("Recovered() mismatch (-want +got):\n%s", diff)
	}
	// New records follow the intact prefix; the damaged ones are gone for good.
	s := j.Append([]byte("new"))
	if w := journal.Seq(want.Kept + 1); s != w {
		t.Errorf("Append = %d, want %d", s, w)
	}
	flush(t, j)
	j.Close()
	all := append(records(want.Kept), []byte("new"))
	if diff := cmp.Diff(all, journaltest.Read(t, dir)); diff != "" {
		t.Errorf("replay after recovery mismatch (-want +got):\n%s", diff)
	}
}

// TestEveryOffset cuts a small journal at every offset, and flips a bit
// at every offset in turn (bit off%8, so that every bit position of a
// byte is hit): Open always succeeds, keeps exactly the records
// before the damage, never one that was not written, and the journal
// goes on from there.
func TestEveryOffset(t *testing.T) {
	const n = 3
	src := t.TempDir()
	journaltest.Write(t, src, records(n))
	seg := readFile(t, segPath(src, 1))
	if len(seg) != frameAt(n+1) {
		t.Fatalf("segment of %d records is %d bytes, want %d", n, len(seg), frameAt(n+1))
	}
	// intact is how many records lie wholly before offset off.
	intact := func(off int) int {
		k := 0
		for k < n && frameAt(k+2) <= off {
			k++
		}
		return k
	}
	check := func(t *testing.T, b []byte, want int) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, journal.DirName), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, segPath(dir, 1), b)
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		var got [][]byte
		if err := j.Replay(func(r journal.Record) error { got = append(got, append([]byte(nil), r.Data...)); return nil }); err != nil {
			t.Fatalf("Replay: %v", err)
		}
		if diff := cmp.Diff(records(want), got); diff != "" {
			t.Fatalf("replay mismatch (-want +got):\n%s", diff)
		}
		j.Append([]byte("new"))
		flush(t, j)
		j.Close()
		if diff := cmp.Diff(append(records(want), []byte("new")), journaltest.Read(t, dir)); diff != "" {
			t.Fatalf("replay after appending mismatch (-want +got):\n%s", diff)
		}
	}
	for off := 0; off <= len(seg); off++ {
		t.Run(fmt.Sprint("cut-", off), func(t *testing.T) { check(t, seg[:off], intact(off)) })
	}
	for off := range seg {
		b := append([]byte(nil), seg...)
		b[off] ^= 1 << (off % 8)
		want := 0
		if off >= headerSize {
			want = intact(off) // the record holding off is lost, and all after it
		}
		t.Run(fmt.Sprint("flip-", off), func(t *testing.T) { check(t, b, want) })
	}
}

// flush writes what j has queued, on the calling goroutine.
func flush(t *testing.T, j *journal.Journal) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j.Run(ctx) // a cancelled Run writes what is queued, then returns
	if err := j.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestCrashPoints(t *testing.T) {
	src := t.TempDir()
	journaltest.Write(t, src, records(4))
	var seen []int
	journaltest.CrashPoints(t, src, func(t *testing.T, dir string, n int) {
		seen = append(seen, n)
		if diff := cmp.Diff(records(n), journaltest.Read(t, dir)); diff != "" {
			t.Errorf("prefix %d mismatch (-want +got):\n%s", n, diff)
		}
	})
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4}, seen); diff != "" {
		t.Errorf("crash points mismatch (-want +got):\n%s", diff)
	}
}

// TestFaults injects write failures, fsync failures and writes that land
// but report a timeout into a third of the commits, and checks that no
// record is ever reported durable before it is on disk, and that in the
// end every record is there exactly once, in order.
func TestFaults(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0)) // used on the committer goroutine only
			const n, burst = 400, 7
			faulty := journaltest.NewFaulty(func([]journal.Record) journaltest.Fault {
				if rng.IntN(3) > 0 {
					return journaltest.None
				}
				return journaltest.Fault(1 + rng.IntN(3))
			})
			dir := t.TempDir()
			var j *journal.Journal
			wrap := func(s journal.Store) journal.Store {
				return checker{faulty.Wrap(s), func() {
					// Between commits nothing is in flight: compare exactly.
					if d, landed := j.Durable(), faulty.Landed(); d > landed {
						t.Errorf("Durable() = %d but only records up to %d reached the store", d, landed)
					}
				}}
			}
			j, err := journal.Open(dir, journal.Options{Wrap: wrap, RetryPause: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			stop := runCommitter(j)
			var want [][]byte
			for i := 0; i < n; i += burst {
				var last journal.Seq
				for k := i; k < min(n, i+burst); k++ {
					rec := fmt.Appendf(nil, "record %d", k+1)
					want = append(want, rec)
					last = j.Append(rec)
				}
				for d := j.Durable(); d < last; d = j.Durable() {
					if landed := faulty.Landed(); d > landed {
						t.Fatalf("Durable() = %d but only records up to %d reached the store", d, landed)
					}
					<-j.Synced()
				}
				if landed := faulty.Landed(); j.Durable() > landed {
					t.Fatalf("Durable() = %d but only records up to %d reached the store", j.Durable(), landed)
				}
			}
			stop()
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			ok, failed := faulty.Counts()
			if failed == 0 {
				t.Fatalf("no fault was injected in %d commits: the test tests nothing", ok)
			}
			if diff := cmp.Diff(want, journaltest.Read(t, dir)); diff != "" {
				t.Errorf("replay after faults mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// checker calls check before each commit.
type checker struct {
	journal.Store
	check func()
}

func (c checker) Commit(recs []journal.Record) error {
	c.check()
	return c.Store.Commit(recs)
}

// FuzzSegment damages the segment of a small journal (a cut, and bytes
// XORed in at an offset) and checks that Open neither fails nor panics,
// and that Replay gives a prefix of the records written: never a record
// that was not written.
func FuzzSegment(f *testing.F) {
	f.Add([]byte("record"), []byte(""), uint16(1000), uint16(0), []byte{})
	f.Add([]byte("a"), []byte("bb"), uint16(30), uint16(40), []byte{0xff})
	f.Add([]byte{}, []byte("x"), uint16(1000), uint16(8), []byte{1})
	f.Fuzz(func(t *testing.T, a, b []byte, cut, at uint16, xor []byte) {
		written := [][]byte{a, b, []byte("c")}
		dir := t.TempDir()
		journaltest.Write(t, dir, written)
		seg := readFile(t, segPath(dir, 1))
		seg = seg[:min(int(cut), len(seg))]
		for i, x := range xor {
			if k := int(at) + i; k < len(seg) {
				seg[k] ^= x
			}
		}
		writeFile(t, segPath(dir, 1), seg)
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		var got [][]byte
		if err := j.Replay(func(r journal.Record) error { got = append(got, append([]byte{}, r.Data...)); return nil }); err != nil {
			t.Fatalf("Replay after Open: %v", err)
		}
		if len(got) != j.Recovered().Kept || len(got) > len(written) {
			t.Fatalf("Recovered() = %v, Replay gave %d records", j.Recovered(), len(got))
		}
		for i, r := range got {
			if !bytes.Equal(r, written[i]) {
				t.Errorf("record %d replayed as %q; %q was written", i+1, r, written[i])
			}
		}
	})
}

// TestReplayError: an error from Replay's function stops it and is
// returned, the last record's too.
func TestReplayError(t *testing.T) {
	dir := t.TempDir()
	journaltest.Write(t, dir, records(3))
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	stop := errors.New("stop here")
	for _, at := range []journal.Seq{1, 3} {
		var seen journal.Seq
		err := j.Replay(func(r journal.Record) error {
			seen = r.Seq
			if r.Seq == at {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || seen != at {
			t.Errorf("Replay stopped by record %d: %v after record %d; want its error there", at, err, seen)
		}
	}
}
