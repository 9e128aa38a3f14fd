package journal

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Version is the journal format this code writes: 2, segment files (1 was
// one bbolt file, which Open converts). A journal whose header names a
// higher one is refused.
const Version = 2

// FileName is the file in the state directory that holds the lock on it
// (and, in format 1, the journal itself): a small bbolt file whose header
// names the format, so that a trellis that reads only format 1 refuses a
// state directory of format 2 instead of starting afresh beside it.
const FileName = "journal.db"

// DirName is the directory of the segments and the snapshot, inside the
// state directory.
const DirName = "journal"

// VersionError refuses a journal written by a newer trellis.
type VersionError struct {
	Path  string
	Found uint64
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("journal: %s has format %d, this trellis reads format %d or older: "+
		"run the newer trellis that wrote it, or start with an empty --state directory", e.Path, e.Found, Version)
}

// DefaultCommitInterval is Options.CommitInterval's default.
const DefaultCommitInterval = time.Millisecond

// maxStretch bounds how far the pacing of commits stretches under load:
// at most maxStretch × CommitInterval from the start of one commit to the
// start of the next (see Options.CommitInterval and pace).
const maxStretch = 4

// Seq numbers records from 1; it is also the record's key.
type Seq uint64

// Record is one journal entry: its number and the caller's bytes.
type Record struct {
	Seq  Seq
	Data []byte
}

// Store writes durably: each call is synced before it returns, or an
// error. It is the seam where tests inject faults (Options.Wrap).
type Store interface {
	// Commit writes a batch of records. After a Commit that returned an
	// error, the next begins with the same first record (a write that
	// landed although it reported an error is written again, not twice).
	Commit(recs []Record) error
	// WriteSnapshot replaces the snapshot; records are not touched.
	WriteSnapshot(s Snapshot) error
	// Drop deletes the records up to upto (a durable snapshot stands for
	// them).
	Drop(upto Seq) error
}

// Snapshot is what compaction leaves in place of records 1..Upto: the
// caller's folded records, which replay in their place.
type Snapshot struct {
	Upto    Seq       // the last record it stands for
	At      time.Time // when it was taken
	Records [][]byte  // replayed before the records after Upto
}

// SnapshotInfo describes the last snapshot (zero: none yet).
type SnapshotInfo struct {
	Upto    Seq       // records folded into it: 1..Upto
	At      time.Time // when it was taken
	Records int       // records it holds
	Bytes   int64     // its size
}

// Fold is the caller's compaction: the records of the last snapshot and
// then the records after it, in order, go in; fewer records that replay to
// the same state come out. It must not keep recs' slices past the call
// unless it copies them (they are copies already: it may keep them).
type Fold func(recs [][]byte) ([][]byte, error)

// Options tune Open; the zero value is what the manager uses.
type Options struct {
	// Wrap, when set, wraps the segment store (fault injection, counting).
	Wrap func(Store) Store
	// SegmentBytes is the size at which the next commit starts a new
	// segment file; 0 means 4 MiB. Compaction deletes whole segments.
	SegmentBytes int64
	// LockTimeout is how long Open waits for another holder of the state
	// directory to let go; 0 means 100ms.
	LockTimeout time.Duration
	// RetryPause is the pause before a failed batch is written again; 0
	// means 50ms.
	RetryPause time.Duration
	// MaxBatch bounds the records in one commit; 0 means 8192.
	MaxBatch int
	// CommitInterval is the least time from the start of one commit to
	// the start of the next: records queued meanwhile go in one group, so
	// a burst costs fewer fdatasyncs, while a record queued after a quiet
	// spell is written at once. Under load it stretches, up to maxStretch
	// intervals: after a group of n > 1 records while which more were
	// queued (records that did not wait for it), the next commit starts
	// min(n, maxStretch) intervals after it; after any other group the
	// stretch halves. So records that keep arriving share fewer
	// fdatasyncs, while one client that waits for each answer before
	// its next request (its records never queue behind a commit) keeps
	// the interval. 0 means DefaultCommitInterval; a negative value, none.
	CommitInterval time.Duration
	// SnapshotRecords and SnapshotBytes say when compaction is due (Due):
	// once the records after the last snapshot number at least
	// max(SnapshotRecords, a quarter of the snapshot's own records), or
	// weigh at least max(SnapshotBytes, a quarter of its size). Growing
	// with the snapshot keeps the rewriting of a large state linear over
	// a long run (each record is rewritten about 4 times more), and what
	// a restart reads at most 1.25 times the snapshot. 0 means 20,000
	// records and 16 MiB.
	SnapshotRecords int
	SnapshotBytes   int64
}

// Recovery says what Open kept of the journal and what it dropped.
type Recovery struct {
	Kept         int    // intact records after the snapshot, replayed in order
	Leftover     int    // records the snapshot stands for, skipped at Open (their segments deleted once wholly covered)
	Snapshot     Seq    // the snapshot stands for records 1..Snapshot
	Dropped      int    // records deleted from FirstDropped on
	FirstDropped Seq    // 0 when nothing was dropped
	Reason       string // why FirstDropped was not kept
	// Converted: the journal was in format 1 (journal.db) and was
	// converted to segments at this Open.
	Converted bool
}

func (r Recovery) String() string {
	snap := ""
	if r.Converted {
		snap = "converted from format 1 (journal.db): "
	}
	if r.Snapshot > 0 {
		snap += fmt.Sprintf("a snapshot of records 1..%d, then ", r.Snapshot)
	}
	if r.Reason == "" {
		return fmt.Sprintf("%s%d records intact", snap, r.Kept)
	}
	return fmt.Sprintf("kept %srecords %d..%d; dropped %d records from %d on: %s",
		snap, r.Snapshot+1, r.Snapshot+Seq(r.Kept), r.Dropped, r.FirstDropped, r.Reason)
}

// Journal is an open journal. See the package doc for who calls what.
type Journal struct {
	dir       string // the journal directory (DirName)
	lock      *bolt.DB
	seg       *segments
	store     Store
	opts      Options
	recovered Recovery

	mu      sync.Mutex // guards pending, next
	pending []Record
	next    Seq

	compacting sync.Mutex // one Compact at a time
	snap       atomic.Pointer[SnapshotInfo]
	compactErr atomic.Pointer[error]
	// bytes: the data of the durable records after the snapshot.
	bytes atomic.Int64
	// disk: the size of the journal's files as last measured (at Open, by
	// the committer at most once a second after a commit, after each
	// compaction), so that DiskBytes never waits for the store's lock,
	// which a commit holds across its fdatasync.
	disk atomic.Int64

	wake    chan struct{} // one slot: Append has queued a record
	synced  chan struct{} // one slot: Durable advanced
	durable atomic.Uint64
	err     atomic.Pointer[error]
}

// Open opens (or creates) the journal in the state directory dir: it
// takes the lock, checks the format (converting a format 1 journal once),
// reads the snapshot and the segments, and cuts off a damaged tail (see
// Recovered).
func Open(dir string, opts Options) (*Journal, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 100 * time.Millisecond
	}
	if opts.RetryPause == 0 {
		opts.RetryPause = 50 * time.Millisecond
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 8192
	}
	if opts.SnapshotRecords == 0 {
		opts.SnapshotRecords = 20000
	}
	if opts.SnapshotBytes == 0 {
		opts.SnapshotBytes = 16 << 20
	}
	if opts.CommitInterval == 0 {
		opts.CommitInterval = DefaultCommitInterval
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = 4 << 20
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: create state directory: %w", err)
	}
	lock, converted, err := lockState(dir, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	j := &Journal{
		dir:  filepath.Join(dir, DirName),
		lock: lock,
		opts: opts,
		wake: make(chan struct{}, 1),
		// synced has one slot: a late reader sees one signal, then reads Durable.
		synced: make(chan struct{}, 1),
	}
	if err := j.open(); err != nil {
		lock.Close()
		return nil, err
	}
	j.recovered.Converted = converted
	j.store = j.seg
	if opts.Wrap != nil {
		j.store = opts.Wrap(j.store)
	}
	last := j.Snapshot().Upto + Seq(j.recovered.Kept)
	j.next = last + 1
	j.durable.Store(uint64(last))
	j.measure()
	return j, nil
}

// open reads the snapshot and the segments.
func (j *Journal) open() error {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return fmt.Errorf("journal: create %s: %w", j.dir, err)
	}
	info := SnapshotInfo{}
	snap, size, err := readSnapshot(j.dir)
	if err != nil {
		return err
	}
	if size > 0 {
		info = snap.info(size)
	}
	j.snap.Store(&info)
	seg, sc, err := openSegments(j.dir, info.Upto, j.opts.SegmentBytes)
	if err != nil {
		return err
	}
	j.seg = seg
	j.recovered = Recovery{Kept: sc.kept, Leftover: sc.leftover, Snapshot: info.Upto,
		Dropped: sc.dropped, FirstDropped: sc.firstBad, Reason: sc.reason}
	j.bytes.Store(sc.bytes)
	return nil
}

