package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pollUntil calls cond until it returns true or the deadline passes.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // a poll interval, not a synchronisation
	}
}

// readPID reads the pid a command wrote into dir/name.
func readPID(t *testing.T, dir, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("parse pid file %q: %v", b, err)
	}
	return pid
}

// dead reports whether pid is gone or a zombie.
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

func TestRun(t *testing.T) {
	tests := []struct {
		name        string
		command     string
		env         []string
		outputLimit int
		wantKind    Kind
		wantExit    int
		wantMessage string // "$DIR" stands for the sandbox directory
		wantStdout  string // likewise
		wantStderr  string
	}{
		{
			name:        "success captures output",
			command:     "echo hello; echo oops >&2",
			wantKind:    Success,
			wantMessage: "exit status 0",
			wantStdout:  "hello\n",
			wantStderr:  "oops\n",
		},
		{
			name:        "reads inputs from the working directory",
			command:     "cat in.txt; pwd",
			wantKind:    Success,
			wantMessage: "exit status 0",
			wantStdout:  "input\n$DIR\n",
		},
		{
			name:        "standard input is empty",
			command:     "cat; echo end",
			wantKind:    Success,
			wantMessage: "exit status 0",
			wantStdout:  "end\n",
		},
		{
			name:        "non-zero exit",
			command:     "echo partial; exit 3",
			wantKind:    Failed,
			wantExit:    3,
			wantMessage: "exit status 3",
			wantStdout:  "partial\n",
		},
		{
			name:        "command not found",
			command:     "nosuch-trellis-command",
			wantKind:    Failed,
			wantExit:    127,
			wantMessage: "exit status 127: command not found (sh: 1: nosuch-trellis-command: not found)",
			wantStderr:  "sh: 1: nosuch-trellis-command: not found\n",
		},
		{
			name:        "killed by a signal of its own",
			command:     "kill -9 $$",
			wantKind:    Failed,
			wantExit:    -1,
			wantMessage: "killed by signal 9",
		},
		{
			name:        "base environment",
			command:     `printf '%s|%s' "$HOME" "$TMPDIR"`,
			wantKind:    Success,
			wantMessage: "exit status 0",
			wantStdout:  "$DIR|$DIR",
		},
		{
			name:        "extra environment, later wins",
			command:     `printf '%s|%s|%s' "$FOO" "$HOME" "$TMPDIR"`,
			env:         []string{"FOO=bar", "HOME=/elsewhere", "FOO=baz"},
			wantKind:    Success,
			wantMessage: "exit status 0",
			wantStdout:  "baz|/elsewhere|$DIR",
		},
		{
			name:        "output tail is kept",
			command:     "seq 1 20000; seq 1 30000 >&2",
			outputLimit: 13,
			wantKind:    Success,
			wantMessage: "exit status 0",
			wantStdout:  "\n19999\n20000\n",
			wantStderr:  "\n29999\n30000\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("input\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command, Env: tt.env, OutputLimit: tt.outputLimit})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			expand := func(s string) string { return strings.ReplaceAll(s, "$DIR", dir) }
			if res.Kind != tt.wantKind {
				t.Errorf("Kind = %v; want %v", res.Kind, tt.wantKind)
			}
			if res.ExitCode != tt.wantExit {
				t.Errorf("ExitCode = %d; want %d", res.ExitCode, tt.wantExit)
			}
			if want := expand(tt.wantMessage); res.Message != want {
				t.Errorf("Message = %q; want %q", res.Message, want)
			}
			if want := expand(tt.wantStdout); string(res.Stdout) != want {
				t.Errorf("Stdout = %q; want %q", res.Stdout, want)
			}
			if want := expand(tt.wantStderr); string(res.Stderr) != want {
				t.Errorf("Stderr = %q; want %q", res.Stderr, want)
			}
			wantTrunc := tt.outputLimit > 0
			if res.StdoutTruncated != wantTrunc || res.StderrTruncated != wantTrunc {
				t.Errorf("truncated = %v, %v; want %v, %v", res.StdoutTruncated, res.StderrTruncated, wantTrunc, wantTrunc)
			}
			if res.Duration <= 0 {
				t.Errorf("Duration = %v; want > 0", res.Duration)
			}
			if res.PeakMemoryMB <= 0 {
				t.Errorf("PeakMemoryMB = %d; want > 0", res.PeakMemoryMB)
			}
		})
	}
}

