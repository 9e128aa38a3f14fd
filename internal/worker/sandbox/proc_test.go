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
	if got := newGroupScanner(pgid, 50*time.Millisecond).fullEvery; got != 20 {
		t.Errorf("fullEvery = %d for 50ms; want 20", got)
	}
}
