package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWaitExitedHoldsNoThread: a goroutine waiting for a child's exit is
// parked in the runtime's poller ("IO wait"), not blocked in a system call
// on a thread of its own, so a worker running hundreds of tasks does not
// hold hundreds of threads; and its exits are still seen, every one. (A
// cell with a v1 quota keeps a launcher thread of its own, one per cell
// and not per task: cells are reused.)
func TestWaitExitedHoldsNoThread(t *testing.T) {
	const n = 32
	for _, tc := range []struct {
		name   string
		warden func(t *testing.T) *Warden
		cores  float64
	}{
		{name: "no warden", warden: func(*testing.T) *Warden { return nil }},
		{name: "cells", warden: func(t *testing.T) *Warden { return newWarden(t, WardenConfig{}) }},
		{name: "cells with a quota", warden: func(t *testing.T) *Warden { return newWarden(t, WardenConfig{}) }, cores: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.warden(t)
			before := threads(t)
			children := make([]*Child, n)
			exited := make(chan error, n)
			for i := range children {
				c, err := w.Start(exec.Command("/bin/sh", "-c", "sleep 60"), tc.cores) // killed below
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				children[i] = c
				go func() { exited <- c.WaitExited() }() // exits when the child has exited
			}
			t.Cleanup(func() {
				for _, c := range children {
					c.Kill()
					c.Wait()
				}
			})
			pollUntil(t, 10*time.Second, "every waiter to park in the poller", func() bool {
				return waitersParked() >= n
			})
			launchers := 0
			if w != nil && w.cg.v1 != nil && tc.cores > 0 {
				launchers = n
			}
			if got := threads(t); got > before+launchers+n/2 {
				t.Errorf("%d threads while %d children ran (%d before, %d cell launchers); want fewer than %d more",
					got, n, before, launchers, launchers+n/2)
			}
			for _, c := range children {
				c.Kill()
			}
			for range n {
				if err := <-exited; err != nil {
					t.Errorf("WaitExited = %v; want nil", err)
				}
			}
		})
	}
}

// waitersParked counts the goroutines in WaitExited that are parked in the
// runtime's poller.
func waitersParked() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	count := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("[IO wait")) && bytes.Contains(g, []byte("(*Child).WaitExited")) {
			count++
		}
	}
	return count
}

// threads is the number of threads of this process.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			var n int
			for _, c := range strings.TrimSpace(v) {
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// A task's shell shares the worker's table of open files until it unshares
// it, before it puts its own standard input and outputs in place: the
// worker's own descriptors 0, 1 and 2 stay what they were.
func TestForkLeavesWorkersFilesAlone(t *testing.T) {
	stat := func() (ids [3][2]uint64) {
		for fd := range 3 {
			var st syscall.Stat_t
			if err := syscall.Fstat(fd, &st); err != nil {
				t.Fatalf("fstat %d: %v", fd, err)
			}
			ids[fd] = [2]uint64{st.Dev, st.Ino}
		}
		return ids
	}
	before := stat()
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "echo out; echo err >&2"})
	if err != nil || res.Kind != Success || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Fatalf("Run = %v (%s), %q, %q, %v; want success, out, err", res.Kind, res.Message, res.Stdout, res.Stderr, err)
	}
	if after := stat(); after != before {
		t.Errorf("the test process's descriptors 0-2 are %v after a run; want %v, as before", after, before)
	}
}

// BenchmarkRunTrueManyFiles is BenchmarkRunTrueWardenMemory in a process
// holding 2,000 more open files, as a worker running 256 tasks does, with
// the fork's copy of the file table in the child (shared: CLONE_FILES, then
// unshared in the child) or in the parent (copied, the plain fork).
func BenchmarkRunTrueManyFiles(b *testing.B) {
	for i := 0; i < 2000; i++ {
		f, err := os.Open(os.DevNull)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
	}
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "shared", false: "copied"}[shared]
		b.Run(name, func(b *testing.B) {
			defer filesUnshareRefused.Store(filesUnshareRefused.Load())
			filesUnshareRefused.Store(!shared)
			BenchmarkRunTrueWardenMemory(b)
		})
	}
}

// Where the child may not unshare the file table (a seccomp filter that
// refuses unshare(2)), the shell is forked again without sharing it, and
// no fork shares it from then on.
func TestForkWithoutSharedFiles(t *testing.T) {
	t.Cleanup(func() { filesUnshareRefused.Store(false); testUnshareExtra = 0 })
	testUnshareExtra = 0x40 // not an unshare flag: the child's unshare fails with EINVAL
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "echo out"})
	if err != nil || res.Kind != Success || string(res.Stdout) != "out\n" {
		t.Fatalf("Run = %v (%s), %q, %v; want success, %q", res.Kind, res.Message, res.Stdout, err, "out\n")
	}
	if !filesUnshareRefused.Load() {
		t.Errorf("forks still share the file table after an unshare was refused; want not")
	}
}

// A fork that fails for a reason of its own is not tried again without
// sharing the file table, and sharing stays on: a missing directory
// (chdir fails after the unshare) forks once, and a transient EAGAIN
// fails that run only.
func TestForkErrorsKeepSharedFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
		fail error // the first fork's error, instead of forking
	}{
		{name: "missing directory", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }},
		{name: "EAGAIN", dir: func(t *testing.T) string { return t.TempDir() }, fail: syscall.EAGAIN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "true"}); err != nil {
				t.Fatal(err)
			}
			if filesUnshareRefused.Load() {
				t.Skip("this environment refuses unshare(CLONE_FILES) (a seccomp filter): forks never share the file table here")
			}
			forks := 0
			t.Cleanup(func() { forkExec = syscall.ForkExec; filesUnshareRefused.Store(false) })
			forkExec = func(argv0 string, argv []string, attr *syscall.ProcAttr) (int, error) {
				forks++
				if fail := tc.fail; fail != nil {
					tc.fail = nil
					return 0, fail
				}
				return syscall.ForkExec(argv0, argv, attr)
			}
			if _, err := Run(context.Background(), Spec{Dir: tc.dir(t), Command: "true"}); err == nil {
				t.Fatalf("Run = nil error; want the fork's")
			}
			if forks != 1 {
				t.Errorf("%d forks; want 1", forks)
			}
			if filesUnshareRefused.Load() {
				t.Errorf("forks no longer share the file table; want them to")
			}
			forks = 0
			if res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: "echo ok"}); err != nil || res.Kind != Success || string(res.Stdout) != "ok\n" {
				t.Errorf("the next Run = %v (%s), %q, %v; want success, %q", res.Kind, res.Message, res.Stdout, err, "ok\n")
			}
			if filesUnshareRefused.Load() {
				t.Errorf("after a good run, forks no longer share the file table; want them to")
			}
		})
	}
}
