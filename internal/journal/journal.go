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

// Store writes a batch of records durably: all in one transaction, synced,
// or an error. It is the seam where tests inject faults (Options.Wrap).
type Store interface {
	Commit(recs []Record) error
}

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
}

// Recovery says what Open kept of the journal and what it dropped.
type Recovery struct {
	Kept         int    // intact records, replayed in order
	Dropped      int    // records deleted from FirstDropped on
	FirstDropped Seq    // 0 when nothing was dropped
	Reason       string // why FirstDropped was not kept
}

func (r Recovery) String() string {
	if r.Dropped == 0 {
		return fmt.Sprintf("%d records intact", r.Kept)
	}
	return fmt.Sprintf("kept records 1..%d; dropped %d records from %d on: %s",
		r.Kept, r.Dropped, r.FirstDropped, r.Reason)
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: create state directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
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
	j.next = Seq(j.recovered.Kept) + 1
	j.durable.Store(uint64(j.recovered.Kept))
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
		recs, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return fmt.Errorf("journal: %s: create records: %w", j.path, err)
		}
		var bad [][]byte
		c := recs.Cursor()
		want := Seq(1)
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(bad) == 0 {
				if _, why := decode(k, v, want); why == "" {
					j.recovered.Kept++
					want++
					continue
				} else {
					j.recovered.FirstDropped = want
					j.recovered.Reason = why
				}
			}
			bad = append(bad, append([]byte(nil), k...))
		}
		j.recovered.Dropped = len(bad)
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

// Replay calls f with every record in order. Call it before the first
// Append; data is valid only during the call.
func (j *Journal) Replay(f func(Record) error) error {
	return j.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		want := Seq(1)
		for k, v := c.First(); k != nil; k, v = c.Next() {
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
