package worker

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// umask is this process's umask.
func umask() uint32 {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return uint32(m)
}

// TestBoxesReused: a sandbox is emptied and goes to the next attempt, if
// it is still as it was made; one with another mode, or replaced by a link,
// is removed, and so is every sandbox where reuse is off.
func TestBoxesReused(t *testing.T) {
	tests := []struct {
		name      string
		reuse     bool
		after     func(t *testing.T, dir string) // what the attempt left
		wantReuse bool
		rootOnly  bool
	}{
		{name: "empty", reuse: true, after: func(*testing.T, string) {}, wantReuse: true},
		{name: "files left", reuse: true, after: func(t *testing.T, dir string) {
			if err := os.MkdirAll(filepath.Join(dir, "d", "e"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"out", "d/e/f"} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}, wantReuse: true},
		{name: "many files left", reuse: true, after: func(t *testing.T, dir string) {
			for i := range 500 { // many reads of the directory, with removals between them
				name := filepath.Join(dir, fmt.Sprintf("a-file-with-a-long-name-to-fill-the-buffer-%04d", i))
				if err := os.WriteFile(name, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}, wantReuse: true},
		{name: "a link to outside left", reuse: true, after: func(t *testing.T, dir string) {
			outside := t.TempDir()
			if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
					t.Errorf("a file that a link in the sandbox pointed to: %v; want it kept", err)
				}
			})
		}, wantReuse: true},
		{name: "an unwritable directory left", reuse: true, after: func(t *testing.T, dir string) {
			sub := filepath.Join(dir, "ro")
			if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(sub, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(sub, 0o755) })
		}, wantReuse: true, rootOnly: true}, // others cannot remove x: the sandbox stays, as before
		{name: "mode changed", reuse: true, after: func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by a link", reuse: true, after: func(t *testing.T, dir string) {
			other := t.TempDir()
			if err := os.WriteFile(filepath.Join(other, "keep"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, err := os.Stat(filepath.Join(other, "keep")); err != nil {
					t.Errorf("a file in the directory that the sandbox's link pointed to: %v; want it kept", err)
				}
			})
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, dir); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "reuse off", reuse: false, after: func(*testing.T, string) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rootOnly && os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			b := &boxes{dir: t.TempDir(), reuse: tt.reuse}
			first, err := b.get()
			if err != nil {
				t.Fatal(err)
			}
			tt.after(t, first)
			b.put(first)
			second, err := b.get()
			if err != nil {
				t.Fatal(err)
			}
			if got := second == first; got != tt.wantReuse {
				t.Errorf("second sandbox %s after %s; reused = %v, want %v", second, first, got, tt.wantReuse)
			}
			if !tt.wantReuse {
				if _, err := os.Lstat(first); !os.IsNotExist(err) {
					t.Errorf("the first sandbox %s is still there (%v); want it removed", first, err)
				}
			}
			if !emptyOut(unix.AT_FDCWD, second, syscall.S_IFDIR|0o755&^umask()) {
				t.Errorf("the second sandbox %s is not an empty directory with mode 0755 less the umask", second)
			}
		})
	}
}

// put opens a sandbox by its name in the sandboxes' directory, kept open:
// where that directory was removed and made again meanwhile, the sandbox
// is not found there, and is removed by its path, not reused; after
// close, put opens by path and reuses again.
func TestBoxesParentMadeAgain(t *testing.T) {
	b := &boxes{dir: filepath.Join(t.TempDir(), "sandboxes"), reuse: true}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	first, _ := b.get()
	b.put(first) // opens the directory
	if b.parent <= 0 {
		t.Fatalf("parent = %d after a put; want the sandboxes' directory open", b.parent)
	}
	second, _ := b.get()
	if second != first {
		t.Fatalf("second sandbox %s; want %s reused", second, first)
	}
	if err := os.RemoveAll(b.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(second, 0o755); err != nil { // the same path, another directory
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(second, "left"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b.put(second)
	if _, err := os.Lstat(second); !os.IsNotExist(err) {
		t.Errorf("a sandbox in the directory made again: %v; want it removed, not reused", err)
	}
	b.close()
	third, _ := b.get()
	b.put(third)
	if fourth, _ := b.get(); fourth != third {
		t.Errorf("after close: sandbox %s; want %s reused (opened by path)", fourth, third)
	}
}

// Every sandbox is read again when its attempt ends, whatever happened to
// it: one moved away and made again at its path with the same mode, then
// written to by the next attempt, is emptied before it is handed out
// again (an inotify watch of the kept sandboxes stayed on the directory
// moved away and handed out the new one with an attempt's files in it).
func TestBoxesReusedEmptyAfterReplaced(t *testing.T) {
	b := &boxes{dir: filepath.Join(t.TempDir(), "sandboxes"), reuse: true}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer b.close()
	moved := filepath.Join(t.TempDir(), "moved")
	dir, _ := b.get()
	b.put(dir)
	steps := []struct {
		name    string
		attempt func(t *testing.T, dir string)
	}{
		{"moved away and made again, with a file", func(t *testing.T, dir string) {
			if err := os.Rename(dir, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "first"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"a file written", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "second"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"another file written", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "third"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, step := range steps {
		next, err := b.get()
		if err != nil {
			t.Fatal(err)
		}
		if next != dir {
			t.Fatalf("%s: sandbox %s handed out; want %s reused", step.name, next, dir)
		}
		step.attempt(t, next)
		b.put(next)
		again, _ := b.get()
		if ents, err := os.ReadDir(again); err != nil || len(ents) != 0 {
			t.Errorf("after %s: the sandbox handed out holds %d entries (%v); want none", step.name, len(ents), err)
		}
		b.put(again)
	}
}

// A directory read may end short of the buffer, or hold no names, before
// the directory's end (a signal pending stops the kernel filling it): a
// pass of emptyOut reads on until a read returns nothing. Reads here are cut
// to 64 bytes (two or three entries, the first only "." and ".."), and a
// sandbox with 40 files left is emptied and reused all the same.
func TestEmptyOutReadsPastShortReads(t *testing.T) {
	short := func(fd int, buf []byte) (int, error) {
		return syscall.ReadDirent(fd, buf[:min(len(buf), 64)])
	}
	defer func(f func(int, []byte) (int, error)) { readDirent = f }(readDirent)
	readDirent = short
	b := &boxes{dir: filepath.Join(t.TempDir(), "sandboxes"), reuse: true}
	if err := os.Mkdir(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer b.close()
	dir, _ := b.get()
	for i := range 40 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.put(dir)
	next, err := b.get()
	if err != nil {
		t.Fatal(err)
	}
	if next != dir {
		t.Errorf("sandbox %s handed out; want %s emptied and reused", next, dir)
	}
	if ents, err := os.ReadDir(next); err != nil || len(ents) != 0 {
		t.Errorf("the sandbox handed out holds %d entries (%v); want none", len(ents), err)
	}
}

// BenchmarkBoxesGetPut is the worker's own work for a sandbox per attempt
// that leaves it empty: handed out, emptied, kept.
func BenchmarkBoxesGetPut(b *testing.B) {
	bx := &boxes{dir: filepath.Join(b.TempDir(), "worker", "sandboxes"), reuse: true}
	if err := os.MkdirAll(bx.dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		dir, err := bx.get()
		if err != nil {
			b.Fatal(err)
		}
		bx.put(dir)
	}
}
