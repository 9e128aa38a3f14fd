package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Run runs spec.Command and returns once the shell has exited and its whole
// process group, and its cgroup, have been sent SIGKILL, so no background
// child lingers.
// Cancelling ctx kills the process group and yields Kind Cancelled. The error
// is non-nil only when the command could not be started at all, e.g. when
// spec.Dir is missing.
func Run(ctx context.Context, spec Spec) (Result, error) {
	if spec.Dir == "" {
		return Result{}, errors.New("sandbox: run: empty sandbox directory")
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: run in %q: %w", spec.Dir, err)
	}
	if err := ctx.Err(); err != nil {
		return Result{Kind: Cancelled, ExitCode: -1, Message: "cancelled before start: " + err.Error()}, nil
	}
	limit := spec.OutputLimit
	if limit <= 0 {
		limit = DefaultOutputLimit
	}
	stdin, err := devNull()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: start command in %q: open %s for its standard input: %w", dir, os.DevNull, err)
	}
	out, err := openOutputs(limit)
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: start command in %q: %w", dir, err)
	}
	sh := &shell{script: spec.Command, dir: dir, env: environ(dir, spec.Env)}
	sh.files[0] = stdin
	sh.files[1], sh.files[2] = out.files()
	start := time.Now()
	c, err := spec.Warden.start(nil, sh, spec.Cores, spec.MemoryMB)
	out.started(err == nil)
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: start command in %q: %w", dir, err)
	}
	watched := spec
	if c.MemoryLimited() {
		watched.MemoryMB = 0 // the kernel enforces it: nothing to sample
	}
	mon := startMonitor(ctx, &watched, c, dir, start)

	var v verdict
	var duration time.Duration
	var reaped error
	if c.WaitExited() == nil {
		// The shell is a zombie, so its pid, and with it the group id,
		// cannot be reused until c.Wait reaps it below.
		duration = time.Since(start)
		v = mon.stop()
		c.Kill()
		reaped = c.Wait() // the outcome is read from c.status
	} else {
		reaped = c.Wait() // kills the group after the reap
		duration = time.Since(start)
		v = mon.stop()
	}
	if spec.Exited != nil {
		spec.Exited()
	}
	stdout, stderr, outTrunc, errTrunc := out.collect()

	if ws := c.status; c.joins && ws.Exited() && ws.ExitStatus() == joinFailed && bytes.HasPrefix(stderr, []byte(joinFailedText)) {
		// The shell could not enter its cell and ran nothing of the task's.
		// (Where no join was put before the command, a task that prints
		// the same and exits 125 simply failed.)
		return Result{}, fmt.Errorf("sandbox: start command in %q: %s (the worker's cgroups were removed or are not writable; its log says how cgroups are used)", dir, firstLine(stderr))
	}
	res := Result{
		Stdout:          stdout,
		Stderr:          stderr,
		StdoutTruncated: outTrunc,
		StderrTruncated: errTrunc,
		Duration:        duration,
		Lingering:       c.Lingers(),
	}
	classify(&res, c.status, v)
	if reaped != nil {
		// No status to read (something else reaped the shell): never
		// a success.
		res.Kind, res.ExitCode = Failed, -1
		res.Message = "the shell's exit status is lost (" + reaped.Error() + "): does the worker ignore SIGCHLD?"
	}
	res.PeakMemoryMB = ceilMB(max(v.peak, maxRSSBytes(&c.usage)))
	if c.MemoryKilled() && res.Kind != v.kind {
		// The kernel's limit, not one the monitor enforced (which wins
		// where it killed first), ended the run.
		// (In v1 the kernel kills one process, and the shell may exit on
		// its own: the run was killed all the same.)
		res.Kind, res.ExitCode = MemoryExceeded, -1
		res.Message = kernelOOMMessage(spec.MemoryMB)
		res.PeakMemoryMB = max(res.PeakMemoryMB, spec.MemoryMB)
	}
	return res, nil
}

// joinFailed is the exit status of a shell that could not enter its cell
// (joinText, Linux only), and joinFailedText what its standard error
// begins with.
const (
	joinFailed     = 125
	joinFailedText = "trellis: the task's shell could not enter its cgroup "
)

// kernelOOMMessage is the message of a run that the kernel's limit of mb
// MiB ended.
func kernelOOMMessage(mb int64) string {
	return fmt.Sprintf("killed: memory exceeded the limit of %d MB (the kernel's out-of-memory killer ended a process of the task)", mb)
}

// devNull returns /dev/null, open for reading for the process's life:
// every command's standard input. Where the open fails (EMFILE at the
// first task, say), that run fails, and the next tries again.
func devNull() (int, error) {
	return stdinNull.get(func() (int, error) {
		return syscall.Open(os.DevNull, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	})
}

var stdinNull kept[int]

// kept holds a value made once for the process's life: the first that
// was made without an error. Unlike sync.OnceValues, an error is not
// kept: the next get makes it again.
type kept[T any] struct {
	ok atomic.Bool // v is set
	mu sync.Mutex  // held while v is made
	v  T
}

// get returns the value, made by newV where there is none yet.
func (k *kept[T]) get(newV func() (T, error)) (T, error) {
	if k.ok.Load() {
		return k.v, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ok.Load() {
		return k.v, nil
	}
	v, err := newV()
	if err != nil {
		return v, err
	}
	k.v = v
	k.ok.Store(true)
	return v, nil
}

// environ returns the base environment followed by extra.
func environ(dir string, extra []string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := make([]string, 0, 3+len(extra))
	env = append(env, "PATH="+path, "HOME="+dir, "TMPDIR="+dir)
	return append(env, extra...)
}

// killGroup sends SIGKILL to every process in the group. An empty group
// (ESRCH) is the common case and not an error.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// classify fills res.Kind, ExitCode and Message from how the shell ended
// (ws) and what the monitor did.
func classify(res *Result, ws syscall.WaitStatus, v verdict) {
	res.ExitCode = ws.ExitStatus() // -1 unless it exited
	switch {
	case v.kind != 0 && ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		// The monitor killed a live shell. Had the shell already exited on
		// its own, its status below is the truthful outcome.
		res.Kind, res.Message = v.kind, v.message
	case ws.Exited() && ws.ExitStatus() == 0:
		res.Kind, res.Message = Success, "exit status 0"
	case ws.Exited():
		res.Kind = Failed
		res.Message = fmt.Sprintf("exit status %d", ws.ExitStatus())
		if ws.ExitStatus() == 127 {
			res.Message += ": command not found"
			if line := firstLine(res.Stderr); line != "" {
				res.Message += " (" + line + ")"
			}
		}
	case ws.Signaled():
		res.Kind = Failed
		res.Message = fmt.Sprintf("killed by signal %d", int(ws.Signal()))
	default:
		res.Kind, res.Message = Failed, fmt.Sprintf("ended with wait status %#x", uint32(ws))
	}
}

// maxQuotedLine bounds the stderr line quoted in a Message.
const maxQuotedLine = 200

// firstLine returns the first non-blank line of b, trimmed, and cut to
// maxQuotedLine bytes.
func firstLine(b []byte) string {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if len(line) > maxQuotedLine {
				return string(line[:maxQuotedLine]) + "..."
			}
			return string(line)
		}
	}
	return ""
}

// ceilMB converts bytes to MiB, rounding up.
func ceilMB(n int64) int64 {
	return (n + 1<<20 - 1) >> 20
}
