// Package sandbox runs one task command in a prepared directory under limits,
// makes the processes a worker starts die with it, and confines untrusted
// file names to that directory.
//
// Contract of Run:
//   - The command runs as /bin/sh -c Command with Spec.Dir as its working
//     directory, in a process group of its own, started by Spec.Warden (see
//     below). Its environment is PATH (the worker's, or a default), HOME and
//     TMPDIR set to Dir, then Spec.Env; later entries win.
//   - Run returns only after the shell has exited and the whole process group
//     has been sent SIGKILL, and so has its cgroup where it has one, so
//     background children do not outlive the run. The shell is not reaped
//     until that kill is sent, so the group id cannot have been reused.
//     Processes that leave the group (setsid) escape the group kill, but not
//     the cgroup's.
//   - Spec.Cores becomes a CPU quota of Cores × the period on the command's
//     cgroup, where the Warden enforces CPU.
//   - Wall time, context cancellation, resident memory summed over the group
//     and bytes stored under Dir (a walk of Dir) each kill the whole group and
//     give Kind TimedOut, Cancelled, MemoryExceeded or DiskExceeded.
//   - Where the Warden's cells are cgroup v2 cgroups with the memory
//     controller (Warden.MemoryEnforcement), the kernel enforces MemoryMB as
//     the cell's memory.max (with memory.swap.max 0, so that the run cannot
//     swap instead; where that file is missing, memory is sampled, as it
//     is where WardenConfig.Dir is on tmpfs, whose files would be charged
//     to the run's memory) and nothing is sampled: a process that goes over
//     it is killed by the kernel's out-of-memory killer, and with it the
//     whole cell (memory.oom.group). The run is then MemoryExceeded, known
//     from the cell's memory.events, read at the run's start and end: both
//     its oom count (the cell's own limit hit) and its oom_kill count rose
//     (a kill for a shortage of the whole host raises oom_kill alone, and
//     is not the run's limit); its PeakMemoryMB is then at least the limit.
//     Where the memory controller is in cgroup v1 instead, the kernel
//     enforces MemoryMB as the cell's memory.limit_in_bytes and
//     memory.memsw.limit_in_bytes (memory and swap; without memsw files,
//     memory is sampled), in a v1 memory cgroup that the run's shell enters
//     itself (below) and no thread of the worker ever does (a worker thread
//     in a cell got the worker's own memory charged there, where the
//     cell's out-of-memory killer could pick the worker). v1 kills one
//     process, not the cell: the run is MemoryExceeded when the cell's
//     oom_kill count (memory.oom_control) rose and the kernel signalled an
//     out-of-memory event of the cell (an eventfd registered once per cell
//     through cgroup.event_control) but none of the cgroups above it (one
//     eventfd for the warden's own memory cgroup, which hears of those: the
//     kernel signals a cgroup's event to every cgroup below it, and none
//     for a shortage of the whole host). The most the cell held says
//     nothing in v1, which charges the page cache of the files a run
//     writes to its cell: that sits at the limit whenever a run wrote more
//     than it. The one sampler waits for the cell's eventfd (one epoll set
//     for every cell's, polled by the Go runtime), and from its first
//     event in the run reads memory.oom_control at once and every
//     PollInterval or so (backing off as below) to kill the rest of the run
//     when it rose; a run without such an event is never sampled. The
//     kernel counts what the
//     run's processes have charged (resident memory, page tables, and page
//     cache, which it reclaims before it kills anything). Elsewhere memory
//     and disk are sampled every PollInterval while they grow (or are over
//     half their limit); while neither grows the interval doubles, up to 8 ×
//     PollInterval (the first sample, at PollInterval, counts as steady
//     under half the limits), so a fast burst can overshoot a limit before it is seen,
//     and a steady task that then grows is seen up to 8 × PollInterval late.
//     In a cgroup v2 cell (a Warden with cgroups), a memory sample sums every
//     process of the cell's cgroup.procs, however far it strayed from the
//     shell's tree or group. Elsewhere it walks the shell's process tree in
//     /proc; once a second it scans all of /proc instead (one pass shared by
//     every task of the process), which finds group members orphaned out of
//     the tree, so those are seen up to a second late.
//   - With no sampled limit, PeakMemoryMB comes from the kernel's rusage:
//     the largest single process of the run.
//   - At most OutputLimit bytes of stdout and of stderr are kept, each: the
//     last bytes written. Memory used for output is bounded by that limit.
//     Both are pipes of the run's own, as a command expects (reopening
//     /dev/stderr opens the same pipe, even with >); no pipe outlives its
//     run, so a process that escaped one run cannot write into another's
//     result. On Linux one goroutine of the process reads every run's pipes
//     as data arrives (an epoll set of its own, the sampler's kind, which
//     the Go runtime polls: no goroutine, no poller registration and no
//     blocked thread per run, nor for the drainer), and once the shell has
//     exited and the rest of the run was killed, Run takes its pipes back
//     and reads what they hold without waiting: a process that left the
//     group and the cell and still holds a pipe keeps nothing waiting, and
//     what it writes later is not kept. Where /dev/null or that epoll set
//     cannot be opened (no descriptor left), the run fails and says why;
//     the next run tries again.
//     Elsewhere a goroutine per pipe drains it to end of file, waiting at
//     most a second after the kill.
//   - No goroutine watches a run: its context's end and its wall time kill
//     it from callbacks (context.AfterFunc, time.AfterFunc), and the
//     memory and disk samples of every run of the process are taken by one
//     sampler goroutine (sampler.go), which kills a run over its limit and
//     runs while some run has a sampled limit: one wake-up serves every run
//     then due, and looks at no other (a heap by due time). None of them
//     kills the run once Run has its verdict.
//   - The error is non-nil only when the command could not be started at all;
//     every outcome of a started command is described by the Result.
//
// Contract of Warden (one per worker; see also docs/operations.md):
//   - Every process it starts (Warden.Start: tasks through Run, libraries
//     through libhost) leads a process group of its own. Where it has a
//     guard and the process a cell that holds it before it runs anything of
//     the user's (cloned into its v2 cell, or a task's shell that enters its
//     v1 cells itself, below), the process is forked from the calling
//     thread with no parent-death signal: the guard kills the cells when
//     the worker dies. Otherwise it has SIGKILL as its parent-death signal,
//     which comes when the thread that forked the process ends, so the fork
//     runs on a thread that outlives it: one fork thread, locked for the
//     life of the worker (or a v1 cell's launcher, below). No thread waits
//     for a process: its exit is learnt from a pidfd that the Go runtime
//     polls (where the kernel has none, from waitid on a thread of its own).
//     A task's shell is forked without os/exec (syscall.ForkExec): its
//     pidfd comes from its clone, no other is opened, and it is reaped with
//     wait4, which gives its rusage; it is cloned sharing the worker's
//     table of open files and unshares (copies) it itself before it sets
//     up its descriptors, so that copy, which grows with the worker's open
//     files, is the task's CPU time (where the child may not unshare it,
//     as under Docker's default seccomp profile without CAP_SYS_ADMIN, the
//     first such fork fails with an error its chdir or exec cannot give,
//     EPERM, EINVAL, ENOSYS…, and is tried again without sharing; where
//     that succeeds, no fork shares it from then on; a fork that fails
//     with an error of its own, a missing directory, EAGAIN, EMFILE or
//     ENOMEM, is not tried again and changes nothing). A library is started with os/exec through the
//     same Warden.Start path.
//   - Where the worker may create cgroups, each process tree gets a cell: a
//     cgroup below the warden's own (trellis-PID-START-SEQ below the worker's
//     cgroup). In cgroup v2 the process is cloned into it (CLONE_INTO_CGROUP)
//     and cgroup.kill kills it whole. A task's shell whose quota is in v1
//     and whose v2 cell holds it starts outside its v1 cpu cell: a
//     quotaGate moves the cell's processes in at the first check that
//     finds them over their cores (quotagate_linux.go; a v1 migration at
//     every start cost trivial tasks a fifth of their throughput). In the
//     v1 hierarchies (cpu, for a quota where no v2 cell holds the process;
//     memory, for a limit) a task's shell
//     enters its cell itself: Run puts the cell's join text in front of
//     the command on its first line (echo $$ > the cell's cgroup.procs, so
//     the command's line numbers in the shell's messages stay the same),
//     and a shell that cannot enter it exits with status 125 having run
//     nothing of the command, which Run returns as an error. No thread of
//     the worker enters a cell, and none is kept per cell. A process that
//     is not a shell (a library) is forked by the cell's launcher, a thread
//     that lives in the v1 cpu cell for the cell's life, and gets no v1
//     memory limit (its memory is sampled); the launcher ends only when
//     its cell is removed, after what it forked is gone. Either way the
//     process runs nothing of the user's outside its cell. CPU quotas go in
//     v2 (cpu.max) if the cpu controller can be
//     enabled there (NewWarden adds it to the worker's cgroup's
//     cgroup.subtree_control, where it stays), else in v1
//     (cpu.cfs_quota_us). Memory limits go in v2 (memory.max) if the
//     memory controller can be enabled there, else in the v1 memory
//     hierarchy where it is mounted and writable. Control files are written, never created. Cells are reused once
//     empty, except one that cgroup.kill was written to (the kernel would
//     kill a process cloned into it). Enforcement says which is in use.
//   - The guard (ServeGuard), a process started once per worker, is told of
//     each process group as it starts and before it is reaped. When the
//     worker dies, by any means, the guard reads end of file on its pipe and
//     kills every group still running and everything in the warden's
//     cgroups, and removes them. A process group that starts in the moment
//     before the guard hears of it, while the worker is killed, is left to
//     its cell (a v1 shell that has not entered its cell by then cannot
//     once the guard removed it, and exits) or, without one, its
//     parent-death signal. The warden reaps the guard when it exits: a
//     guard that dies before the worker is logged, and from then on every
//     process starts with the parent-death signal.
//   - NewWarden removes the cgroups of wardens whose process is gone, with
//     what runs in them; Close removes its own.
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
// reaps the shell before killing the group and reports no peak memory, and
// there are no cgroups and no parent-death signal.
package sandbox
