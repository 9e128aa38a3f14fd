package sandbox

import (
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

// Child is one process started by a Warden, with its process group and its
// cgroup. Start it with Warden.Start; then WaitExited, Kill, and Wait, in
// that order.
type Child struct {
	w   *Warden
	cmd *exec.Cmd // nil for a task's shell, forked without os/exec (shell)
	pid int
	// status and usage say how a task's shell ended (cmd nil); set by Wait.
	status syscall.WaitStatus
	usage  syscall.Rusage
	cell   *cell // nil when not in a cgroup
	// exit tells when the process has exited, without a thread blocked
	// in the meantime (a pidfd polled by the runtime: a task's shell's
	// from its clone, else one of its own); nil where there is no pidfd,
	// and WaitExited then blocks its thread in waitid.
	exit *exitWatch

	exitOnce sync.Once
	waitErr  error // why it cannot be waited for; set by exitOnce

	mu       sync.Mutex // guards released
	released bool       // Wait has begun: the group and cell are no longer ours to signal

	lingers bool // set by Wait: a process of its cell was left running
	// contained: the cell holds the process from before it runs anything
	// of the user's and the guard kills the cells, so the guard is not
	// told of its group (start).
	contained bool
	// memLimited: the kernel enforces a memory limit on the cell (its
	// memory is not sampled); memKilled, set by Wait: it killed a process
	// of the run for going over it.
	memLimited, memKilled bool
	memoryMB              int64 // the memory limit, MiB; 0 for none
	// joins: the shell's script begins with the cell's join text, so an
	// exit with joinFailed after joinFailedText may be the join's (Run).
	joins bool
	// gate applies the cell's v1 CPU quota if the run uses more than its
	// cores (nil where the quota holds from the start, or there is none).
	gate *quotaGate
}

// shell is a task's command as Run starts it: /bin/sh -c script in dir,
// with env, standard input /dev/null and the write ends of the run's
// output pipes as its stdout and stderr. It is forked with syscall.ForkExec, not os/exec: the
// clone gives its pidfd, which tells its exit, and no other is opened,
// and it is reaped with wait4, which gives its rusage.
type shell struct {
	script string
	dir    string
	env    []string
	files  [3]int // stdin, stdout, stderr
}

// Start starts cmd as its process group's leader, in a cgroup of its own
// limited to cores (none for 0) where the warden has cgroups, and tells the
// guard about it; where the cgroup and the guard together do not make it
// die with the worker (start), with SIGKILL as its parent-death signal and
// the guard told of its group. It sets cmd.SysProcAttr. The error is the
// one of cmd.Start, or says why the cgroup could not be made.
//
// The kernel sends the parent-death signal when the thread that forked the
// child ends, not the process, and the Go runtime ends a thread when a
// goroutine locked to it exits. So the fork runs on a thread that stays
// locked for longer than the child lives: the cell's v1 launcher (which
// ends only once its cell is removed, after what it forked is gone), or
// else the process's fork thread, which never ends (cell.start).
func (w *Warden) Start(cmd *exec.Cmd, cores float64) (*Child, error) {
	return w.StartLimited(cmd, cores, 0)
}

// StartLimited is Start with a memory limit of memoryMB (0 for none) that
// the kernel enforces where the warden's cells have a memory cgroup
// (MemoryLimited says whether it does for this child; where it does not,
// the caller samples memory itself).
func (w *Warden) StartLimited(cmd *exec.Cmd, cores float64, memoryMB int64) (*Child, error) {
	return w.start(cmd, nil, cores, memoryMB)
}

// start is StartLimited for a process that os/exec starts (cmd), or for
// a task's shell (sh; cmd nil), which Run starts. Where the cell's
// processes must be in its v1 cgroups, a shell joins them itself before
// its script runs (its v1 cpu cgroup only where there is a guard): the
// script gets the cell's join text in front (cell.join), and no thread of
// the worker enters the cell.
// Where the cell holds the process before it runs anything of the user's,
// and the guard kills what is in the cells when the worker dies, the
// process is forked from the calling thread with no parent-death signal:
// no hand-off to a locked thread per start.
func (w *Warden) start(cmd *exec.Cmd, sh *shell, cores float64, memoryMB int64) (*Child, error) {
	c := &Child{w: w, cmd: cmd, memoryMB: memoryMB}
	isShell := sh != nil
	if w != nil && w.cg != nil {
		mem := mbToBytes(memoryMB)
		if w.sampleMemory || !isShell && w.cg.memV1() {
			mem = 0 // sampled: in v1 only a shell enters its memory cell
		}
		var err error
		if c.cell, c.memLimited, err = w.cg.cell(cores, mem); err != nil {
			return nil, err
		}
	}
	// The shell enters its v1 cpu cell itself only where that saves the
	// hand-off to a locked thread (contained: with a guard); else the
	// cell's launcher forks it there, and a v1 migration in the child
	// would cost it some 40 µs of CPU for nothing. It always enters its v1
	// memory cell itself: no thread of the worker may be there.
	// Where its v2 cell holds it from the clone, and a guard kills the
	// cells if the worker dies, a shell starts outside its v1 cpu cell,
	// from any thread, and enters the cell only if it uses more than its
	// cores (quotaGate). (Without a guard it is forked by the cell's
	// launcher, already in the cell: the fork thread instead, one per
	// process, would take turns among the process's workers.)
	guarded := w != nil && w.guard.alive()
	deferCPU := isShell && guarded && c.cell.deferQuota()
	joinCPU := isShell && guarded && c.cell.needsV1() && !deferCPU
	joined := false
	if j := c.cell.join(joinCPU); isShell && j != "" {
		sh.script = j + sh.script
		joined, c.joins = joinCPU, true
	}
	placed := joined || deferCPU // needs no fork from inside the v1 cpu cell
	c.contained = c.cell != nil && guarded && (placed || !c.cell.needsV1())
	attr := procAttr(c.cell, c.contained)
	fork := func() error {
		cmd.SysProcAttr = attr
		return cmd.Start()
	}
	if isShell {
		fork = func() (err error) {
			c.pid, c.exit, err = sh.fork(attr)
			return err
		}
	}
	if err := c.cell.start(fork, placed, c.contained); err != nil {
		if c.cell != nil {
			w.cg.release(c.cell, false)
		}
		return nil, err
	}
	if deferCPU {
		c.gate = startQuotaGate(c.cell, cores, w.log)
	}
	if !isShell {
		c.pid = cmd.Process.Pid
		c.exit = watchExit(c.pid) // nil if there is no pidfd: WaitExited blocks a thread then
	}
	if !c.contained {
		// A contained process is killed with the cells; telling the guard
		// of its group too cost two writes to its pipe per task.
		c.w.guardSend("+" + strconv.Itoa(c.pid) + "\n")
	}
	return c, nil
}

// Pid returns the process id, which is also its process group id.
func (c *Child) Pid() int { return c.pid }

// WaitExited blocks until the process has exited, without reaping it, so
// that its pid, and the group id it leads, cannot be reused until Wait.
// Where that is not possible it returns an error at once
// (errors.ErrUnsupported off Linux), and the caller must Wait before it
// kills the group. Calls after the first return what the first did.
func (c *Child) WaitExited() error {
	c.exitOnce.Do(func() {
		if c.exit != nil {
			if c.waitErr = c.exit.wait(); c.waitErr == nil {
				return
			}
		}
		c.waitErr = waitExited(c.pid)
	})
	return c.waitErr
}

// Kill sends SIGKILL to the process group and to every process in the
// child's cgroup, those that left the group too. It does nothing once Wait
// has begun.
func (c *Child) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return
	}
	killGroup(c.pid)
	c.cell.kill()
}

