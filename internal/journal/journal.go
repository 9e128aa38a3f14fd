package journal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Version is the journal format this code writes. A journal whose header
// names a higher one is refused.
const Version = 1

// FileName is the journal's file inside the state directory.
const FileName = "journal.db"

var (
	bucketMeta    = []byte("meta")
	bucketRecords = []byte("records")
	keyVersion    = []byte("version")
	// The snapshot (compaction) is one value in the meta bucket: see
	// encodeSnapshot.
	keySnapshot = []byte("snapshot")
)

// ErrLocked says another process holds the state directory.
var ErrLocked = errors.New("journal: state directory in use by another manager")

// VersionError refuses a journal written by a newer trellis.
type VersionError struct {
	Path  string
	Found uint64
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("journal: %s has format %d, this trellis reads format %d or older: "+
		"run the newer trellis that wrote it, or start with an empty --state directory", e.Path, e.Found, Version)
}

// Seq numbers records from 1; it is also the record's key.
type Seq uint64

// Record is one journal entry: its number and the caller's bytes.
type Record struct {
	Seq  Seq
	Data []byte
}

// Store writes durably: each call is one transaction, synced, or an
// error. It is the seam where tests inject faults (Options.Wrap).
type Store interface {
	// Commit writes a batch of records.
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
	// Wrap, when set, wraps the bbolt store (fault injection, counting).
	Wrap func(Store) Store
	// LockTimeout is how long Open waits for another holder of the state
	// directory to let go; 0 means 100ms.
	LockTimeout time.Duration
	// RetryPause is the pause before a failed batch is written again; 0
	// means 50ms.
	RetryPause time.Duration
	// MaxBatch bounds the records in one transaction; 0 means 8192.
	MaxBatch int
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
	Leftover     int    // records the snapshot stands for, dropped at Open
	Snapshot     Seq    // the snapshot stands for records 1..Snapshot
	Dropped      int    // records deleted from FirstDropped on
	FirstDropped Seq    // 0 when nothing was dropped
	Reason       string // why FirstDropped was not kept
}

func (r Recovery) String() string {
	snap := ""
	if r.Snapshot > 0 {
		snap = fmt.Sprintf("a snapshot of records 1..%d, then ", r.Snapshot)
	}
	if r.Dropped == 0 {
		return fmt.Sprintf("%s%d records intact", snap, r.Kept)
	}
	return fmt.Sprintf("kept %srecords %d..%d; dropped %d records from %d on: %s",
		snap, r.Snapshot+1, r.Snapshot+Seq(r.Kept), r.Dropped, r.FirstDropped, r.Reason)
}

// Journal is an open journal. See the package doc for who calls what.
type Journal struct {
	path      string
	db        *bolt.DB
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

	wake    chan struct{} // one slot: Append has queued a record
	synced  chan struct{} // one slot: Durable advanced
	durable atomic.Uint64
	err     atomic.Pointer[error]
}

// Open opens (or creates) the journal in dir, checks its version and its
// records, and deletes a damaged tail (see Recovered).
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: create state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	// The freelist is not written at each commit (bbolt rebuilds it at
	// Open by a scan of the file, as etcd configures it): a compaction
	// frees many pages, and writing their list with every group commit
	// would make each commit larger.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked: stop the other manager, or give this one another --state directory", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	j := &Journal{
		path:  path,
		db:    db,
		store: boltStore{db},
		opts:  opts,
		wake:  make(chan struct{}, 1),
		// synced has one slot: a late reader sees one signal, then reads Durable.
		synced: make(chan struct{}, 1),
	}
	if opts.Wrap != nil {
		j.store = opts.Wrap(j.store)
	}
	if err := j.check(); err != nil {
		db.Close()
		return nil, err
	}
	last := j.Snapshot().Upto + Seq(j.recovered.Kept)
	j.next = last + 1
	j.durable.Store(uint64(last))
	return j, nil
}

// check writes or verifies the version header and drops a damaged tail.
func (j *Journal) check() error {
	return j.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("journal: %s: create header: %w", j.path, err)
		}
		if v := meta.Get(keyVersion); v == nil {
			if err := meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, Version)); err != nil {
				return fmt.Errorf("journal: %s: write header: %w", j.path, err)
			}
		} else if len(v) != 8 {
			return fmt.Errorf("journal: %s: header is %d bytes, want 8: the file is not a trellis journal, or is damaged", j.path, len(v))
		} else if found := binary.BigEndian.Uint64(v); found > Version {
			return &VersionError{Path: j.path, Found: found}
		}
		info := SnapshotInfo{}
		if v := meta.Get(keySnapshot); v != nil {
			snap, err := decodeSnapshot(v)
			if err != nil {
				return fmt.Errorf("journal: %s: the snapshot is damaged (%v), and the records it stands for are gone: "+
					"restore the state directory from a backup, or start with an empty --state directory", j.path, err)
			}
			info = snap.info(len(v))
		}
		j.snap.Store(&info)
		j.recovered.Snapshot = info.Upto
		recs, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return fmt.Errorf("journal: %s: create records: %w", j.path, err)
		}
		var bad [][]byte
		c := recs.Cursor()
		want := info.Upto + 1
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) == 8 && Seq(binary.BigEndian.Uint64(k)) <= info.Upto {
				// The snapshot stands for it: a compaction was cut short
				// before its records were dropped. Finish it.
				bad = append(bad, append([]byte(nil), k...))
				j.recovered.Leftover++
				continue
			}
			if len(bad) == j.recovered.Leftover {
				if _, why := decode(k, v, want); why == "" {
					j.recovered.Kept++
					j.bytes.Add(int64(len(v) - 4))
					want++
					continue
				} else {
					j.recovered.FirstDropped = want
					j.recovered.Reason = why
				}
			}
			bad = append(bad, append([]byte(nil), k...))
		}
		j.recovered.Dropped = len(bad) - j.recovered.Leftover
		for _, k := range bad {
			if err := recs.Delete(k); err != nil {
				return fmt.Errorf("journal: %s: drop damaged tail: %w", j.path, err)
			}
		}
		return nil
	})
}

