package worker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Where the file system fills each directory read (fillsReads), a read
// that leaves room for the longest entry is taken as the last: sandboxes
// left with entries of every name length, in numbers that end reads at
// every fill of the buffer, are emptied all the same.
func TestEmptyOutShortReadIsTheEnd(t *testing.T) {
	parent := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(parent, &st); err != nil {
		t.Fatal(err)
	}
	fills := fillsReads(int64(st.Type))
	if !fills {
		t.Logf("the test's directory is on a file system of type %#x, not taken to fill its reads", st.Type)
	}
	mode := syscall.S_IFDIR | 0o755&^umask()
	for _, length := range []int{1, 9, 100, 200, 255} {
		for _, count := range []int{1, 2, 3, 5, 8, 13, 40} {
			dir := filepath.Join(parent, fmt.Sprintf("s-%d-%d", length, count))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range count {
				name := fmt.Sprintf("%03d", i)
				name += strings.Repeat("x", max(0, length-len(name)))
				if err := os.WriteFile(filepath.Join(dir, name[:max(length, 3)]), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, ok := emptyOut(unix.AT_FDCWD, dir, mode, fills); !ok {
				t.Errorf("emptyOut of %d entries with names of %d bytes = false; want true", count, length)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%d entries with names of %d bytes: %d left", count, length, len(ents))
			}
		}
	}
}

// A sandbox that nothing changed since it was emptied is kept without
// being read again (the inotify watch); every kind of change makes put
// empty it in full, or remove it where it is no longer as it was made.
func TestBoxesWatchSeesEveryChange(t *testing.T) {
	b := &boxes{dir: filepath.Join(t.TempDir(), "sandboxes"), reuse: true}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	first, _ := b.get()
	b.put(first)
	if b.watch == nil {
		t.Skip("no inotify watch here (file system, or inotify)")
	}
	cleaned := func() int {
		b.watch.mu.Lock()
		defer b.watch.mu.Unlock()
		return b.watch.clean
	}
	write := func(t *testing.T, name string) {
		t.Helper()
		if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name      string
		change    func(t *testing.T, dir string)
		wantReuse bool
	}{
		{"nothing", func(*testing.T, string) {}, true},
		{"a file written", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "out")) }, true},
		{"a file moved in", func(t *testing.T, dir string) {
			write(t, filepath.Join(outside, "in"))
			if err := os.Rename(filepath.Join(outside, "in"), filepath.Join(dir, "in")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a hard link made", func(t *testing.T, dir string) {
			write(t, filepath.Join(outside, "linked"))
			if err := os.Link(filepath.Join(outside, "linked"), filepath.Join(dir, "linked")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a directory with a file", func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "d", "e"), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "d", "e", "f"))
		}, true},
		{"a file made and removed", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "gone"))
			if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"mode changed", func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"replaced by a directory", func(t *testing.T, dir string) {
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(dir, "stale"))
		}, true}, // a new directory, checked in full
		{"replaced by a link", func(t *testing.T, dir string) {
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, dir); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := b.get()
			if err != nil {
				t.Fatal(err)
			}
			tt.change(t, dir)
			before := cleaned()
			b.put(dir)
			full := cleaned() != before
			if tt.name == "nothing" && full {
				t.Error("an unchanged sandbox was emptied in full; want it kept as it is")
			}
			next, _ := b.get()
			if got := next == dir; got != tt.wantReuse {
				t.Fatalf("next sandbox %s after %s: reused = %v, want %v", next, dir, got, tt.wantReuse)
			}
			if tt.wantReuse {
				if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
					t.Errorf("the reused sandbox holds %d entries (%v); want none", len(ents), err)
				}
			} else if fi, err := os.Lstat(dir); err == nil && fi.IsDir() {
				// Removed, and the next one is a new directory.
				t.Errorf("a sandbox that is no longer as it was made is still there")
			}
			b.put(next)
		})
	}
	if _, err := os.Stat(filepath.Join(outside, "linked")); err != nil {
		t.Errorf("a file outside that a sandbox held a link to: %v; want it kept", err)
	}
}