func TestRunPath(t *testing.T) {
	t.Setenv("PATH", "/usr/bin:/bin:/trellis-test")
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: `printf %s "$PATH"`})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := string(res.Stdout), "/usr/bin:/bin:/trellis-test"; got != want {
		t.Errorf("PATH = %q; want %q", got, want)
	}
}

func TestRunStartErrors(t *testing.T) {
	tests := []struct {
		name string
		dir  string
	}{
		{name: "missing directory", dir: filepath.Join(t.TempDir(), "gone")},
		{name: "empty directory name", dir: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(context.Background(), Spec{Dir: tt.dir, Command: "true"})
			if err == nil {
				t.Fatalf("Run(Dir %q) = %+v, nil; want an error", tt.dir, res)
			}
			if !strings.HasPrefix(err.Error(), "sandbox: ") {
				t.Errorf("error %q; want the sandbox: prefix", err)
			}
		})
	}
}

func TestRunLimits(t *testing.T) {
	tests := []struct {
		name         string
		command      string
		spec         Spec
		wantKind     Kind
		wantPrefix   string
		wantSuffix   string
		wantPeakOver int64
	}{
		{
			name:       "wall time kills the group",
			command:    "sleep 30 & echo $! > bg.pid; sleep 30",
			spec:       Spec{WallTime: 300 * time.Millisecond},
			wantKind:   TimedOut,
			wantPrefix: "killed: wall time 300ms exceeded",
		},
		{
			name:         "memory limit",
			command:      "echo $$ > bg.pid; head -c 300M /dev/zero | tail",
			spec:         Spec{MemoryMB: 40, PollInterval: 10 * time.Millisecond},
			wantKind:     MemoryExceeded,
			wantPrefix:   "killed: resident memory ",
			wantSuffix:   " MB exceeded the limit of 40 MB",
			wantPeakOver: 40,
		},
		{
			// Sampling has slowed down to its slowest by the time memory
			// grows: the limit still kills the group.
			name:         "memory limit after a steady start",
			command:      "echo $$ > bg.pid; sleep 0.5; head -c 300M /dev/zero | tail",
			spec:         Spec{MemoryMB: 40, PollInterval: 10 * time.Millisecond},
			wantKind:     MemoryExceeded,
			wantPrefix:   "killed: resident memory ",
			wantSuffix:   " MB exceeded the limit of 40 MB",
			wantPeakOver: 40,
		},
		{
			name: "memory held by an orphan in the group",
			// The orphan holds the memory until it is killed: a pipeline
			// that ends before the next full scan of /proc (every second)
			// is not seen, as on a fast machine it ends in a third of one.
			command:      "(sh -c 'echo $$ > bg.pid; (head -c 300M /dev/zero; sleep 30) | tail' &); sleep 30",
			spec:         Spec{MemoryMB: 40, PollInterval: 10 * time.Millisecond},
			wantKind:     MemoryExceeded,
			wantPrefix:   "killed: resident memory ",
			wantSuffix:   " MB exceeded the limit of 40 MB",
			wantPeakOver: 40,
		},
		{
			name:       "disk limit",
			command:    "sleep 30 & echo $! > bg.pid; head -c 30M /dev/zero > big; sleep 30",
			spec:       Spec{DiskMB: 10, PollInterval: 10 * time.Millisecond},
			wantKind:   DiskExceeded,
			wantPrefix: "killed: sandbox holds ",
			wantSuffix: " MB, over the disk limit of 10 MB",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			spec := tt.spec
			spec.Dir, spec.Command = dir, tt.command
			res, err := Run(context.Background(), spec)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Kind != tt.wantKind {
				t.Fatalf("Kind = %v (%s); want %v", res.Kind, res.Message, tt.wantKind)
			}
			if res.ExitCode != -1 {
				t.Errorf("ExitCode = %d; want -1", res.ExitCode)
			}
			if !strings.HasPrefix(res.Message, tt.wantPrefix) || !strings.HasSuffix(res.Message, tt.wantSuffix) {
				t.Errorf("Message = %q; want %q...%q", res.Message, tt.wantPrefix, tt.wantSuffix)
			}
			if res.Duration > 10*time.Second {
				t.Errorf("Duration = %v; want the kill well before the command's own end", res.Duration)
			}
			if res.PeakMemoryMB <= tt.wantPeakOver {
				t.Errorf("PeakMemoryMB = %d; want > %d", res.PeakMemoryMB, tt.wantPeakOver)
			}
			pid := readPID(t, dir, "bg.pid")
			pollUntil(t, 5*time.Second, "process "+strconv.Itoa(pid)+" to die", func() bool { return dead(pid) })
		})
	}
}

