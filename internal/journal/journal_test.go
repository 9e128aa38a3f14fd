package journal_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
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
	dir := t.TempDir()
	journaltest.Write(t, dir, records(1))
	raw(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("version"), binary.BigEndian.AppendUint64(nil, journal.Version+1))
	})
	_, err := journal.Open(dir, journal.Options{})
	var ve *journal.VersionError
	if !errors.As(err, &ve) || ve.Found != journal.Version+1 {
		t.Fatalf("Open of a format %d journal = %v, want a VersionError", journal.Version+1, err)
	}
	for _, want := range []string{filepath.Join(dir, journal.FileName), "format 2", "empty --state"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// raw edits the journal file under the journal's feet.
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

func key(s uint64) []byte { return binary.BigEndian.AppendUint64(nil, s) }

func TestDamagedTail(t *testing.T) {
	tests := []struct {
		name   string
		damage func(b *bolt.Bucket) error
		want   journal.Recovery
	}{{
		name: "torn last record",
		damage: func(b *bolt.Bucket) error {
			return b.Put(key(5), b.Get(key(5))[:2])
		},
		want: journal.Recovery{Kept: 4, Dropped: 1, FirstDropped: 5, Reason: "record 5: torn (2 bytes, shorter than its checksum)"},
	}, {
		name: "flipped bit in record 3",
		damage: func(b *bolt.Bucket) error {
			v := append([]byte(nil), b.Get(key(3))...)
			v[len(v)-1] ^= 0x10
			return b.Put(key(3), v)
		},
		want: journal.Recovery{Kept: 2, Dropped: 3, FirstDropped: 3, Reason: "record 3: checksum mismatch (torn or corrupt)"},
	}, {
		name: "record 4 stored under key 2's bytes",
		damage: func(b *bolt.Bucket) error {
			return b.Put(key(4), b.Get(key(2)))
		},
		want: journal.Recovery{Kept: 3, Dropped: 2, FirstDropped: 4, Reason: "record 4: checksum mismatch (torn or corrupt)"},
	}, {
		name:   "missing record 2",
		damage: func(b *bolt.Bucket) error { return b.Delete(key(2)) },
		want:   journal.Recovery{Kept: 1, Dropped: 3, FirstDropped: 2, Reason: "record 2 is missing (next is 3)"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			journaltest.Write(t, dir, records(5))
			raw(t, dir, func(tx *bolt.Tx) error { return tt.damage(tx.Bucket([]byte("records"))) })

			j, err := journal.Open(dir, journal.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, j.Recovered()); diff != "" {
				t.Errorf("Recovered() mismatch (-want +got):\n%s", diff)
			}
			// New records follow the intact prefix; the damaged ones are gone for good.
			s := j.Append([]byte("new"))
			if want := journal.Seq(tt.want.Kept + 1); s != want {
				t.Errorf("Append = %d, want %d", s, want)
			}
			flush(t, j)
			j.Close()
			want := append(records(tt.want.Kept), []byte("new"))
			if diff := cmp.Diff(want, journaltest.Read(t, dir)); diff != "" {
				t.Errorf("replay after recovery mismatch (-want +got):\n%s", diff)
			}
		})
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

// FuzzOpen stores arbitrary bytes as records, under arbitrary keys, and
// checks that Open neither fails nor panics, keeps an intact prefix, and
// that Replay returns exactly what it kept.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("record"), uint64(1), []byte{0, 0, 0, 0})
	f.Add([]byte{}, uint64(2), []byte("x"))
	f.Fuzz(func(t *testing.T, good []byte, k uint64, bad []byte) {
		dir := t.TempDir()
		journaltest.Write(t, dir, [][]byte{good})
		raw(t, dir, func(tx *bolt.Tx) error { return tx.Bucket([]byte("records")).Put(key(k), bad) })
		j, err := journal.Open(dir, journal.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer j.Close()
		rec := j.Recovered()
		n := 0
		if err := j.Replay(func(r journal.Record) error { n++; return nil }); err != nil {
			t.Fatalf("Replay after Open: %v", err)
		}
		if n != rec.Kept || rec.Kept > 2 || (k == 1 && rec.Kept > 1) {
			t.Errorf("Recovered() = %v, Replay gave %d records", rec, n)
		}
	})
}