// decode checks one stored record and returns its data, or why it is bad.
func decode(k, v []byte, want Seq) ([]byte, string) {
	if len(k) != 8 {
		return nil, fmt.Sprintf("record %d: key is %d bytes, want 8", want, len(k))
	}
	if got := Seq(binary.BigEndian.Uint64(k)); got != want {
		return nil, fmt.Sprintf("record %d is missing (next is %d)", want, got)
	}
	if len(v) < 4 {
		return nil, fmt.Sprintf("record %d: torn (%d bytes, shorter than its checksum)", want, len(v))
	}
	if sum := crc32.Checksum(v[4:], castagnoli) ^ crc32.Checksum(k, castagnoli); sum != binary.BigEndian.Uint32(v) {
		return nil, fmt.Sprintf("record %d: checksum mismatch (torn or corrupt)", want)
	}
	return v[4:], ""
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encode(r Record) (k, v []byte) {
	k = binary.BigEndian.AppendUint64(nil, uint64(r.Seq))
	v = make([]byte, 4+len(r.Data))
	copy(v[4:], r.Data)
	binary.BigEndian.PutUint32(v, crc32.Checksum(r.Data, castagnoli)^crc32.Checksum(k, castagnoli))
	return k, v
}

// Recovered says what Open kept and dropped.
func (j *Journal) Recovered() Recovery { return j.recovered }

// Path is the journal file.
func (j *Journal) Path() string { return j.path }

// Replay calls f with the snapshot's records (Seq 0), then with every
// record after it, in order. Call it before the first Append; data is
// valid only during the call.
func (j *Journal) Replay(f func(Record) error) error {
	return j.db.View(func(tx *bolt.Tx) error {
		upto := Seq(0)
		if v := tx.Bucket(bucketMeta).Get(keySnapshot); v != nil {
			snap, err := decodeSnapshot(v)
			if err != nil {
				return fmt.Errorf("journal: %s: snapshot: %w", j.path, err)
			}
			for _, r := range snap.Records {
				if err := f(Record{Data: r}); err != nil {
					return err
				}
			}
			upto = snap.Upto
		}
		c := tx.Bucket(bucketRecords).Cursor()
		want := upto + 1
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(want))); k != nil; k, v = c.Next() {
			data, why := decode(k, v, want)
			if why != "" {
				return fmt.Errorf("journal: %s: %s", j.path, why)
			}
			if err := f(Record{Seq: want, Data: data}); err != nil {
				return err
			}
			want++
		}
		return nil
	})
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
// is still queued once more and returns. It exits when ctx ends.
func (j *Journal) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			j.commitPending()
			return nil
		case <-j.wake:
		}
		for !j.commitPending() {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(j.opts.RetryPause):
			}
		}
	}
}

// commitPending writes the queued records in batches; false after a
// failed batch, which stays queued.
func (j *Journal) commitPending() bool {
	for {
		j.mu.Lock()
		n := min(len(j.pending), j.opts.MaxBatch)
		batch := j.pending[:n:n]
		j.mu.Unlock()
		if n == 0 {
			return true
		}
		if err := j.store.Commit(batch); err != nil {
			err = fmt.Errorf("journal: %s: commit records %d..%d: %w (retrying; nothing after record %d is acted on)",
				j.path, batch[0].Seq, batch[n-1].Seq, err, j.Durable())
			j.err.Store(&err)
			return false
		}
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

// Close closes the file and lets go of the state directory. Call it after
// Run has returned; records still queued are not written.
func (j *Journal) Close() error {
	return j.db.Close()
}

type boltStore struct{ db *bolt.DB }

// WriteSnapshot puts s in the meta bucket in one transaction.
func (s boltStore) WriteSnapshot(snap Snapshot) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySnapshot, encodeSnapshot(snap))
	})
}

// Drop deletes the records up to upto in one transaction.
func (s boltStore) Drop(upto Seq) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, _ := c.First(); k != nil && Seq(binary.BigEndian.Uint64(k)) <= upto; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Commit writes recs in one transaction; bbolt fsyncs before it returns.
func (s boltStore) Commit(recs []Record) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		b.FillPercent = 1 // keys only grow: pack pages full
		for _, r := range recs {
			k, v := encode(r)
			if err := b.Put(k, v); err != nil {
				return err
			}
		}
		return nil
	})
}
