package worker

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxFreeBoxes bounds the empty sandboxes kept for reuse.
const maxFreeBoxes = 4096

// boxes hands out the sandbox directories of attempts. Making a directory
// and removing it were a fifth of what a worker spent on a short task of
// its own (the file system allocates and frees an inode each time;
// docs/benchmarks.md, capacity), so a sandbox is emptied when its attempt
// ends and given to the next attempt, where nothing of the attempt can
// outlive it: where every process of a task runs in a cgroup that is
// emptied before the attempt ends (reuse). Its methods are safe for
// concurrent use.
type boxes struct {
	dir   string
	reuse bool
	seq   atomic.Uint64 // numbers new sandboxes
	mode  atomic.Uint32 // the mode of a new sandbox (0755 less the umask); 0 until one is made

	mu   sync.Mutex // guards free
	free []string   // empty sandboxes, ready for an attempt

	// parent is dir, open, so that put opens a sandbox by its name in it
	// (openat) rather than by its whole path, which the kernel walks
	// component by component each time; 0 until put first needs it, -1
	// where it could not be opened or after close (put then opens by
	// path). A put holds parentMu read-locked while it uses it, so that
	// close never closes it under a put.
	parentMu  sync.RWMutex
	parentOne sync.Once
	parent    int
}

// get returns an empty sandbox directory: a kept one, or a new one.
func (b *boxes) get() (string, error) {
	b.mu.Lock()
	if n := len(b.free); n > 0 {
		dir := b.free[n-1]
		b.free = b.free[:n-1]
		b.mu.Unlock()
		return dir, nil
	}
	b.mu.Unlock()
	dir := filepath.Join(b.dir, "s"+strconv.FormatUint(b.seq.Add(1), 10))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("create sandbox: %w", err)
	}
	if b.mode.Load() == 0 {
		var st syscall.Stat_t
		if err := syscall.Lstat(dir, &st); err == nil {
			b.mode.Store(uint32(st.Mode))
		}
	}
	return dir, nil
}

// put takes back a sandbox whose attempt has ended: it is emptied and
// kept for the next attempt if it is still as it was made, else removed.
func (b *boxes) put(dir string) {
	if b.reuse && b.emptyOut(dir) {
		b.mu.Lock()
		if len(b.free) < maxFreeBoxes {
			b.free = append(b.free, dir)
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
	}
	os.RemoveAll(dir)
}

// emptyOut is emptyOut of dir, opened in b.dir (opened the first time).
// A sandbox that is not in the directory open (b.dir removed and made
// again, say) is then not found there, so not reused: put removes it by
// its path. This assumes, as the rest of the worker does (get, the
// libraries' directories, cleanup), that b.dir is not moved away while
// the worker runs: the sandbox checked would then be the one moved with
// it, and its path would name another.
func (b *boxes) emptyOut(dir string) bool {
	b.parentOne.Do(func() {
		b.parentMu.Lock()
		defer b.parentMu.Unlock()
		if b.parent != 0 {
			return // closed before
		}
		b.parent = -1
		if fd, err := openParent(b.dir); err == nil {
			b.parent = fd
		}
	})
	b.parentMu.RLock()
	defer b.parentMu.RUnlock()
	parent := b.parent
	if parent <= 0 {
		parent = unix.AT_FDCWD
	}
	return emptyOut(parent, dir, b.mode.Load())
}

// close closes the sandboxes' directory; a later put opens its sandbox by
// its path.
func (b *boxes) close() {
	b.parentMu.Lock()
	defer b.parentMu.Unlock()
	if b.parent > 0 {
		unix.Close(b.parent)
	}
	b.parent = -1
}

// readDirent is syscall.ReadDirent; tests make its reads short.
var readDirent = syscall.ReadDirent

// emptyOut removes what dir holds (what an attempt left: its inputs, its
// outputs not taken), but not dir, and reports whether dir is then an
// empty directory owned by this process's user with mode (type bits
// included), as get made it. It removes nothing when dir is not such a
// directory (a task may have changed its sandbox's mode, or replaced it by
// a link, whose target is never touched); links inside are removed, never
// followed.
//
// dir is opened in parent (a directory's descriptor, or AT_FDCWD) by its
// base name: opening it by its whole path cost more than the rest of an
// empty sandbox's check (docs/benchmarks.md, capacity, ninth part). What
// it holds is removed by name in the directory open (unlinkat), and only
// a directory inside, which unlinkat does not remove, by its path
// (os.RemoveAll).
//
// Not done: skipping the check for a sandbox that nothing changed since it
// was last emptied. Its ctime cannot say so (a change within the same
// clock tick leaves it equal, and a margin holds only while nobody steps
// the wall clock back), and an inotify watch of the kept sandboxes, tried,
// handed out sandboxes holding an earlier attempt's files: a sandbox moved
// away and made again at its path took the watch with it, and every way a
// directory can change had to be seen. The check costs some 3.6 µs a
// sandbox (BenchmarkBoxesGetPut, docs/benchmarks.md, capacity, ninth part).
//
// A pass reads the directory until a read returns nothing: a short read is
// not its end (the kernel stops filling a read early where a signal is
// pending, and the worker's threads get SIGURG, SIGCHLD and SIGPROF).
func emptyOut(parent int, dir string, mode uint32) bool {
	name := dir
	if parent != unix.AT_FDCWD {
		name = filepath.Base(dir)
	}
	fd, err := unix.Openat(parent, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || uint32(st.Mode) != mode || int(st.Uid) != os.Geteuid() {
		return false
	}
	// Read with a buffer on the stack (os.File's readdir makes one of 8
	// KiB per call): most sandboxes hold nothing or a few files. Entries
	// removed while the directory is read may hide others from that pass,
	// so a pass that removed something is followed by another.
	var buf [1024]byte
	for range 4 {
		removed := false
		for {
			n, err := readDirent(fd, buf[:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return false
			}
			if n == 0 {
				break
			}
			_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
			for _, name := range names {
				if err := unix.Unlinkat(fd, name, 0); err != nil && err != syscall.ENOENT && os.RemoveAll(filepath.Join(dir, name)) != nil {
					return false // (a directory: EISDIR, and RemoveAll)
				}
				removed = true
			}
		}
		if !removed {
			return true
		}
		if _, err := syscall.Seek(fd, 0, io.SeekStart); err != nil {
			return false
		}
	}
	return false
}