// readSnapshot reads the snapshot file in dir; size 0: there is none.
func readSnapshot(dir string) (Snapshot, int, error) {
	path := filepath.Join(dir, snapshotName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Snapshot{}, 0, nil
	}
	if err != nil {
		return Snapshot{}, 0, fmt.Errorf("journal: read the snapshot: %w", err)
	}
	snap, err := decodeSnapshot(b)
	if err != nil {
		return Snapshot{}, 0, fmt.Errorf("journal: %s is damaged (%v), and the records it stands for are gone: "+
			"restore the state directory from a backup, or start with an empty --state directory", path, err)
	}
	return snap, len(b), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Recovered says what Open kept and dropped.
func (j *Journal) Recovered() Recovery { return j.recovered }

// Path is the journal's directory (segments and snapshot).
func (j *Journal) Path() string { return j.dir }

// DiskBytes is the size of the journal's files: segments, snapshot, and
// journal.db (the lock and format, and a converted journal's old pages),
// as of the last measure, at most about a second old (it is measured at
// Open, by Run after a commit, and after each compaction). It takes no
// lock and touches no file.
func (j *Journal) DiskBytes() int64 { return j.disk.Load() }

// measure stats the journal's files into disk. It takes the store's
// lock, which a commit holds across its write and fdatasync: only the
// committer (Run), the compactor and Open call it.
func (j *Journal) measure() {
	n := j.seg.diskBytes()
	if fi, err := os.Stat(j.lock.Path()); err == nil {
		n += fi.Size()
	}
	j.disk.Store(n)
}

// measureEvery bounds how often Run measures the journal's files.
const measureEvery = time.Second

// Replay calls f with the snapshot's records (Seq 0), then with every
// record after it, in order. Call it before the first Append; data is
// valid only during the call.
func (j *Journal) Replay(f func(Record) error) error {
	snap, _, err := readSnapshot(j.dir)
	if err != nil {
		return err
	}
	for _, r := range snap.Records {
		if err := f(Record{Data: r}); err != nil {
			return err
		}
	}
	if err := j.seg.scan(snap.Upto+1, j.Durable(), f); err != nil {
		var ve *VersionError
		if errors.As(err, &ve) {
			return err
		}
		return fmt.Errorf("journal: %s: %w", j.dir, err)
	}
	return nil
}

// Append queues data and returns its Seq; it is durable once Durable()
// reaches it. Only one goroutine may call Append.
func (j *Journal) Append(data []byte) Seq {
	j.mu.Lock()
	s := j.next
	j.next++
	j.pending = append(j.pending, Record{Seq: s, Data: data})
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return s
}

// Durable is the highest Seq known to be on disk, with all before it.
func (j *Journal) Durable() Seq { return Seq(j.durable.Load()) }

// Synced receives (one slot, coalesced) after Durable advances.
func (j *Journal) Synced() <-chan struct{} { return j.synced }

// Err is the last commit failure, nil once a commit succeeds again.
func (j *Journal) Err() error {
	if p := j.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Run commits queued records in groups until ctx ends, then writes what
// is still queued once more and returns. It measures the journal's files
// (DiskBytes) at most once a second after a commit. It exits when ctx
// ends.
func (j *Journal) Run(ctx context.Context) error {
	var last time.Time // when the last commit started
	stretch := 1       // the next commit starts stretch intervals after it (pace)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var measured time.Time         // when Run last measured DiskBytes
	var remeasure <-chan time.Time // fires when a commit awaits its measure
	for {
		select {
		case <-ctx.Done():
			j.commitPending()
			j.measure()
			return nil
		case <-remeasure:
			remeasure = nil
			j.measure()
			measured = time.Now()
			continue
		case <-j.wake:
			if !j.queued() {
				continue // a stale wake: its records went with the last group
			}
		}
		if wait := j.opts.CommitInterval*time.Duration(stretch) - time.Since(last); wait > 0 {
			// Records queued meanwhile join this group.
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				j.commitPending()
				return nil
			case <-timer.C:
			}
		}
		last = time.Now()
		for {
			n, ok := j.commitPending()
			if ok {
				stretch = pace(stretch, n, j.queued())
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(j.opts.RetryPause):
			}
		}
		if remeasure == nil {
			if wait := measureEvery - time.Since(measured); wait > 0 {
				remeasure = time.After(wait)
			} else {
				j.measure()
				measured = time.Now()
			}
		}
	}
}

// pace returns how many commit intervals the next commit waits after
// the start of the last, which waited stretch and wrote n records, with
// queued records or not as it ended: min(n, maxStretch) under load (a
// group, and records that arrived while it was written), else half the
// stretch (at least 1). A client that waits for each record before its
// next one never has records queued behind a commit, so it keeps 1.
func pace(stretch, n int, queued bool) int {
	if queued && n > 1 {
		return min(n, maxStretch)
	}
	return max(stretch/2, 1)
}

// queued reports whether records wait for a commit.
func (j *Journal) queued() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending) > 0
}

