package journal

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The records live in append-only segment files in the journal directory
// (DirName in the state directory), each named by the Seq of its first
// record (20 decimal digits, then ".seg"). A segment starts with a header:
//
//	magic "trellisJ" (8) | format (4) | first Seq (8) | CRC-32C of those 20 bytes (4)
//
// then holds records, each framed as
//
//	data length (4) | CRC-32C of Seq (8), data length (4) and data (4) | data
//
// all big-endian. A record's Seq is its segment's first Seq plus its
// position: it is not stored, but the checksum covers it, so a record
// found at the wrong place fails it. A commit is one write of its whole
// group at the end of the active segment and one fdatasync. A segment is
// rolled (the next commit starts a new one) once it reaches
// Options.SegmentBytes, and after each snapshot, so that Drop can delete
// whole segments.

const (
	segMagic      = "trellisJ"
	segHeaderSize = 24
	frameHeader   = 8
	segExt        = ".seg"
	// maxRecord bounds one record's length as read back: a flipped bit in
	// a length must not make the reader allocate or skip gigabytes.
	maxRecord = 1 << 30
	// snapshotName is the snapshot's file in the journal directory,
	// written to snapshotName+".tmp", synced, then renamed.
	snapshotName = "snapshot"
)

// writeAt and syncData are the store's writes of records, variables for
// tests that make them fail as a full disk or a failing disk would.
var (
	writeAt  = (*os.File).WriteAt
	syncData = fdatasync
)

func segmentName(first Seq) string { return fmt.Sprintf("%020d%s", uint64(first), segExt) }

