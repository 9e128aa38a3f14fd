package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRunTrue measures the sandbox's cost for a trivial command; compare
// it with BenchmarkExecTrue.
func BenchmarkRunTrue(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	for b.Loop() {
		res, err := Run(ctx, Spec{Dir: dir, Command: "true"})
		if err != nil || res.Kind != Success {
			b.Fatalf("Run(true) = %v, %v", res.Kind, err)
		}
	}
}

// BenchmarkRunTrueLimits is BenchmarkRunTrue with every limit set, which
// starts the monitor goroutine.
func BenchmarkRunTrueLimits(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	for b.Loop() {
		res, err := Run(ctx, Spec{Dir: dir, Command: "true", WallTime: 1 << 40, MemoryMB: 1 << 20, DiskMB: 1 << 20})
		if err != nil || res.Kind != Success {
			b.Fatalf("Run(true) = %v, %v", res.Kind, err)
		}
	}
}

// BenchmarkExecTrue is the baseline: a plain os/exec run of the same command.
func BenchmarkExecTrue(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecTrueCapture is a plain os/exec run that captures stdout and
// stderr in memory, as Run does.
func BenchmarkExecTrueCapture(b *testing.B) {
	for b.Loop() {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command("/bin/sh", "-c", "true")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// startGroup starts a three-process group for the scanner benchmarks.
func startGroup(b *testing.B) int {
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 | sleep 30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// BenchmarkGroupScanFull measures one pass over all of /proc (which the
// scanners of a process share).
func BenchmarkGroupScanFull(b *testing.B) {
	s := newGroupScanner(startGroup(b))
	defer s.close()
	for b.Loop() {
		s.shared.mu.Lock()
		s.shared.passLocked(time.Now(), s)
		s.shared.mu.Unlock()
	}
}

// BenchmarkGroupScanWalk measures one memory sample that walks the group's
// process tree.
func BenchmarkGroupScanWalk(b *testing.B) {
	s := newGroupScanner(startGroup(b))
	defer s.close()
	for b.Loop() {
		s.walk()
	}
}

// BenchmarkRunTrueWarden is BenchmarkRunTrue in a warden's cgroups, with a
// CPU quota where they allow one. self-cpu-ns/op is the CPU time of this
// process (not of the commands) per run: what a worker spends on a task.
func BenchmarkRunTrueWarden(b *testing.B) {
	w, dir, ctx := benchWarden(b)
	defer reportSelfCPU(b)()
	for b.Loop() {
		res, err := Run(ctx, Spec{Dir: dir, Command: "true", Warden: w, Cores: 1})
		if err != nil || res.Kind != Success {
			b.Fatalf("Run(true) = %v, %v", res.Kind, err)
		}
	}
}

// BenchmarkRunTrueWardenParallel is BenchmarkRunTrueWarden from two
// goroutines, as two task slots of a worker start tasks at once.
func BenchmarkRunTrueWardenParallel(b *testing.B) {
	w, dir, ctx := benchWarden(b)
	defer reportSelfCPU(b)()
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := Run(ctx, Spec{Dir: dir, Command: "true", Warden: w, Cores: 1})
			if err != nil || res.Kind != Success {
				b.Errorf("Run(true) = %v, %v", res.Kind, err)
			}
		}
	})
}

// BenchmarkRunEchoParallel is BenchmarkRunTrue for a command that writes
// a line to each of its outputs, from 4 goroutines per CPU: the output drainer's
// wake-ups and reads are in self-cpu-ns/op (per run).
func BenchmarkRunEchoParallel(b *testing.B) {
	dir, ctx := b.TempDir(), context.Background()
	defer reportSelfCPU(b)()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := Run(ctx, Spec{Dir: dir, Command: "echo out; echo err >&2"})
			if err != nil || res.Kind != Success || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
				b.Errorf("Run = %v, %q, %q, %v; want success, out, err", res.Kind, res.Stdout, res.Stderr, err)
			}
		}
	})
}

// benchWarden makes a warden, closed when b ends, and a sandbox directory.
func benchWarden(b *testing.B) (*Warden, string, context.Context) {
	w, err := NewWarden(WardenConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	return w, b.TempDir(), context.Background()
}

// reportSelfCPU returns a function that reports this process's own CPU
// time (user and system, without its children) per iteration since
// reportSelfCPU was called.
func reportSelfCPU(b *testing.B) func() {
	var start syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &start)
	return func() {
		var end syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &end)
		ns := syscall.TimevalToNsec(end.Utime) - syscall.TimevalToNsec(start.Utime) +
			syscall.TimevalToNsec(end.Stime) - syscall.TimevalToNsec(start.Stime)
		b.ReportMetric(float64(ns)/float64(b.N), "self-cpu-ns/op")
	}
}

// BenchmarkRunTrueWardenMemory is BenchmarkRunTrueWarden as a worker runs
// a task with a memory limit: a guard process, one core, 64 MB.
func BenchmarkRunTrueWardenMemory(b *testing.B) {
	b.Setenv("SANDBOX_HELPER_GUARD", "1")
	w, err := NewWarden(WardenConfig{Guard: []string{os.Args[0], "-test.run=^TestHelperGuard$"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	dir, ctx := b.TempDir(), context.Background()
	defer reportSelfCPU(b)()
	for b.Loop() {
		res, err := Run(ctx, Spec{Dir: dir, Command: "true", Warden: w, Cores: 1, MemoryMB: 64})
		if err != nil || res.Kind != Success {
			b.Fatalf("Run(true) = %v, %v", res.Kind, err)
		}
	}
}

// BenchmarkSamplerSleeps is the sampler's own work for runs that each last
// a second and need only the check for an out-of-memory kill (here always
// false), 256 at once, a new one starting every 4 ms as the last ends, on
// a simulated clock: ns/op is per run.
func BenchmarkSamplerSleeps(b *testing.B) {
	const base = 50 * time.Millisecond
	s := newSampler()
	now := time.Unix(1000, 0)
	no := func() bool { return false }
	running := make([]*watch, 0, 256)
	ends := make([]time.Time, 0, 256)
	for i := range 256 {
		w := &watch{base: base, oom: no, over: func(verdict) {}}
		w.interval, w.due = base, now.Add(base+time.Duration(i)*4*time.Millisecond)
		benchPush(s, w)
		running = append(running, w)
		ends = append(ends, now.Add(time.Second+time.Duration(i)*4*time.Millisecond))
	}
	next := now
	for b.Loop() {
		// The sampler wakes as due until the oldest run ends; another
		// starts.
		end := ends[0]
		for !next.After(end) {
			next = s.sampleDue(next)
		}
		s.remove(running[0])
		w := &watch{base: base, oom: no, over: func(verdict) {}}
		w.interval, w.due = base, end.Add(base)
		benchPush(s, w)
		if w.due.Before(next) {
			next = w.due // add wakes the goroutine
		}
		running = append(running[1:], w)
		ends = append(ends[1:], end.Add(time.Second))
	}
}

func benchPush(s *sampler, w *watch) {
	s.mu.Lock()
	s.pushLocked(w)
	s.mu.Unlock()
}
