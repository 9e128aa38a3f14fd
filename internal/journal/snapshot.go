package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Compaction: a snapshot stands for records 1..Upto. It holds the records
// the caller's Fold made of them (fewer, replaying to the same state), in
// a file of its own (written to a temporary name, synced, renamed); the
// segments it stands for wholly are deleted after. A crash between the two
// leaves records the snapshot already stands for: Open deletes their
// segments, and Replay skips them. Seqs keep counting across snapshots.

// snapshotFormat is the first byte of an encoded snapshot: a newer format
// is refused like a newer journal.
const snapshotFormat = 1

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
// and Run (from one goroutine at a time): it reads the snapshot and the
// segments' durable records, folds with no lock held, writes the snapshot
// file, and deletes segments under the store's lock (a commit waits only
// for that). On an error the journal is as before, or holds the new
// snapshot and records it stands for (deleted at the next Compact or
// Open): either replays the same.
func (j *Journal) Compact(fold Fold) (SnapshotInfo, error) {
	j.compacting.Lock()
	defer j.compacting.Unlock()
	info, err := j.compact(fold)
	j.measure()
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
	snap, _, err := readSnapshot(j.dir)
	if err == nil {
		for _, r := range snap.Records {
			recs = append(recs, r) // the file's bytes are not shared: keep them
		}
		err = j.seg.scan(old.Upto+1, upto, func(r Record) error {
			recs = append(recs, r.Data)
			return nil
		})
	}
	if err != nil {
		return j.Snapshot(), fmt.Errorf("journal: %s: compact: read: %w", j.dir, err)
	}
	folded, err := fold(recs)
	if err != nil {
		return j.Snapshot(), fmt.Errorf("journal: %s: compact: fold records up to %d: %w", j.dir, upto, err)
	}
	snap = Snapshot{Upto: upto, At: time.Now().Round(0), Records: folded}
	size := len(encodeSnapshot(snap))
	if err := j.store.WriteSnapshot(snap); err != nil {
		return j.Snapshot(), fmt.Errorf("journal: %s: compact: write the snapshot of records 1..%d: %w (the journal is unchanged)", j.dir, upto, err)
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
	// One Drop deletes the whole segments the snapshot stands for, with
	// one directory sync.
	if err := j.store.Drop(upto); err != nil {
		return info, fmt.Errorf("journal: %s: compact: drop records up to %d, which the snapshot stands for: %w (they are dropped at the next compaction or start)", j.dir, upto, err)
	}
	return info, nil
}
