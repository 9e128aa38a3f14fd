// Package journaltest has fakes and helpers for tests of journal users:
// a store that fails on command, and crash-point enumeration.
package journaltest

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"trellis/internal/journal"
)

// Fault is what a Faulty store does to the next commits.
type Fault int

const (
	// None commits normally.
	None Fault = iota
	// WriteFails reports an error and writes nothing.
	WriteFails
	// SyncFails writes the batch but reports the error an fsync would.
	SyncFails
	// ExecuteAndTimeout writes the batch durably, then reports a timeout.
	ExecuteAndTimeout
)

// ErrInjected is the error a Faulty store reports.
var ErrInjected = errors.New("journaltest: injected fault")

// Faulty wraps a journal store and applies a chosen fault to commits.
// Use it as journal.Options{Wrap: f.Wrap}.
type Faulty struct {
	mu      sync.Mutex // guards the fields below
	inner   journal.Store
	next    func(batch []journal.Record) Fault
	commits int         // commits that returned nil
	failed  int         // commits that returned ErrInjected
	landed  journal.Seq // last Seq the inner store wrote, error or not
	compact func(op Op, upto journal.Seq) Fault
}

// Op is a compaction's write: the snapshot, or dropping the records it
// stands for.
type Op int

const (
	// WriteSnapshot writes the snapshot of records 1..upto.
	WriteSnapshot Op = iota
	// Drop deletes records up to upto.
	Drop
)

// FailCompaction makes decide pick the fault of each compaction write
// (nil: never fail). decide runs on the compacting goroutine.
func (f *Faulty) FailCompaction(decide func(op Op, upto journal.Seq) Fault) {
	f.mu.Lock()
	f.compact = decide
	f.mu.Unlock()
}

// NewFaulty returns a store wrapper; decide picks the fault for each
// batch (nil: never fail). decide runs on the committer goroutine.
func NewFaulty(decide func(batch []journal.Record) Fault) *Faulty {
	return &Faulty{next: decide}
}

// Wrap is journal.Options.Wrap.
func (f *Faulty) Wrap(s journal.Store) journal.Store {
	f.mu.Lock()
	f.inner = s
	f.mu.Unlock()
	return f
}

// Commit applies the chosen fault around the real commit.
func (f *Faulty) Commit(recs []journal.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fault := None
	if f.next != nil {
		fault = f.next(recs)
	}
	if fault == WriteFails {
		f.failed++
		return ErrInjected
	}
	if err := f.inner.Commit(recs); err != nil {
		return err
	}
	f.landed = max(f.landed, recs[len(recs)-1].Seq)
	if fault != None {
		f.failed++
		return ErrInjected
	}
	f.commits++
	return nil
}

// WriteSnapshot applies the chosen fault around the real write.
func (f *Faulty) WriteSnapshot(snap journal.Snapshot) error {
	return f.compaction(WriteSnapshot, snap.Upto, func() error { return f.inner.WriteSnapshot(snap) })
}

// Drop applies the chosen fault around the real drop.
func (f *Faulty) Drop(upto journal.Seq) error {
	return f.compaction(Drop, upto, func() error { return f.inner.Drop(upto) })
}

func (f *Faulty) compaction(op Op, upto journal.Seq, write func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fault := None
	if f.compact != nil {
		fault = f.compact(op, upto)
	}
	if fault == WriteFails {
		f.failed++
		return ErrInjected
	}
	if err := write(); err != nil {
		return err
	}
	if fault != None {
		f.failed++
		return ErrInjected
	}
	f.commits++
	return nil
}

// Counts returns the commits that succeeded and those that failed.
func (f *Faulty) Counts() (ok, failed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commits, f.failed
}

// Landed is the last Seq that reached the inner store, even in a commit
// that then reported an error. Batches land in order, so every Seq up to
// it is on disk: a journal must never report more than this durable.
func (f *Faulty) Landed() journal.Seq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.landed
}