// commitPending writes the records queued when it starts, in batches of
// at most MaxBatch, and returns how many it wrote; false after a failed
// batch, which stays queued. Records queued while it writes wait for the
// next group (Run paces it).
func (j *Journal) commitPending() (written int, ok bool) {
	j.mu.Lock()
	upto := j.next - 1
	j.mu.Unlock()
	for {
		j.mu.Lock()
		n := min(len(j.pending), j.opts.MaxBatch)
		for n > 0 && j.pending[n-1].Seq > upto {
			n-- // queued after the start: the next group's
		}
		batch := j.pending[:n:n]
		j.mu.Unlock()
		if n == 0 {
			return written, true
		}
		if err := j.store.Commit(batch); err != nil {
			err = fmt.Errorf("journal: %s: commit records %d..%d: %w (retrying; nothing after record %d is acted on)",
				j.dir, batch[0].Seq, batch[n-1].Seq, err, j.Durable())
			j.err.Store(&err)
			return written, false
		}
		written += n
		j.err.Store(nil)
		var bytes int64
		for _, r := range batch {
			bytes += int64(len(r.Data))
		}
		j.bytes.Add(bytes)
		j.mu.Lock()
		j.pending = j.pending[n:]
		if len(j.pending) == 0 {
			j.pending = nil // let the backing array go
		}
		j.mu.Unlock()
		j.durable.Store(uint64(batch[n-1].Seq))
		select {
		case j.synced <- struct{}{}:
		default:
		}
	}
}

// Close closes the files and lets go of the state directory. Call it
// after Run has returned; records still queued are not written.
func (j *Journal) Close() error {
	err := j.seg.close()
	if err2 := j.lock.Close(); err == nil {
		err = err2
	}
	return err
}