func segmentHeader(first Seq) []byte {
	b := make([]byte, 0, segHeaderSize)
	b = append(b, segMagic...)
	b = binary.BigEndian.AppendUint32(b, Version)
	b = binary.BigEndian.AppendUint64(b, uint64(first))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// appendFrame appends rec's frame to b.
func appendFrame(b []byte, seq Seq, data []byte) []byte {
	var k [12]byte
	binary.BigEndian.PutUint64(k[:], uint64(seq))
	binary.BigEndian.PutUint32(k[8:], uint32(len(data)))
	sum := crc32.Update(crc32.Checksum(k[:], castagnoli), castagnoli, data)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	b = binary.BigEndian.AppendUint32(b, sum)
	return append(b, data...)
}

// readFrame decodes the frame at the start of b, which must hold record
// seq: its data and the frame's size, or why it is not intact.
func readFrame(b []byte, seq Seq) (data []byte, size int, why string) {
	if len(b) < frameHeader {
		return nil, 0, fmt.Sprintf("record %d: torn (%d bytes, shorter than its frame header)", seq, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if n > maxRecord {
		return nil, 0, fmt.Sprintf("record %d: length %d is over %d (corrupt)", seq, n, maxRecord)
	}
	if uint64(len(b)-frameHeader) < uint64(n) {
		return nil, 0, fmt.Sprintf("record %d: torn (%d of its %d bytes)", seq, len(b)-frameHeader, n)
	}
	data = b[frameHeader : frameHeader+int(n)]
	var k [12]byte
	binary.BigEndian.PutUint64(k[:], uint64(seq))
	binary.BigEndian.PutUint32(k[8:], n)
	if crc32.Update(crc32.Checksum(k[:], castagnoli), castagnoli, data) != binary.BigEndian.Uint32(b[4:]) {
		return nil, 0, fmt.Sprintf("record %d: checksum mismatch (torn or corrupt)", seq)
	}
	return data, frameHeader + int(n), ""
}

// decodeSegment checks a segment's header and reads its records: f is
// called with each intact one in order. It returns the size of the intact
// part, and why the rest (if any) is not intact. A header naming a newer
// format is a VersionError.
func decodeSegment(path string, b []byte, first Seq, f func(Record) error) (intact int, why string, err error) {
	if len(b) < segHeaderSize {
		return 0, fmt.Sprintf("segment %s: header torn (%d bytes)", filepath.Base(path), len(b)), nil
	}
	h := b[:segHeaderSize]
	if string(h[:8]) != segMagic {
		return 0, fmt.Sprintf("segment %s: not a trellis journal segment (bad magic)", filepath.Base(path)), nil
	}
	if crc32.Checksum(h[:20], castagnoli) != binary.BigEndian.Uint32(h[20:]) {
		return 0, fmt.Sprintf("segment %s: header checksum mismatch", filepath.Base(path)), nil
	}
	if v := binary.BigEndian.Uint32(h[8:]); v > Version {
		return 0, "", &VersionError{Path: path, Found: uint64(v)}
	}
	if got := Seq(binary.BigEndian.Uint64(h[12:])); got != first {
		return 0, fmt.Sprintf("segment %s: header says it starts at record %d", filepath.Base(path), got), nil
	}
	off, seq := segHeaderSize, first
	for off < len(b) {
		data, size, why := readFrame(b[off:], seq)
		if why != "" {
			return off, why, nil
		}
		if err := f(Record{Seq: seq, Data: data}); err != nil {
			return off, "", err
		}
		off += size
		seq++
	}
	return off, "", nil
}

// segment is one segment file; last is its last record's Seq (first-1
// when it holds none).
type segment struct {
	first, last Seq
	path        string
}

// segments is the store of a journal directory: see the comment above.
// Commit runs on the committer, WriteSnapshot and Drop on the compacting
// goroutine, scan on either.
type segments struct {
	dir      string
	maxBytes int64

	mu   sync.Mutex // guards the fields below
	segs []segment  // in order; the last is the one commits append to
	f    *os.File   // the last segment, open; nil: the next commit starts one
	end  int64      // f's size after the last commit that succeeded here
	next Seq        // the Seq the next commit starts with
	// The last commit that succeeded here: a caller that was told it
	// failed (a wrapper's injected fault) writes it again from its start.
	lastFirst Seq
	lastOff   int64
	dirty     bool // a failed write may have left bytes past end
	roll      bool // the next commit starts a new segment (after a snapshot)
	buf       []byte
}

// scanned is what openSegments found.
type scanned struct {
	kept     int   // intact records after the snapshot
	leftover int   // records the snapshot stands for
	bytes    int64 // data of the kept records
	dropped  int   // records (or torn pieces) cut off from firstBad on
	firstBad Seq
	reason   string
}

// openSegments reads the segments in dir, keeps the intact records that
// follow the snapshot (of records 1..upto), deletes the segments the
// snapshot stands for wholly, and cuts off a damaged tail: the first
// record that is torn, corrupt or out of sequence, and everything after it.
func openSegments(dir string, upto Seq, maxBytes int64) (*segments, scanned, error) {
	s := &segments{dir: dir, maxBytes: maxBytes, next: upto + 1}
	var sc scanned
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, sc, fmt.Errorf("journal: read %s: %w", dir, err)
	}
	var found []segment
	for _, e := range entries {
		name := e.Name()
		if name == snapshotName+".tmp" {
			os.Remove(filepath.Join(dir, name)) // a snapshot cut short: the last one stands
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segExt), 10, 64)
		if !strings.HasSuffix(name, segExt) || err != nil || first == 0 {
			continue
		}
		found = append(found, segment{first: Seq(first), path: filepath.Join(dir, name)})
	}
	slices.SortFunc(found, func(a, b segment) int { return cmp.Compare(a.first, b.first) })
	changed := false
	remove := func(path string) error {
		changed = true
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("journal: remove %s: %w", path, err)
		}
		return nil
	}
	want := upto + 1 // the next record the journal needs
	for _, seg := range found {
		b, err := os.ReadFile(seg.path)
		if err != nil {
			return nil, sc, fmt.Errorf("journal: read %s: %w", seg.path, err)
		}
		if sc.reason == "" && (seg.first > want || seg.first < want && want > upto+1) {
			sc.firstBad = want
			sc.reason = fmt.Sprintf("record %d is missing (the next segment, %s, starts at record %d)", want, filepath.Base(seg.path), seg.first)
		}
		if sc.reason != "" { // after a damaged record everything goes
			sc.dropped += countFrames(b[min(len(b), segHeaderSize):])
			if err := remove(seg.path); err != nil {
				return nil, sc, err
			}
			continue
		}
		seg.last = seg.first - 1
		var kept int
		var bytes int64
		intact, why, err := decodeSegment(seg.path, b, seg.first, func(r Record) error {
			seg.last = r.Seq
			switch {
			case r.Seq >= want:
				kept++
				bytes += int64(len(r.Data))
			case r.Seq <= upto:
				sc.leftover++
			}
			return nil
		})
		if err != nil {
			return nil, sc, err
		}
		sc.kept, sc.bytes = sc.kept+kept, sc.bytes+bytes
		want = max(want, seg.last+1)
		if why != "" {
			sc.firstBad, sc.reason = want, why
			sc.dropped = countFrames(b[max(intact, min(len(b), segHeaderSize)):])
			if seg.last >= seg.first && seg.last > upto {
				changed = true
				if err := os.Truncate(seg.path, int64(intact)); err != nil {
					return nil, sc, fmt.Errorf("journal: cut off the damaged tail of %s: %w", seg.path, err)
				}
				s.segs = append(s.segs, seg)
			} else if err := remove(seg.path); err != nil {
				return nil, sc, err
			}
			continue
		}
		if seg.last <= upto { // empty, or the snapshot stands for it
			if err := remove(seg.path); err != nil {
				return nil, sc, err
			}
			continue
		}
		s.segs = append(s.segs, seg)
	}
	s.next = want
	if changed {
		if err := syncDir(dir); err != nil {
			return nil, sc, err
		}
	}
	return s, sc, nil
}

