package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compaction: a snapshot stands for records 1..Upto. It holds the records
// the caller's Fold made of them (fewer, replaying to the same state), in
// one value of the meta bucket, written in one transaction; the records it
// stands for are dropped after, in transactions of their own. A crash
// between the two leaves records the snapshot already stands for: Open
// drops them, and Replay skips them. Seqs keep counting across snapshots,
// so keys stay deterministic.

// snapshotFormat is the first byte of an encoded snapshot: a newer format
// is refused like a newer journal.
const snapshotFormat = 1

// dropChunk bounds the records one Drop deletes, so that a commit queued
// behind it waits for a short transaction (a variable for tests). Small
// transactions are also faster in all: BenchmarkCompact dropped 100,000
// records in about a third of the time with 1,000 per transaction as with
// 20,000, and the longest wait for a commit meanwhile fell 4-6 times.
var dropChunk Seq = 1000

// encodeSnapshot: format (1 byte), Upto (8), At in Unix ns (8), the record
// count (uvarint), each record as a uvarint length and its bytes, then a
// CRC-32C of all before it (4).
func encodeSnapshot(s Snapshot) []byte {
	n := 1 + 8 + 8 + binary.MaxVarintLen64 + 4
	for _, r := range s.Records {
		n += binary.MaxVarintLen64 + len(r)
	}
	b := make([]byte, 0, n)
	b = append(b, snapshotFormat)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Upto))
	b = binary.BigEndian.AppendUint64(b, uint64(s.At.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(s.Records)))
	for _, r := range s.Records {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeSnapshot(b []byte) (Snapshot, error) {
	if len(b) < 1+8+8+1+4 {
		return Snapshot{}, fmt.Errorf("%d bytes, too short", len(b))
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return Snapshot{}, errors.New("checksum mismatch")
	}
	if body[0] != snapshotFormat {
		return Snapshot{}, fmt.Errorf("format %d, this trellis reads format %d: run the newer trellis that wrote it", body[0], snapshotFormat)
	}
	s := Snapshot{Upto: Seq(binary.BigEndian.Uint64(body[1:])), At: time.Unix(0, int64(binary.BigEndian.Uint64(body[9:])))}
	rest := body[17:]
	count, n := binary.Uvarint(rest)
	if n <= 0 || count > uint64(len(rest)) {
		return Snapshot{}, errors.New("bad record count")
	}
	rest = rest[n:]
	s.Records = make([][]byte, 0, count)
	for range count {
		size, n := binary.Uvarint(rest)
		if n <= 0 || size > uint64(len(rest)-n) {
			return Snapshot{}, fmt.Errorf("record %d of %d is cut short", len(s.Records)+1, count)
		}
		s.Records = append(s.Records, rest[n:n+int(size)])
		rest = rest[n+int(size):]
	}
	if len(rest) != 0 {
		return Snapshot{}, fmt.Errorf("%d bytes after the last record", len(rest))
	}
	return s, nil
}

func (s Snapshot) info(size int) SnapshotInfo {
	return SnapshotInfo{Upto: s.Upto, At: s.At, Records: len(s.Records), Bytes: int64(size)}
}

// Snapshot describes the last snapshot; zero when there is none.
func (j *Journal) Snapshot() SnapshotInfo { return *j.snap.Load() }

// Since is how many durable records follow the snapshot, and their bytes:
// what a replay reads besides the snapshot.
func (j *Journal) Since() (records int, bytes int64) {
	return int(j.Durable() - j.Snapshot().Upto), j.bytes.Load()
}

// Due says whether compaction is due (see Options.SnapshotRecords).
func (j *Journal) Due() bool {
	last := j.Snapshot()
	n, b := j.Since()
	return n > 0 && (n >= max(j.opts.SnapshotRecords, last.Records/4) || b >= max(j.opts.SnapshotBytes, last.Bytes/4))
}

// Compact folds the snapshot and the records durable now into a new
// snapshot, writes it, and then drops those records. It runs beside Append
// and Run (from one goroutine at a time): it reads in a read-only
// transaction, folds with no lock held, and its writes queue with commits
// for the file's one writer. On an error the journal is as before, or
// holds the new snapshot and records it stands for (dropped at the next
// Compact or Open): either replays the same.
func (j *Journal) Compact(fold Fold) (SnapshotInfo, error) {
	j.compacting.Lock()
	defer j.compacting.Unlock()
	info, err := j.compact(fold)
	if err != nil {
		j.compactErr.Store(&err)
	} else {
		j.compactErr.Store(nil)
	}
	return info, err
}

// CompactErr is the last compaction's error, nil once one succeeds again.
func (j *Journal) CompactErr() error {
	if p := j.compactErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (j *Journal) compact(fold Fold) (SnapshotInfo, error) {
	upto, old := j.Durable(), j.Snapshot()
	var recs [][]byte
	err := j.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySnapshot); v != nil {
			snap, err := decodeSnapshot(v)
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			for _, r := range snap.Records {
				recs = append(recs, append([]byte(nil), r...))
			}
		}
		from := old.Upto + 1
		c := tx.Bucket(bucketRecords).Cursor()
		want := from
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(from))); k != nil && want <= upto; k, v = c.Next() {
			data, why := decode(k, v, want)
			if why != "" {
				return errors.New(why)
			}
			recs = append(recs, append([]byte(nil), data...))
			want++
		}
		if want != upto+1 {
			return fmt.Errorf("records %d..%d are durable but missing", want, upto)
		}
		return nil
	})
	if err != nil {
		return j.Snapshot(), fmt.Errorf("journal: %s: compact: read: %w", j.path, err)
	}
	folded, err := fold(recs)
	if err != nil {
		return j.Snapshot(), fmt.Errorf("journal: %s: compact: fold records up to %d: %w", j.path, upto, err)
	}
	snap := Snapshot{Upto: upto, At: time.Now().Round(0), Records: folded}
	size := len(encodeSnapshot(snap))
	if err := j.store.WriteSnapshot(snap); err != nil {
		return j.Snapshot(), fmt.Errorf("journal: %s: compact: write the snapshot of records 1..%d: %w (the journal is unchanged)", j.path, upto, err)
	}
	// Durable records after upto were counted in bytes; those up to it
	// are in the snapshot now.
	var before int64
	for _, r := range recs[len(recs)-int(upto-old.Upto):] {
		before += int64(len(r))
	}
	info := snap.info(size)
	j.snap.Store(&info)
	j.bytes.Add(-before)
	return info, j.drop(upto)
}

// drop deletes the records up to upto, dropChunk at a time.
func (j *Journal) drop(upto Seq) error {
	var first Seq
	err := j.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketRecords).Cursor().First(); len(k) == 8 {
			first = Seq(binary.BigEndian.Uint64(k))
		}
		return nil
	})
	if err != nil || first == 0 {
		return err
	}
	for at := first; at <= upto; at += dropChunk {
		if err := j.store.Drop(min(upto, at+dropChunk-1)); err != nil {
			return fmt.Errorf("journal: %s: compact: drop records up to %d, which the snapshot stands for: %w (they are dropped at the next compaction or start)", j.path, upto, err)
		}
	}
	return nil
}
