package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestGroupScanner checks that walking the process tree finds what a full
// scan finds, including a group member orphaned out of the tree once a full
// scan has seen it.
func TestGroupScanner(t *testing.T) {
	if !childrenSupported() {
		t.Skip("no /proc/PID/task/TID/children on this kernel")
	}
	// The leader starts two children, one of them from a subshell that
	// exits at once, so that child is orphaned out of the tree. Once "ready"
	// exists (written by a shell built-in, so no short-lived process is
	// about) the group is {leader, child, orphan} for good.
	dir := t.TempDir()
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & (sleep 30 &); : > ready; exec sleep 30")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		cmd.Wait()
	})
	pollUntil(t, 5*time.Second, "the group to be ready", func() bool {
		_, err := os.Stat(filepath.Join(dir, "ready"))
		return err == nil
	})

	s := newGroupScanner(pgid, time.Hour)
	defer s.close()
	if _, n := s.walk(); n != 2 {
		t.Errorf("walk before any full scan counted %d members; want the 2 in the tree", n)
	}
	fullBytes, fullN := s.fullScan()
	if fullN != 3 {
		t.Errorf("full scan counted %d members; want 3", fullN)
	}
	if walkBytes, walkN := s.walk(); walkN != fullN || walkBytes <= 0 {
		t.Errorf("walk after a full scan = %d bytes in %d members; full scan = %d bytes in %d", walkBytes, walkN, fullBytes, fullN)
	}
	if s.fullEvery != 1 {
		t.Errorf("fullEvery = %d for an interval of an hour; want 1", s.fullEvery)
	}
	s50 := newGroupScanner(pgid, 50*time.Millisecond)
	defer s50.close()
	if s50.fullEvery != 20 {
		t.Errorf("fullEvery = %d for 50ms; want 20", s50.fullEvery)
	}
}

// Many scanners share passes over /proc: 64 groups each sampled by a full
// scan cost one pass, not 64, and each gets its own group's sums.
func TestFullScansShared(t *testing.T) {
	f := newFullScans()
	var scanners []*groupScanner
	for range 64 {
		cmd := exec.Command("/bin/sh", "-c", "exec sleep 30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		f.watch(cmd.Process.Pid)
		scanners = append(scanners, &groupScanner{pgid: cmd.Process.Pid, shared: f, seen: map[int]struct{}{}, buf: make([]byte, 4096)})
	}
	now := time.Now()
	for i, s := range scanners {
		if rss, n := s.fullScanAt(now); n != 1 || rss <= 0 {
			t.Errorf("scanner %d: %d bytes in %d processes, want its one process's memory", i, rss, n)
		}
	}
	f.mu.Lock()
	passes := f.passes
	f.mu.Unlock()
	if passes != 1 {
		t.Errorf("%d passes over /proc for 64 groups sampled at once, want 1", passes)
	}
	if _, n := scanners[0].fullScanAt(now.Add(fullScanPeriod / 2)); n != 1 {
		t.Errorf("a sample half a period later counted %d processes, want 1", n)
	}
	if f.passes != 2 {
		t.Errorf("%d passes after a sample half a period later, want a new one (2)", f.passes)
	}
	for _, s := range scanners {
		s.close()
	}
	if len(f.watched) != 0 || len(f.found) != 0 {
		t.Errorf("after every scanner closed: %d groups watched, %d found; want none", len(f.watched), len(f.found))
	}
}