// Write creates a journal in dir holding recs, durably, and closes it.
func Write(t testing.TB, dir string, recs [][]byte) {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatalf("journal.Open(%s): %v", dir, err)
	}
	defer j.Close()
	appendAll(t, j, dir, recs)
	if got, want := j.Durable(), journal.Seq(len(recs)); got != want {
		t.Fatalf("journal in %s: Durable() = %d, want %d", dir, got, want)
	}
}

// Read returns every record of the journal in dir, in order.
func Read(t testing.TB, dir string) [][]byte {
	t.Helper()
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatalf("journal.Open(%s): %v", dir, err)
	}
	defer j.Close()
	var recs [][]byte
	if err := j.Replay(func(r journal.Record) error {
		recs = append(recs, append([]byte(nil), r.Data...))
		return nil
	}); err != nil {
		t.Fatalf("replay %s: %v", dir, err)
	}
	return recs
}

// CrashPoints calls f once for each prefix of the journal in src: with a
// fresh state directory holding its first n records, for n = 0..all, as
// if the manager had been killed right after record n became durable.
// Each call is a subtest named "after-N".
func CrashPoints(t *testing.T, src string, f func(t *testing.T, dir string, n int)) {
	t.Helper()
	recs := Read(t, src)
	for n := 0; n <= len(recs); n++ {
		t.Run("after-"+strconv.Itoa(n), func(t *testing.T) {
			dir := t.TempDir()
			Write(t, dir, recs[:n])
			f(t, dir, n)
		})
	}
}

// WriteCompacted creates a journal in dir holding recs as a compaction
// after record k leaves it: a snapshot that fold made of recs[:k], then
// the records after k.
func WriteCompacted(t testing.TB, dir string, recs [][]byte, k int, fold journal.Fold) {
	t.Helper()
	Write(t, dir, recs[:k])
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatalf("journal.Open(%s): %v", dir, err)
	}
	defer j.Close()
	if _, err := j.Compact(fold); err != nil {
		t.Fatalf("compact %s after record %d: %v", dir, k, err)
	}
	appendAll(t, j, dir, recs[k:])
}

// appendAll appends recs to j, which no Run serves, and writes them.
func appendAll(t testing.TB, j *journal.Journal, dir string, recs [][]byte) {
	t.Helper()
	for _, r := range recs {
		j.Append(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j.Run(ctx) // a cancelled Run writes what is queued, then returns
	if err := j.Err(); err != nil {
		t.Fatalf("write journal in %s: %v", dir, err)
	}
}

// WriteFormat1 makes dir a state directory whose journal is in format 1,
// as trellis wrote it before segments: the whole journal in journal.db (a
// bbolt file), records keyed by Seq in bucket "records", each value a
// CRC-32C of key and data, then the data; the version and the snapshot
// (of snap records, standing for records 1..upto; none when upto is 0) in
// bucket "meta". recs follow the snapshot.
func WriteFormat1(t testing.TB, dir string, upto uint64, snap, recs [][]byte) {
	t.Helper()
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	db, err := bolt.Open(filepath.Join(dir, journal.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		if err := meta.Put([]byte("version"), binary.BigEndian.AppendUint64(nil, 1)); err != nil {
			return err
		}
		if upto > 0 {
			// format 1, Upto, At, count, records (uvarint length, bytes), CRC-32C
			b := []byte{1}
			b = binary.BigEndian.AppendUint64(b, upto)
			b = binary.BigEndian.AppendUint64(b, uint64(time.Unix(1, 0).UnixNano()))
			b = binary.AppendUvarint(b, uint64(len(snap)))
			for _, r := range snap {
				b = binary.AppendUvarint(b, uint64(len(r)))
				b = append(b, r...)
			}
			if err := meta.Put([]byte("snapshot"), binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucketIfNotExists([]byte("records"))
		if err != nil {
			return err
		}
		for i, r := range recs {
			k := binary.BigEndian.AppendUint64(nil, upto+uint64(i)+1)
			v := binary.BigEndian.AppendUint32(nil, crc32.Checksum(r, castagnoli)^crc32.Checksum(k, castagnoli))
			if err := b.Put(k, append(v, r...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write a format 1 journal in %s: %v", dir, err)
	}
}
