// Package journaltest has fakes and helpers for tests of journal users:
// a store that fails on command, and crash-point enumeration.
package journaltest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

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
