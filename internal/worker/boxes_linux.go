package worker

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openParent opens the sandboxes' directory for openat (O_PATH), and says
// whether its file system fills directory reads (fillsReads).
func openParent(dir string) (fd int, fills bool, err error) {
	fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	var st unix.Statfs_t
	return fd, unix.Fstatfs(fd, &st) == nil && fillsReads(int64(st.Type)), nil
}

// fillsReads reports whether the file system of type fsType (statfs's
// f_type) is one whose directory reads (getdents) stop only at the end of
// the directory or where the next entry would not fit the buffer: ext2/3/4,
// XFS, Btrfs and tmpfs, whose readdir emits entries until the kernel's
// buffer refuses one. Then a read that leaves room for the longest entry
// has reached the end, and an empty sandbox costs one read, not two (the
// second, which returns nothing, cost some 4 µs of an ext4 directory's
// hash-tree walk in the worker's profile). FUSE, for one, may return one
// chunk a read, and network file systems are left out too.
func fillsReads(fsType int64) bool {
	switch fsType {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC:
		return true
	}
	return false
}

// boxWatch hears, through one inotify descriptor, of every change to the
// kept sandboxes: an entry made, moved in or out, or removed, and the
// sandbox's own mode, owner, removal or move. A sandbox marked clean when
// it was emptied, and with no such event since, is still empty and as it
// was made, so put keeps it without opening and reading it (some 12-16 µs
// of the worker's CPU per task on ext4, docs/benchmarks.md, capacity,
// ninth part).
//
// Why that is sound: the kernel queues the event within the system call
// that makes the change, whoever makes it, and put runs once every process
// of the attempt is gone; so every change to the sandbox before put is in
// the queue when put reads it. A sandbox is empty when marked clean, so it
// can hold something again only through an entry made or moved into it,
// each an event on it (a file made in a directory inside it would first
// need that directory). A full queue (IN_Q_OVERFLOW) or a read that fails
// marks every sandbox changed. It is used only on the local file systems
// of fillsReads (a network file system's changes on other hosts make no
// event here), and it assumes, as the rest of the worker does, that the
// worker's sandboxes directory is not moved while it runs: a sandbox is
// marked clean only where its path still names the directory emptied.
type boxWatch struct {
	mu    sync.Mutex
	fd    int
	wds   map[int]*boxMark    // by watch descriptor
	dirs  map[string]*boxMark // by sandbox path
	buf   [4096]byte
	clean int // marked clean: for tests
}

// boxMark is what the watch knows of one sandbox.
type boxMark struct {
	wd    int  // its watch descriptor; -1 when the kernel dropped it
	clean bool // emptied, and no event since
}

// boxEvents are the events that can change a sandbox's contents, mode or
// owner, or replace it.
const boxEvents = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_ATTRIB |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_DONT_FOLLOW | unix.IN_ONLYDIR

// newBoxWatch returns a watch; nil where inotify cannot be used.
func newBoxWatch() *boxWatch {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	return &boxWatch{fd: fd, wds: make(map[int]*boxMark), dirs: make(map[string]*boxMark)}
}

// unchanged reports whether dir was marked clean and no event came since
// (false for a nil watch).
func (w *boxWatch) unchanged(dir string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drainLocked()
	m := w.dirs[dir]
	return m != nil && m.clean
}

// emptied marks dir, just emptied by emptyOut as the directory id, clean:
// watched from now on, with the events of its emptying read first.
func (w *boxWatch) emptied(dir string, id fileID) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.dirs[dir]
	if m == nil || m.wd < 0 {
		wd, err := unix.InotifyAddWatch(w.fd, dir, boxEvents)
		if err != nil {
			return // (too many watches, say): checked in full each time
		}
		var st unix.Stat_t
		if unix.Lstat(dir, &st) != nil || uint64(st.Dev) != id.dev || uint64(st.Ino) != id.ino {
			unix.InotifyRmWatch(w.fd, uint32(wd))
			return // the path no longer names the directory emptied
		}
		if m == nil {
			m = &boxMark{}
			w.dirs[dir] = m
		}
		m.wd = wd
		w.wds[wd] = m
	}
	if w.drainLocked() {
		m.clean = true
		w.clean++
	}
}

// forget stops watching dir, which put removes.
func (w *boxWatch) forget(dir string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.dirs[dir]
	if m == nil {
		return
	}
	delete(w.dirs, dir)
	if m.wd >= 0 {
		delete(w.wds, m.wd)
		unix.InotifyRmWatch(w.fd, uint32(m.wd))
	}
}

// drainLocked reads every queued event and marks the sandboxes they name
// changed; false, with every sandbox marked changed, where the queue
// overflowed or cannot be read.
func (w *boxWatch) drainLocked() bool {
	for {
		n, err := unix.Read(w.fd, w.buf[:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil || n <= 0:
			w.allChangedLocked()
			return false
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				w.allChangedLocked()
				continue
			}
			m := w.wds[int(ev.Wd)]
			if m == nil {
				continue
			}
			m.clean = false
			if ev.Mask&unix.IN_IGNORED != 0 { // the watch is gone (the sandbox removed)
				delete(w.wds, int(ev.Wd))
				m.wd = -1
			}
		}
	}
}

func (w *boxWatch) allChangedLocked() {
	for _, m := range w.dirs {
		m.clean = false
	}
}

// close closes the inotify descriptor (nil: nothing).
func (w *boxWatch) close() {
	if w != nil {
		unix.Close(w.fd)
	}
}