// countFrames counts the frames in b by their lengths, checksums aside,
// and a torn remainder as one: what a damaged tail cut off.
func countFrames(b []byte) int {
	n := 0
	for len(b) > 0 {
		n++
		if len(b) < frameHeader {
			break
		}
		size := uint64(binary.BigEndian.Uint32(b)) + frameHeader
		if size > uint64(len(b)) {
			break
		}
		b = b[size:]
	}
	return n
}

// scan calls f with every record from..upto, in order, reading the
// segments again (their checksums too). It is an error if one is missing.
func (s *segments) scan(from, upto Seq, f func(Record) error) error {
	if from > upto {
		return nil
	}
	s.mu.Lock()
	segs := slices.Clone(s.segs)
	s.mu.Unlock()
	want := from
	for i, seg := range segs {
		if i+1 < len(segs) && segs[i+1].first <= from {
			continue // wholly before from
		}
		if seg.first > want {
			break
		}
		b, err := os.ReadFile(seg.path)
		if err != nil {
			return fmt.Errorf("read %s: %w", seg.path, err)
		}
		errStop := errors.New("stop")
		_, why, err := decodeSegment(seg.path, b, seg.first, func(r Record) error {
			if r.Seq < want {
				return nil
			}
			if r.Seq > upto {
				return errStop
			}
			want++
			return f(r)
		})
		if err != nil && err != errStop {
			return err // the caller's, or a VersionError
		}
		if err == errStop || want > upto {
			return nil
		}
		if why != "" && want <= upto {
			return errors.New(why)
		}
	}
	if want <= upto {
		return fmt.Errorf("records %d..%d are durable but missing", want, upto)
	}
	return nil
}