// Wait reaps the process (exec.Cmd.Wait, whose error it returns; a task's
// shell with wait4, which sets status and usage), after it has told the
// guard that the group is gone, and takes back the cgroup once what was
// killed in it has left. Where WaitExited failed, it kills the group after
// the reap.
func (c *Child) Wait() error {
	c.mu.Lock()
	c.released = true
	c.mu.Unlock()
	// Before the reap: until then the group id cannot be reused, so the
	// guard never kills a group that is not this one.
	if !c.contained {
		c.w.guardSend("-" + strconv.Itoa(c.pid) + "\n")
	}
	exited := c.WaitExited() // at once where the caller waited for it first
	var err error
	if c.cmd != nil {
		err = c.cmd.Wait()
	} else {
		err = reap(c.pid, &c.status, &c.usage)
	}
	if c.exit != nil {
		c.exit.close()
	}
	if exited != nil {
		killGroup(c.pid) // off Linux it could not be killed before the reap
	}
	if c.cell != nil {
		c.gate.stop() // before the cell may be reused
		var emptied bool
		emptied, c.memKilled = c.w.cg.release(c.cell, c.memLimited)
		c.lingers = !emptied
	}
	return err
}

// fork forks and executes the shell with the attributes attr and returns
// its pid and the watch of its exit, from the pidfd that its clone gives
// (nil where there is none).
func (s *shell) fork(attr *syscall.SysProcAttr) (pid int, exit *exitWatch, err error) {
	pidfd := clonePidfd(attr)
	pa := &syscall.ProcAttr{
		Dir:   s.dir,
		Env:   s.env,
		Files: []uintptr{uintptr(s.files[0]), uintptr(s.files[1]), uintptr(s.files[2])},
		Sys:   attr,
	}
	argv := []string{"sh", "-c", s.script}
	pid, err = forkExec("/bin/sh", argv, pa)
	if err != nil && !forksOwnError(err) && unshareRefused(attr) {
		// Perhaps the child may not unshare its file table (a seccomp
		// filter answers with the errno its profile chose: EPERM,
		// ENOSYS…): once more without sharing it.
		pid, err = forkExec("/bin/sh", argv, pa)
		unsharingRetried(err == nil)
	}
	if err != nil {
		return 0, nil, &os.PathError{Op: "fork/exec", Path: "/bin/sh", Err: err}
	}
	return pid, clonedExitWatch(pidfd), nil
}

