package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

	s := newGroupScanner(pgid)
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
	// A sample is a full scan once fullScanPeriod has passed since the
	// last, however often or seldom samples come.
	s2 := newGroupScanner(pgid)
	defer s2.close()
	at := s2.lastFull
	if s2.rssAt(at.Add(fullScanPeriod / 2)); !s2.lastFull.Equal(at) {
		t.Errorf("a sample half a period after the start was a full scan")
	}
	if s2.rssAt(at.Add(fullScanPeriod)); !s2.lastFull.Equal(at.Add(fullScanPeriod)) {
		t.Errorf("a sample a period after the start was not a full scan")
	}
	if s2.rssAt(at.Add(10 * fullScanPeriod)); !s2.lastFull.Equal(at.Add(10 * fullScanPeriod)) {
		t.Errorf("a sample ten periods after the last full scan was not one")
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
		waitSleeping(t, cmd.Process.Pid)
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

// A walk keeps the files it read open for the next one, and closes those
// of a process that is gone.
func TestWalkKeepsFiles(t *testing.T) {
	if !childrenSupported() {
		t.Skip("no /proc/PID/task/TID/children on this kernel")
	}
	cmd := exec.Command("/bin/sh", "-c", "exec sleep 30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitSleeping(t, cmd.Process.Pid)
	s := newGroupScanner(cmd.Process.Pid)
	defer s.close()
	for i := range 2 {
		if rss, n := s.walk(); n != 1 || rss <= 0 {
			t.Fatalf("walk %d: %d bytes in %d processes, want the one process's memory", i+1, rss, n)
		}
		if len(s.kept) != 2 {
			t.Errorf("walk %d kept %d files open, want 2 (stat and children)", i+1, len(s.kept))
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, n := s.walk(); n != 0 {
		t.Errorf("walk after the process was reaped counted %d processes, want 0", n)
	}
	if len(s.kept) != 0 {
		t.Errorf("%d files kept open after the process was reaped, want 0", len(s.kept))
	}
}

// waitSleeping waits until pid runs sleep with memory mapped (its shell
// has exec'd it), so that its resident memory is not 0.
func waitSleeping(t *testing.T, pid int) {
	t.Helper()
	pollUntil(t, 5*time.Second, "the process to run sleep", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		_, rss, _, ok := parseStat(b)
		return ok && strings.Contains(string(b), "(sleep)") && rss > 0
	})
}

// TestNextPoll: sampling slows down, doubling, while a task holds steady,
// up to maxPollBackoff times the base interval, and is back at the base
// interval after any growth.
func TestNextPoll(t *testing.T) {
	const base = 50 * time.Millisecond
	cur := base
	var got []time.Duration
	for _, steady := range []bool{true, true, true, true, true, false, true} {
		cur = nextPoll(cur, base, steady)
		got = append(got, cur)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		400 * time.Millisecond, 400 * time.Millisecond, base, 100 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("intervals (-want +got):\n%s", diff)
	}
}

// TestParseStatm: the resident size is field 2 of statm, and a statm read
// of a live process counts what its status calls VmRSS. (Field 24 of stat
// counts the same pages from per-CPU counters that may lag: a few percent
// lower here.)
func TestParseStatm(t *testing.T) {
	tests := []struct {
		name   string
		statm  string
		want   int64
		wantOK bool
	}{
		{name: "typical", statm: "2162 215 190 23 0 113 0\n", want: 215, wantOK: true},
		{name: "kernel thread", statm: "0 0 0 0 0 0 0\n", want: 0, wantOK: true},
		{name: "one field", statm: "2162\n", wantOK: false},
		{name: "empty", statm: "", wantOK: false},
		{name: "garbage", statm: "2162 2x5 190\n", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseStatm([]byte(tt.statm))
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Errorf("parseStatm(%q) = %d, %v; want %d, %v", tt.statm, got, ok, tt.want, tt.wantOK)
			}
		})
	}

	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	waitSleeping(t, pid)
	// The process may still be loading (its memory growing) just after it
	// is seen running sleep: compare readings taken while statm held still
	// (the same before and after status), until a deadline.
	readStatm := func() int64 {
		t.Helper()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
		if err != nil {
			t.Fatal(err)
		}
		pages, ok := parseStatm(b)
		if !ok {
			t.Fatalf("parseStatm(%q) failed", b)
		}
		return pages * pageSize >> 10
	}
	var got, vmRSS int64
	for deadline := time.Now().Add(5 * time.Second); ; {
		got = readStatm()
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		vmRSS = -1
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &vmRSS)
			}
		}
		if readStatm() == got && got == vmRSS || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // a poll interval, not a synchronisation
	}
	if got != vmRSS {
		t.Errorf("resident memory of a sleeping process from statm = %d KiB; want VmRSS %d KiB", got, vmRSS)
	}
}
