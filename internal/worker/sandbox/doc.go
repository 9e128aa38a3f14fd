// Package sandbox runs one task command in a prepared directory under limits,
// and confines untrusted file names to that directory.
//
// Contract of Run:
//   - The command runs as /bin/sh -c Command with Spec.Dir as its working
//     directory, in a process group of its own. Its environment is PATH (the
//     worker's, or a default), HOME and TMPDIR set to Dir, then Spec.Env;
//     later entries win.
//   - Run returns only after the shell has exited and the whole process group
//     has been sent SIGKILL, so background children do not outlive the run.
//     The shell is not reaped until that kill is sent, so the group id cannot
//     have been reused. Processes that leave the group (setsid) escape it.
//   - Wall time, context cancellation, resident memory summed over the group
//     and bytes stored under Dir (a walk of Dir) each kill the whole group and
//     give Kind TimedOut, Cancelled, MemoryExceeded or DiskExceeded. Memory
//     and disk are sampled every PollInterval, so a fast burst can overshoot a
//     limit before it is seen. A memory sample walks the shell's process tree
//     in /proc; once a second it scans all of /proc instead, which finds group
//     members orphaned out of the tree, so those are seen up to a second late.
//   - With no limit, no wall time and a context that cannot be cancelled,
//     nothing is sampled: PeakMemoryMB then comes from the kernel's rusage.
//   - At most OutputLimit bytes of stdout and of stderr are kept, each: the
//     last bytes written. Memory used for output is bounded by that limit.
//   - One monitor goroutine watches a run, and only when there is something to
//     watch (a limit, a wall time, or a cancellable context). It has exited
//     when Run returns.
//   - The error is non-nil only when the command could not be started at all;
//     every outcome of a started command is described by the Result.
//
// Contract of the name functions:
//   - ValidName is lexical: it refuses empty and absolute names, names with a
//     ".." element or a NUL byte, and names that denote the sandbox itself.
//   - Confine also refuses a name that passes through an existing symlink
//     under root. It checks, then returns; a process still running in the
//     sandbox could swap a directory for a link afterwards.
//   - OpenOutput opens race-free, one component at a time with O_NOFOLLOW
//     relative to the previous one, and accepts regular files only.
//
// Every refusal wraps ErrEscape, ErrMissingOutput or ErrNotRegular, and names
// the offending input. The package targets Linux; on other Unix systems Run
// reaps the shell before killing the group and reports no peak memory.
package sandbox
