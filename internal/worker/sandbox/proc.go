package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// fullScanPeriod is how often a groupScanner scans all of /proc to find group
// members that have left the shell's process tree (orphans adopted by init).
const fullScanPeriod = time.Second

var pageSize = int64(os.Getpagesize())

// childrenSupported reports whether the kernel provides
// /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
var childrenSupported = sync.OnceValue(func() bool {
	pid := strconv.Itoa(os.Getpid())
	_, err := os.Stat("/proc/" + pid + "/task/" + pid + "/children")
	return err == nil
})

// groupScanner samples the resident memory of one process group from /proc.
//
// A full scan reads /proc/*/stat for every process on the machine, which
// costs tens of microseconds per process. So most samples instead walk the
// tree below the group leader through /proc/PID/task/TID/children, which
// costs in proportion to the task's own processes. Every fullScanPeriod (and
// always where the children files are missing) a full scan runs instead, and
// the members it finds become extra roots for later walks, so a member that
// was orphaned out of the tree is still counted. Full scans are shared by
// every scanner of the process (fullScans): N tasks running at once cost
// about two passes over /proc a second, not N. A scanner belongs to one
// goroutine; close it when done.
type groupScanner struct {
	pgid   int
	shared *fullScans // nil for a cell scanner: it needs no full scans
	// cellProcs, when set, is the cgroup.procs file of the task's cgroup
	// v2 cell: a sample reads the members there (every process the task
	// started, however far it strayed from the shell's tree or group) and
	// then only their stat files, and never scans all of /proc.
	cellProcs string
	cellFD    int       // cellProcs open, the cell's; -1: open it here
	lastFull  time.Time // when the last full scan was (at first: when made)
	roots     []int     // members found by the last full scan
	stack     []int
	seen      map[int]struct{}
	buf       []byte
	// kept are the files the last walk read, kept open and re-read with
	// one pread each (a walk of a one-process task then costs two system
	// calls, not eight); a file no walk read is closed. gen numbers walks.
	kept map[string]keptFile
	gen  int
}

// keptFile is a /proc file a walk keeps open, and the walk that last read it.
type keptFile struct {
	fd  int
	gen int
}

func newGroupScanner(pgid int) *groupScanner {
	sharedScans.watch(pgid)
	return &groupScanner{
		pgid:     pgid,
		shared:   sharedScans,
		lastFull: time.Now(),
		seen:     make(map[int]struct{}),
		buf:      make([]byte, 4096),
	}
}

// newCellScanner samples the processes of the cgroup whose cgroup.procs
// file is procs, open as procsFD (the cell's own descriptor, which the
// scanner reads but does not close; -1 to open procs itself); where that
// file cannot be read, it falls back to the process group pgid
// (newGroupScanner).
func newCellScanner(pgid int, procs string, procsFD int) *groupScanner {
	if procs == "" {
		return newGroupScanner(pgid)
	}
	// A cell's files are short (a pid a line; statm, one line): a small
	// buffer, which grows when one is not.
	return &groupScanner{pgid: pgid, cellProcs: procs, cellFD: procsFD, buf: make([]byte, 256)}
}

// rss samples the group's resident memory in bytes, and how many member
// processes it counted: a full scan when the last was fullScanPeriod ago
// or more, else a walk.
func (s *groupScanner) rss() (bytes int64, procs int) {
	return s.rssAt(time.Now())
}

func (s *groupScanner) rssAt(now time.Time) (bytes int64, procs int) {
	if s.cellProcs != "" {
		if total, n, ok := s.cellSample(); ok {
			return total, n
		}
		// The cell cannot be read: sample the process group from now on.
		s.cellProcs, s.shared, s.lastFull, s.seen = "", sharedScans, now, make(map[int]struct{})
		s.shared.watch(s.pgid)
		return s.fullScanAt(now)
	}
	if now.Sub(s.lastFull) >= fullScanPeriod || !childrenSupported() {
		s.lastFull = now
		return s.fullScanAt(now)
	}
	return s.walk()
}

// close stops sharing full scans for the group and closes the kept files.
func (s *groupScanner) close() {
	if s.shared != nil {
		s.shared.unwatch(s.pgid)
	}
	for path, k := range s.kept {
		syscall.Close(k.fd)
		delete(s.kept, path)
	}
}

// fullScan sums every process on the machine whose group is s.pgid, and
// remembers them as roots for later walks. The pass over /proc is shared
// (fullScans): a recent one serves.
func (s *groupScanner) fullScan() (total int64, procs int) {
	return s.fullScanAt(time.Now())
}