// Commit writes recs at the end of the last segment in one write and
// syncs it (fdatasync) once.
func (s *segments) Commit(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := recs[0].Seq
	if first != s.next {
		if first != s.lastFirst || s.f == nil {
			return fmt.Errorf("commit of records %d..%d out of order: the store holds records up to %d", first, recs[len(recs)-1].Seq, s.next-1)
		}
		// Written here, but reported failed to the caller (a wrapper's
		// fault): write it again from its start.
		s.end, s.next, s.dirty = s.lastOff, first, true
		s.segs[len(s.segs)-1].last = first - 1
	}
	if s.dirty { // cut off what a failed write may have left
		if err := s.f.Truncate(s.end); err != nil {
			return err
		}
		s.dirty = false
	}
	if s.f == nil || s.roll || s.end >= s.maxBytes {
		if err := s.rollLocked(first); err != nil {
			return err
		}
	}
	s.buf = s.buf[:0]
	for _, r := range recs {
		s.buf = appendFrame(s.buf, r.Seq, r.Data)
	}
	if _, err := writeAt(s.f, s.buf, s.end); err != nil {
		s.dirty = true
		return err
	}
	if err := syncData(s.f); err != nil {
		s.dirty = true
		return err
	}
	s.lastFirst, s.lastOff = first, s.end
	s.end += int64(len(s.buf))
	if cap(s.buf) > 4<<20 {
		s.buf = nil // a burst's buffer is not kept (after its length counted)
	}
	s.next = recs[len(recs)-1].Seq + 1
	s.segs[len(s.segs)-1].last = s.next - 1
	return nil
}

// rollLocked starts a new segment for records from first on: its header
// is synced, and the directory, before any record goes in.
func (s *segments) rollLocked(first Seq) error {
	path := filepath.Join(s.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(path)
		return err
	}
	if _, err := f.Write(segmentHeader(first)); err != nil {
		return fail(err)
	}
	if err := fdatasync(f); err != nil {
		return fail(err)
	}
	if err := syncDir(s.dir); err != nil {
		return fail(err)
	}
	if s.f != nil {
		s.f.Close() // synced by the last commit that succeeded
	}
	if n := len(s.segs); n > 0 && s.segs[n-1].first == first {
		s.segs = s.segs[:n-1] // an empty segment of the same name, replaced
	}
	s.f, s.end, s.roll, s.dirty = f, segHeaderSize, false, false
	s.segs = append(s.segs, segment{first: first, last: first - 1, path: path})
	return nil
}

// WriteSnapshot writes the snapshot to a temporary file, syncs it,
// renames it over the last one and syncs the directory; the next commit
// starts a new segment.
func (s *segments) WriteSnapshot(snap Snapshot) error {
	path := filepath.Join(s.dir, snapshotName)
	if err := WriteFile(path, encodeSnapshot(snap)); err != nil {
		return err
	}
	s.mu.Lock()
	s.roll = true
	s.mu.Unlock()
	return nil
}

// Drop deletes the segments whose records are all up to upto, the last
// one too (the next commit then starts a new one).
func (s *segments) Drop(upto Seq) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.segs) && s.segs[n].last <= upto && s.segs[n].last >= s.segs[n].first {
		if n == len(s.segs)-1 && s.f != nil {
			s.f.Close()
			s.f, s.dirty, s.lastFirst = nil, false, 0
		}
		if err := os.Remove(s.segs[n].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.segs = s.segs[n:]
			return err
		}
		n++
	}
	if n == 0 {
		return nil
	}
	s.segs = s.segs[n:]
	return syncDir(s.dir)
}

// diskBytes is the size of the segments and the snapshot. It takes s.mu,
// which a commit holds across its fdatasync: not for the manager's loop
// (Journal.DiskBytes reads what the committer and compactor measured).
func (s *segments) diskBytes() int64 {
	s.mu.Lock()
	paths := []string{filepath.Join(s.dir, snapshotName)}
	for _, seg := range s.segs {
		paths = append(paths, seg.path)
	}
	s.mu.Unlock()
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func (s *segments) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// WriteFile writes b to path+".tmp", syncs it, renames it to path and
// syncs the directory. If it fails before the rename, it removes
// path+".tmp".
func WriteFile(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the directory's entries (created, renamed, removed
// files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
