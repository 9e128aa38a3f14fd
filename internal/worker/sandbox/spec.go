package sandbox

import (
	"fmt"
	"time"
)

// Defaults applied to zero fields of a Spec.
const (
	// DefaultOutputLimit is the number of bytes of stdout and of stderr kept
	// when Spec.OutputLimit is 0.
	DefaultOutputLimit = 64 << 10
	// DefaultPollInterval is how often memory and disk are sampled when
	// Spec.PollInterval is 0.
	DefaultPollInterval = 50 * time.Millisecond
)

// defaultPath is the PATH used when the worker has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec describes one command run.
type Spec struct {
	// Dir is the sandbox directory. It exists, already holds the inputs and
	// is the working directory of the command.
	Dir string
	// Command is run as /bin/sh -c Command.
	Command string
	// Env holds "K=V" entries added after the base environment; later
	// entries win.
	Env []string
	// WallTime limits the run's duration; 0 means no limit.
	WallTime time.Duration
	// MemoryMB limits resident memory summed over the process group, in MiB;
	// 0 means no limit.
	MemoryMB int64
	// DiskMB limits the bytes of regular files stored under Dir, in MiB;
	// 0 means no limit.
	DiskMB int64
	// Cores limits the CPU time of the command's processes to this many
	// cores, with a cgroup quota, where Warden enforces CPU; 0 means no
	// limit.
	Cores float64
	// Warden contains the command's processes and enforces Cores; nil
	// contains them by process group and parent-death signal only.
	Warden *Warden
	// OutputLimit is the number of bytes of stdout and of stderr kept, each;
	// the tail is kept. 0 means DefaultOutputLimit.
	OutputLimit int
	// PollInterval is how often memory and disk are sampled; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Exited, where set, is called once the command's processes are gone
	// and its cgroup is taken back, before its output is collected (not
	// where it could not start): its cores are free for the next run.
	Exited func()
}

// Kind classifies how a run ended.
type Kind int

// The kinds of run outcome. The zero Kind is deliberately none of them.
const (
	// Success means the shell exited with status 0.
	Success Kind = iota + 1
	// Failed means a non-zero exit, or death by a signal the sandbox did not
	// send.
	Failed
	// TimedOut means the wall time ran out and the group was killed.
	TimedOut
	// MemoryExceeded means the group's resident memory went over the limit
	// and the group was killed.
	MemoryExceeded
	// DiskExceeded means the sandbox directory grew over the limit and the
	// group was killed.
	DiskExceeded
	// Cancelled means the context was done and the group was killed.
	Cancelled
)

var kindNames = [...]string{
	Success:        "success",
	Failed:         "failed",
	TimedOut:       "timed out",
	MemoryExceeded: "memory exceeded",
	DiskExceeded:   "disk exceeded",
	Cancelled:      "cancelled",
}

// String returns the kind in lower-case words, e.g. "timed out".
func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Result describes how a run ended.
type Result struct {
	// Kind classifies the outcome.
	Kind Kind
	// ExitCode is the shell's exit status, or -1 when it was killed by a
	// signal.
	ExitCode int
	// Message is a human-readable account, e.g. "exit status 3" or
	// "killed: wall time 2s exceeded".
	Message string
	// Stdout and Stderr hold the last bytes written, at most OutputLimit
	// each.
	Stdout, Stderr []byte
	// StdoutTruncated and StderrTruncated report that earlier bytes were
	// dropped.
	StdoutTruncated, StderrTruncated bool
	// PeakMemoryMB is the highest resident memory seen, in MiB rounded up:
	// the larger of the sampled group total (when MemoryMB is set) and the
	// largest single process the kernel accounted for.
	PeakMemoryMB int64
	// Duration is the time from start until the shell exited.
	Duration time.Duration
	// Lingering reports that a process of the command's cgroup was still
	// there after the kill, when Run gave up waiting for it: it may still
	// change files in Dir.
	Lingering bool
}