func (s *groupScanner) fullScanAt(now time.Time) (total int64, procs int) {
	g := s.shared.usage(s.pgid, now, s)
	s.roots = append(s.roots[:0], g.roots...)
	return g.rss, g.procs
}

// fullScans shares passes over /proc among the group scanners of this
// process: a pass younger than fullScanPeriod/2 serves every scanner, and
// one pass sums every watched group. So the tasks of a worker together cost
// about two passes a second, however many run: not one each.
type fullScans struct {
	mu      sync.Mutex
	watched map[int]int        // guarded by mu: pgid -> scanners watching it
	at      time.Time          // guarded by mu: when the last pass ran
	found   map[int]groupUsage // guarded by mu: the last pass's sums, for each group watched then
	passes  int                // guarded by mu: passes made, for tests
}

// groupUsage is what a pass found of one group.
type groupUsage struct {
	rss   int64
	procs int
	roots []int // members but the leader
}

var sharedScans = newFullScans()

func newFullScans() *fullScans {
	return &fullScans{watched: make(map[int]int), found: make(map[int]groupUsage)}
}

// passCount returns how many passes over /proc f has made.
func (f *fullScans) passCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.passes
}

func (f *fullScans) watch(pgid int) {
	f.mu.Lock()
	f.watched[pgid]++
	f.mu.Unlock()
}

func (f *fullScans) unwatch(pgid int) {
	f.mu.Lock()
	if f.watched[pgid]--; f.watched[pgid] <= 0 {
		delete(f.watched, pgid)
		delete(f.found, pgid)
	}
	f.mu.Unlock()
}

// usage returns the group's sums from a pass younger than
// fullScanPeriod/2 that saw it watched, making a pass (with reader's
// buffer) if there is none.
func (f *fullScans) usage(pgid int, now time.Time, reader *groupScanner) groupUsage {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.found[pgid]
	if !ok || now.Sub(f.at) >= fullScanPeriod/2 {
		f.passLocked(now, reader)
		g = f.found[pgid]
	}
	return g
}

func (f *fullScans) passLocked(now time.Time, reader *groupScanner) {
	f.passes++
	f.at = now
	clear(f.found)
	for pgid := range f.watched {
		f.found[pgid] = groupUsage{}
	}
	d, err := os.Open("/proc")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		pgrp, rss, _, ok := reader.stat(pid)
		if !ok {
			continue
		}
		g, watched := f.found[pgrp]
		if !watched {
			continue
		}
		g.rss += rss * pageSize
		g.procs++
		if pid != pgrp {
			g.roots = append(g.roots, pid)
		}
		f.found[pgrp] = g
	}
}

// walk sums the group members reachable from the leader and the known roots
// through group members' children.
func (s *groupScanner) walk() (total int64, procs int) {
	s.gen++
	defer s.closeUnread()
	clear(s.seen)
	s.stack = append(append(s.stack[:0], s.pgid), s.roots...)
	for len(s.stack) > 0 {
		pid := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		if _, dup := s.seen[pid]; dup {
			continue
		}
		s.seen[pid] = struct{}{}
		b, ok := s.readKept("/proc/" + strconv.Itoa(pid) + "/stat")
		if !ok {
			continue
		}
		pgrp, rss, threads, ok := parseStat(b)
		if !ok || pgrp != s.pgid {
			continue
		}
		total += rss * pageSize
		procs++
		s.pushChildren(pid, threads)
	}
	return total, procs
}

// cellSample sums the processes listed in s.cellProcs: one read of that
// file and one of each member's statm, all kept open between samples. ok is
// false when the file cannot be read. A member's statm, not its stat: the
// cell already says who the members are, so only the resident size is
// wanted, and the kernel makes statm from three counters where stat costs
// it some 11 µs of CPU time and locks (docs/benchmarks.md, capacity).
func (s *groupScanner) cellSample() (total int64, procs int, ok bool) {
	s.gen++
	defer s.closeUnread()
	var b []byte
	if s.cellFD >= 0 {
		b, ok = s.readFD(s.cellFD)
	} else {
		b, ok = s.readKept(s.cellProcs)
	}
	if !ok {
		return 0, 0, false
	}
	s.stack = s.stack[:0]
	for _, f := range bytes.Fields(b) {
		if n, ok := atoi(f); ok && n > 0 {
			s.stack = append(s.stack, int(n))
		}
	}
	for _, pid := range s.stack {
		b, ok := s.readKept("/proc/" + strconv.Itoa(pid) + "/statm")
		if !ok {
			continue
		}
		if rss, ok := parseStatm(b); ok {
			total += rss * pageSize
			procs++
		}
	}
	return total, procs, true
}

