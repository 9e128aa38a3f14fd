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
// was orphaned out of the tree is still counted. A scanner belongs to one
// goroutine.
type groupScanner struct {
	pgid      int
	fullEvery int // every fullEvery-th sample is a full scan
	samples   int
	roots     []int // members found by the last full scan
	stack     []int
	seen      map[int]struct{}
	buf       []byte
}

func newGroupScanner(pgid int, interval time.Duration) *groupScanner {
	return &groupScanner{
		pgid:      pgid,
		fullEvery: max(1, int(fullScanPeriod/max(interval, 1))),
		seen:      make(map[int]struct{}),
		buf:       make([]byte, 4096),
	}
}

// rss samples the group's resident memory in bytes, and how many member
// processes it counted.
func (s *groupScanner) rss() (bytes int64, procs int) {
	s.samples++
	if s.samples%s.fullEvery == 0 || !childrenSupported() {
		return s.fullScan()
	}
	return s.walk()
}

// fullScan sums every process on the machine whose group is s.pgid, and
// remembers them as roots for later walks.
func (s *groupScanner) fullScan() (total int64, procs int) {
	d, err := os.Open("/proc")
	if err != nil {
		return 0, 0
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	s.roots = s.roots[:0]
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if pgrp, rss, _, ok := s.stat(pid); ok && pgrp == s.pgid {
			total += rss * pageSize
			procs++
			if pid != s.pgid {
				s.roots = append(s.roots, pid)
			}
		}
	}
	return total, procs
}

// walk sums the group members reachable from the leader and the known roots
// through group members' children.
func (s *groupScanner) walk() (total int64, procs int) {
	clear(s.seen)
	s.stack = append(append(s.stack[:0], s.pgid), s.roots...)
	for len(s.stack) > 0 {
		pid := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		if _, dup := s.seen[pid]; dup {
			continue
		}
		s.seen[pid] = struct{}{}
		pgrp, rss, threads, ok := s.stat(pid)
		if !ok || pgrp != s.pgid {
			continue
		}
		total += rss * pageSize
		procs++
		s.pushChildren(pid, threads)
	}
	return total, procs
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
	b, ok := s.readAll(path)
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