func TestRunKillsLeftoversAfterExit(t *testing.T) {
	tests := []struct {
		name    string
		command string
	}{
		{name: "background child holding the output pipes", command: "sleep 30 & echo $! > bg.pid"},
		{name: "background child with redirected output", command: "sleep 30 >/dev/null 2>&1 & echo $! > bg.pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			res, err := Run(context.Background(), Spec{Dir: dir, Command: tt.command})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Kind != Success {
				t.Errorf("Kind = %v (%s); want success", res.Kind, res.Message)
			}
			pid := readPID(t, dir, "bg.pid")
			pollUntil(t, 5*time.Second, "process "+strconv.Itoa(pid)+" to die", func() bool { return dead(pid) })
		})
	}
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer cancel()
		started := filepath.Join(dir, "started")
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(started); err == nil {
				return
			}
			time.Sleep(time.Millisecond) // a poll interval, not a synchronisation
		}
	}()
	res, err := Run(ctx, Spec{Dir: dir, Command: "sleep 30 & echo $! > bg.pid; touch started; sleep 30"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Kind != Cancelled || res.ExitCode != -1 {
		t.Errorf("Kind, ExitCode = %v, %d; want cancelled, -1", res.Kind, res.ExitCode)
	}
	if want := "killed: cancelled (context canceled)"; res.Message != want {
		t.Errorf("Message = %q; want %q", res.Message, want)
	}
	pid := readPID(t, dir, "bg.pid")
	pollUntil(t, 5*time.Second, "process "+strconv.Itoa(pid)+" to die", func() bool { return dead(pid) })
}

func TestRunCancelledBeforeStart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Run(ctx, Spec{Dir: dir, Command: "touch ran"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Kind != Cancelled {
		t.Errorf("Kind = %v; want cancelled", res.Kind)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Errorf("the command ran after the context was cancelled")
	}
}

func TestRunWithinLimits(t *testing.T) {
	t.Parallel()
	res, err := Run(context.Background(), Spec{
		Dir:          t.TempDir(),
		Command:      "head -c 1M /dev/zero > small; echo done",
		WallTime:     10 * time.Second,
		MemoryMB:     500,
		DiskMB:       100,
		PollInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Kind != Success || string(res.Stdout) != "done\n" {
		t.Errorf("Kind, Stdout = %v, %q; want success, %q", res.Kind, res.Stdout, "done\n")
	}
}

// TestRunNoLeakedGoroutines runs sequentially, so parallel tests do not
// disturb the count. A first run starts the goroutines that live as long
// as the process (the output drainer, the fork thread's) before it counts,
// so that it passes run alone too.
func TestRunNoLeakedGoroutines(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := Run(ctx, Spec{Dir: t.TempDir(), Command: "true"}); err != nil {
		t.Fatalf("warm-up Run: %v", err)
	}
	before := runtime.NumGoroutine()
	for _, spec := range []Spec{
		{Command: "true"},
		{Command: "true", WallTime: time.Minute, MemoryMB: 100, DiskMB: 100, PollInterval: time.Millisecond},
		{Command: "sleep 30", WallTime: 50 * time.Millisecond},
	} {
		spec.Dir = t.TempDir()
		if _, err := Run(ctx, spec); err != nil {
			t.Fatalf("Run(%q): %v", spec.Command, err)
		}
	}
	pollUntil(t, 5*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func TestKindString(t *testing.T) {
	tests := []struct {
		kind Kind
		want string
	}{
		{Success, "success"},
		{Failed, "failed"},
		{TimedOut, "timed out"},
		{MemoryExceeded, "memory exceeded"},
		{DiskExceeded, "disk exceeded"},
		{Cancelled, "cancelled"},
		{Kind(0), "Kind(0)"},
		{Kind(99), "Kind(99)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.kind.String(); got != tt.want {
				t.Errorf("Kind(%d).String() = %q; want %q", int(tt.kind), got, tt.want)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name        string
		stat        string
		wantPgrp    int
		wantRSS     int64
		wantThreads int64
		wantOK      bool
	}{
		{
			name:     "plain",
			stat:     "1234 (sleep) S 1200 1234 1200 0 -1 4194304 90 0 0 0 0 0 0 0 20 0 1 0 123 5656576 201 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
			wantPgrp: 1234, wantThreads: 1, wantRSS: 201, wantOK: true,
		},
		{
			name:     "name with spaces and parentheses",
			stat:     "77 (a) b (c) R 1 70 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 8 0 1 100 42\n",
			wantPgrp: 70, wantThreads: 8, wantRSS: 42, wantOK: true,
		},
		{name: "truncated", stat: "77 (x) R 1 70 1 0", wantOK: false},
		{name: "no parenthesis", stat: "77 x R 1 70", wantOK: false},
		{name: "garbage pgrp", stat: "77 (x) R 1 zz 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 100 42 0", wantOK: false},
		{name: "garbage rss", stat: "77 (x) R 1 70 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 100 4x2 0", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pgrp, rss, threads, ok := parseStat([]byte(tt.stat))
			if ok != tt.wantOK || (ok && (pgrp != tt.wantPgrp || rss != tt.wantRSS || threads != tt.wantThreads)) {
				t.Errorf("parseStat = %d, %d, %d, %v; want %d, %d, %d, %v",
					pgrp, rss, threads, ok, tt.wantPgrp, tt.wantRSS, tt.wantThreads, tt.wantOK)
			}
		})
	}
}

func TestFirstLine(t *testing.T) {
	long := strings.Repeat("x", maxQuotedLine+10)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "", want: ""},
		{name: "blank lines only", in: "\n  \n", want: ""},
		{name: "one line", in: "sh: 1: x: not found\n", want: "sh: 1: x: not found"},
		{name: "skips blank lines", in: "\n\n  second  \nthird\n", want: "second"},
		{name: "no newline", in: "only", want: "only"},
		{name: "long line is cut", in: long + "\n", want: long[:maxQuotedLine] + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := firstLine([]byte(tt.in)); got != tt.want {
				t.Errorf("firstLine(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestRunEscapedHolderOfPipes: a process that left the group (setsid, and
// no cgroup to catch it) and holds the output pipes does not keep Run
// waiting until it ends: Run returns what was written while that process
// still runs (on Linux without waiting for the pipes' end at all;
// elsewhere after at most ioGrace).
func TestRunEscapedHolderOfPipes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The shell waits until its child runs sleep: setsid has left the group by then.
	res, err := Run(context.Background(), Spec{Dir: dir, Command: `setsid sleep 30 & echo $! > bg.pid
while [ "$(cat /proc/$!/comm)" != sleep ]; do :; done; echo before; echo oops >&2`})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	pid := readPID(t, dir, "bg.pid")
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if res.Kind != Success || string(res.Stdout) != "before\n" || string(res.Stderr) != "oops\n" {
		t.Errorf("Run = %v, stdout %q, stderr %q; want success, %q, %q", res.Kind, res.Stdout, res.Stderr, "before\n", "oops\n")
	}
	if dead(pid) {
		t.Errorf("the escaped process %d is gone; want it still running (Run must not have waited for it)", pid)
	}
}

// A task that says what a shell that could not enter its cgroup says, and
// exits as it does, simply fails where no join was put before its command:
// its outputs are kept, and Run reports no start error.
func TestRunLooksLikeJoinFailure(t *testing.T) {
	command := `echo "` + joinFailedText + `/nowhere" >&2; echo out; exit ` + strconv.Itoa(joinFailed)
	res, err := Run(context.Background(), Spec{Dir: t.TempDir(), Command: command})
	if err != nil || res.Kind != Failed || res.ExitCode != joinFailed || string(res.Stdout) != "out\n" || !strings.HasPrefix(string(res.Stderr), joinFailedText) {
		t.Errorf("Run = %v (%s) exit %d, stdout %q, stderr %q, %v; want failed, exit %d, the outputs, no error",
			res.Kind, res.Message, res.ExitCode, res.Stdout, res.Stderr, err, joinFailed)
	}
}
