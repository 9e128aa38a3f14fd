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
			if !emptyOut(unix.AT_FDCWD, dir, mode, fills) {
				t.Errorf("emptyOut of %d entries with names of %d bytes = false; want true", count, length)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%d entries with names of %d bytes: %d left", count, length, len(ents))
			}
		}
	}
}