// forksOwnError reports whether a failed fork's err is one that the
// child's unshare cannot have caused, but its chdir, exec or the clone
// itself (a missing directory or program, a transient shortage): such a
// fork is not tried again without sharing the file table, and a later
// success would say nothing of sharing.
func forksOwnError(err error) bool {
	switch err {
	case syscall.ENOENT, syscall.ENOTDIR, syscall.EACCES, syscall.ELOOP, syscall.ENAMETOOLONG,
		syscall.ENOEXEC, syscall.E2BIG, syscall.ETXTBSY, syscall.EAGAIN,
		syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM: // the status pipe, the clone, or the table's copy
		return true
	}
	return false
}

// forkExec is syscall.ForkExec; tests count or fail the forks.
var forkExec = syscall.ForkExec

// reap waits for the process pid, which has exited or will, and sets how
// it ended and what it used.
func reap(pid int, status *syscall.WaitStatus, usage *syscall.Rusage) error {
	for {
		_, err := syscall.Wait4(pid, status, 0, usage)
		if err != syscall.EINTR {
			return err
		}
	}
}

// MemoryLimited reports whether the kernel enforces the child's memory
// limit (a cell with a memory cgroup), so that its memory needs no samples.
func (c *Child) MemoryLimited() bool { return c.memLimited }

// oomWatch returns what tells the one sampler that the kernel killed a
// process of the child's run for its memory limit, where the rest of the
// run is not killed with it (cgroup v1); nil elsewhere.
func (c *Child) oomWatch() func() bool {
	if !c.memLimited {
		return nil
	}
	return c.cell.oomKilled()
}

// MemoryKilled reports, once Wait has returned, that the kernel killed a
// process of the child's cell for going over its memory limit.
func (c *Child) MemoryKilled() bool { return c.memKilled }

// Lingers reports, once Wait has returned, that a process of the child's
// cgroup was still there after the kill (in the kernel's hands, say):
// what it may still do to the child's files is not over.
func (c *Child) Lingers() bool { return c.lingers }

// guardSend tells the guard one line, if there is a guard.
func (w *Warden) guardSend(line string) {
	if w != nil && w.guard != nil {
		w.guard.send(line)
	}
}