// parseStatm extracts the resident set size in pages (field 2) from the
// contents of /proc/PID/statm: the same count as field 24 of stat.
func parseStatm(b []byte) (rssPages int64, ok bool) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	return atoi(f[1])
}

// pushChildren pushes the children of every thread of pid onto the stack.
func (s *groupScanner) pushChildren(pid int, threads int64) {
	p := strconv.Itoa(pid)
	if threads <= 1 {
		s.pushChildrenOf("/proc/" + p + "/task/" + p + "/children")
		return
	}
	d, err := os.Open("/proc/" + p + "/task")
	if err != nil {
		return
	}
	tids, _ := d.Readdirnames(-1)
	d.Close()
	for _, tid := range tids {
		s.pushChildrenOf("/proc/" + p + "/task/" + tid + "/children")
	}
}

// pushChildrenOf pushes the pids listed in a children file.
func (s *groupScanner) pushChildrenOf(path string) {
	b, ok := s.readKept(path)
	if !ok {
		return
	}
	for _, f := range bytes.Fields(b) {
		if n, ok := atoi(f); ok && n > 0 {
			s.stack = append(s.stack, int(n))
		}
	}
}

// stat reads /proc/PID/stat.
func (s *groupScanner) stat(pid int) (pgrp int, rssPages, threads int64, ok bool) {
	b, ok := s.readAll("/proc/" + strconv.Itoa(pid) + "/stat")
	if !ok {
		return 0, 0, 0, false
	}
	return parseStat(b)
}

// readKept reads the file at path into s.buf like readAll, through a
// descriptor kept open from the last walk (re-read from offset 0: /proc
// files are generated afresh at each read from the start). A descriptor
// that fails (its process is gone) is closed.
func (s *groupScanner) readKept(path string) ([]byte, bool) {
	if s.kept == nil {
		s.kept = make(map[string]keptFile)
	}
	k, ok := s.kept[path]
	if !ok {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, false
		}
		k.fd = fd
	}
	k.gen = s.gen
	s.kept[path] = k
	b, ok := s.readFD(k.fd)
	if !ok {
		syscall.Close(k.fd)
		delete(s.kept, path)
	}
	return b, ok
}

// readFD reads the whole of the open file fd, from offset 0, into s.buf.
func (s *groupScanner) readFD(fd int) ([]byte, bool) {
	n := 0
	for {
		if n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		r, err := syscall.Pread(fd, s.buf[n:], int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, false
		}
		n += r
		if r == 0 || n < len(s.buf) { // a short read: the file is all there
			return s.buf[:n], true
		}
	}
}

// closeUnread closes the kept files that the walk just made did not read.
func (s *groupScanner) closeUnread() {
	for path, k := range s.kept {
		if k.gen != s.gen {
			syscall.Close(k.fd)
			delete(s.kept, path)
		}
	}
}

// readAll reads the file at path into s.buf, growing it as needed.
func (s *groupScanner) readAll(path string) ([]byte, bool) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer syscall.Close(fd)
	n := 0
	for {
		if n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		k, err := syscall.Read(fd, s.buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, false
		}
		if k == 0 {
			return s.buf[:n], true
		}
		n += k
	}
}

// parseStat extracts the process group (field 5), the number of threads
// (field 20) and the resident set size in pages (field 24) from the contents
// of /proc/PID/stat. The command name (field 2) is parenthesised and may
// hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (pgrp int, rssPages, threads int64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	fields := b[i+1:]
	for field := 3; field <= 24; field++ { // field 3 (state) follows the ')'
		fields = bytes.TrimLeft(fields, " \n")
		end := bytes.IndexAny(fields, " \n")
		if end < 0 {
			end = len(fields)
		}
		tok := fields[:end]
		fields = fields[end:]
		if len(tok) == 0 {
			return 0, 0, 0, false
		}
		if field != 5 && field != 20 && field != 24 {
			continue
		}
		n, ok := atoi(tok)
		if !ok {
			return 0, 0, 0, false
		}
		switch field {
		case 5:
			pgrp = int(n)
		case 20:
			threads = n
		case 24:
			rssPages = n
		}
	}
	return pgrp, rssPages, threads, true
}

// atoi parses a non-empty decimal number with an optional minus sign.
func atoi(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
