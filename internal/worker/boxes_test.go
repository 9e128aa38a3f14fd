package worker

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// umask is this process's umask.
func umask() uint32 {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return uint32(m)
}

// TestBoxesReused: a sandbox left empty, as it was made, goes to the next
// attempt; one left with files, with another mode, or replaced by a link
// is removed, and so is every sandbox where reuse is off.
func TestBoxesReused(t *testing.T) {
	tests := []struct {
		name      string
		reuse     bool
		after     func(t *testing.T, dir string) // what the attempt left
		wantReuse bool
	}{
		{name: "empty", reuse: true, after: func(*testing.T, string) {}, wantReuse: true},
		{name: "a file left", reuse: true, after: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "out"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "an empty directory left", reuse: true, after: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "mode changed", reuse: true, after: func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by a link", reuse: true, after: func(t *testing.T, dir string) {
			other := t.TempDir()
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
			if !emptyDir(second, syscall.S_IFDIR|0o755&^umask()) {
				t.Errorf("the second sandbox %s is not an empty directory with mode 0755 less the umask", second)
			}
		})
	}
}
