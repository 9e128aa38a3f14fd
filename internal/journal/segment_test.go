package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FuzzDecodeSegment hands arbitrary bytes to the segment decoder: it
// never panics, its intact part is within the input, and every record it
// yields is framed with a checksum that matches (re-encoding it gives the
// same bytes, at the place it was read from).
func FuzzDecodeSegment(f *testing.F) {
	good := segmentHeader(7)
	good = appendFrame(good, 7, []byte("seven"))
	good = appendFrame(good, 8, nil)
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add(segmentHeader(7))
	f.Add([]byte("trellisJ"))
	f.Fuzz(func(t *testing.T, b []byte) {
		off := segHeaderSize
		intact, why, err := decodeSegment("fuzz", b, 7, func(r Record) error {
			frame := appendFrame(nil, r.Seq, r.Data)
			if off+len(frame) > len(b) || !bytes.Equal(b[off:off+len(frame)], frame) {
				t.Fatalf("record %d (%q) is not the frame at offset %d", r.Seq, r.Data, off)
			}
			off += len(frame)
			return nil
		})
		if err != nil {
			return // a VersionError: the header names a newer format
		}
		if intact > len(b) || why == "" && intact != len(b) {
			t.Fatalf("intact %d of %d bytes, why %q", intact, len(b), why)
		}
	})
}

// TestDiskFaults makes the store's own writes fail as a full disk does
// (half the batch written, then ENOSPC) and as a failing disk does (the
// write lands, fdatasync fails): nothing is reported durable while they
// fail, Err says why, and once they succeed again every record is there
// once, in order, with nothing of the failed writes left between.
func TestDiskFaults(t *testing.T) {
	for _, fault := range []string{"full disk", "fdatasync fails"} {
		t.Run(fault, func(t *testing.T) {
			failing := false
			defer func(w func(*os.File, []byte, int64) (int, error), s func(*os.File) error) { writeAt, syncData = w, s }(writeAt, syncData)
			if fault == "full disk" {
				writeAt = func(f *os.File, b []byte, off int64) (int, error) {
					if failing {
						n, _ := f.WriteAt(b[:len(b)/2], off)
						return n, syscall.ENOSPC
					}
					return f.WriteAt(b, off)
				}
			} else {
				syncData = func(f *os.File) error {
					if failing {
						return syscall.EIO
					}
					return fdatasync(f)
				}
			}
			dir := t.TempDir()
			j, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			j.Append([]byte("first"))
			commitNow(j)
			failing = true
			j.Append([]byte("second"))
			j.Append([]byte("third"))
			if commitNow(j) {
				t.Fatalf("a commit reported success while its write failed")
			}
			if d := j.Durable(); d != 1 {
				t.Errorf("Durable() = %d while writes fail, want 1", d)
			}
			if err := j.Err(); err == nil || !strings.Contains(err.Error(), "commit records 2..3") {
				t.Errorf("Err() = %v, want the failed commit of records 2..3", err)
			}
			failing = false
			j.Append([]byte("fourth"))
			if !commitNow(j) || j.Durable() != 4 || j.Err() != nil {
				t.Fatalf("after the fault: Durable() = %d, Err() = %v; want 4, nil", j.Durable(), j.Err())
			}
			j.Close()
			j, err = Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			j.Replay(func(r Record) error { got = append(got, string(r.Data)); return nil })
			if want := []string{"first", "second", "third", "fourth"}; !slices.Equal(got, want) || j.Recovered().Reason != "" {
				t.Errorf("replay after the fault: %q (%v), want %q intact", got, j.Recovered(), want)
			}
		})
	}
}

// commitNow writes what j has queued, once: false if a commit failed.
func commitNow(j *Journal) bool { _, ok := j.commitPending(); return ok }

// TestLargeGroup commits a group whose frames outgrow the buffer the store
// keeps between commits (over 4 MiB), then a small record: both replay
// intact after a reopen, the small one after the large.
func TestLargeGroup(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	large := bytes.Repeat([]byte{'x'}, 5<<20)
	j.Append(large)
	if !commitNow(j) {
		t.Fatalf("commit of a 5 MiB record: %v", j.Err())
	}
	j.Append([]byte("after"))
	if !commitNow(j) {
		t.Fatalf("commit after it: %v", j.Err())
	}
	j.Close()
	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var got [][]byte
	j.Replay(func(r Record) error { got = append(got, append([]byte(nil), r.Data...)); return nil })
	if len(got) != 2 || !bytes.Equal(got[0], large) || string(got[1]) != "after" || j.Recovered().Reason != "" {
		t.Fatalf("replay: %d records (%v); want the 5 MiB record, then %q", len(got), j.Recovered(), "after")
	}
}

// TestDiskBytesWithoutLock: DiskBytes answers while the store's lock is
// held (as a commit holds it across its fdatasync): the manager's loop
// calls it and must not wait for the disk.
func TestDiskBytesWithoutLock(t *testing.T) {
	j, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.seg.mu.Lock()
	defer j.seg.mu.Unlock()
	done := make(chan int64, 1)
	go func() { done <- j.DiskBytes() }() // exits when DiskBytes returns
	select {
	case n := <-done:
		if n <= 0 {
			t.Errorf("DiskBytes() = %d, want the size of journal.db at least", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DiskBytes() waited 10s for the store's lock (a commit's fdatasync would stall the loop)")
	}
}

// TestWriteFileFailureCleans: a WriteFile that fails (here its rename, as
// path is a directory) leaves no path+".tmp" behind.
func TestWriteFileFailureCleans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "snapshot")
	if err := os.MkdirAll(filepath.Join(path, "in"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("data")); err == nil {
		t.Fatalf("WriteFile over a directory: no error")
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a failed WriteFile, %s.tmp: %v, want it gone", path, err)
	}
}

// TestPace checks the pacing of commits: a group while which more
// records were queued stretches the next commit's wait with its size, up
// to maxStretch intervals; a lone record, or a group after which nothing
// was queued (a client waiting for each answer), halves it down to one.
func TestPace(t *testing.T) {
	for _, tc := range []struct {
		stretch, n int
		queued     bool
		want       int
	}{
		{1, 1, false, 1},
		{1, 1, true, 1}, // a lone record: records that follow it are no group yet
		{1, 3, false, 1},
		{1, 2, true, 2},
		{1, 3, true, 3},
		{2, 1000, true, maxStretch},
		{maxStretch, 2, true, 2},
		{maxStretch, 50, false, maxStretch / 2},
		{2, 50, false, 1},
		{1, 0, false, 1},
	} {
		if got := pace(tc.stretch, tc.n, tc.queued); got != tc.want {
			t.Errorf("pace(%d, %d, %v) = %d, want %d", tc.stretch, tc.n, tc.queued, got, tc.want)
		}
	}
}
