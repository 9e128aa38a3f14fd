package sandbox

import (
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pPID is waitid's P_PID id type.
const pPID = 1

// waitExited blocks until process pid has exited, without reaping it: the
// process stays a zombie, so its pid and process group id cannot be reused
// until os/exec waits for it.
func waitExited(pid int) error {
	var info [128]byte // siginfo_t, unused
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch errno {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return errno
		}
	}
}

// maxRSSBytes returns the largest resident set of the shell or of any
// descendant it waited for, in bytes; Linux reports ru_maxrss in KiB.
func maxRSSBytes(ru *syscall.Rusage) int64 {
	return ru.Maxrss << 10
}

// filesUnshareRefused says that clonePidfd no longer asks for CLONE_FILES.
// It is set for good once a fork that shared the file table failed and the
// same fork without it did not (unshareRefused): a seccomp filter may
// refuse unshare(2) (Docker's and containerd's default profiles do,
// without CAP_SYS_ADMIN).
var filesUnshareRefused atomic.Bool

// testUnshareExtra is added to the flags the child unshares where it
// shares the file table: tests make that unshare fail with it.
var testUnshareExtra uintptr

// clonePidfd asks the clone of the process started with attr for its
// pidfd, which the result holds after the start: -1 where the kernel gives
// none.
//
// It also has the clone share this process's table of open files
// (CLONE_FILES) and the child unshare it, that is copy it, before it
// touches any (Unshareflags, which the child runs before it sets up its
// descriptors): the copy, which costs some 20 µs per 1,000 open files and
// which a worker running hundreds of tasks pays at every fork, is then
// the task's CPU time, not the worker's. (The parent is suspended until
// the child execs, vfork, as before.)
func clonePidfd(attr *syscall.SysProcAttr) *int {
	pidfd := -1
	attr.PidFD = &pidfd
	if !filesUnshareRefused.Load() {
		attr.Cloneflags |= syscall.CLONE_FILES
		attr.Unshareflags |= syscall.CLONE_FILES | testUnshareExtra
	}
	return &pidfd
}

// unshareRefused is told that a fork with attr failed: where attr shared
// the file table, it stops that for attr and reports true, so that the
// fork is tried again without it (and, should that succeed, without it
// from then on: unsharingRetried).
func unshareRefused(attr *syscall.SysProcAttr) bool {
	if attr.Cloneflags&syscall.CLONE_FILES == 0 {
		return false
	}
	attr.Cloneflags &^= syscall.CLONE_FILES
	attr.Unshareflags &^= syscall.CLONE_FILES | testUnshareExtra
	return true
}

// unsharingRetried is told whether a fork retried without sharing the
// file table (unshareRefused) succeeded: if so, no fork shares it again.
func unsharingRetried(retryOK bool) {
	if retryOK {
		filesUnshareRefused.Store(true)
	}
}

// clonedExitWatch returns a watch of the exit of a process from the pidfd
// its clone gave (clonePidfd); nil where there is none.
func clonedExitWatch(pidfd *int) *exitWatch {
	if *pidfd < 0 {
		return nil
	}
	// Non-blocking, so os.NewFile gives it to the runtime's poller (the
	// clone's pidfd is close-on-exec already).
	if _, err := unix.FcntlInt(uintptr(*pidfd), syscall.F_SETFL, syscall.O_NONBLOCK); err != nil {
		syscall.Close(*pidfd)
		return nil
	}
	return &exitWatch{f: os.NewFile(uintptr(*pidfd), "pidfd")}
}

// sysPidfdOpen is pidfd_open(2) (Linux 5.3), the same number on every
// architecture.
const sysPidfdOpen = 434

// pPIDFD is waitid's P_PIDFD id type (Linux 5.4).
const pPIDFD = 3

// exitWatch tells when a child has exited through a pidfd that the Go
// runtime polls, so that no thread blocks in waitid meanwhile: with
// hundreds of tasks running, a blocked thread each cost the worker more
// CPU than anything else it did for them (the runtime hands each blocked
// thread's processor on, and wakes for each exit; docs/benchmarks.md).
type exitWatch struct {
	f *os.File
}

// watchExit returns a watch of the exit of pid, a child not yet reaped;
// nil where there is no pidfd to poll.
func watchExit(pid int) *exitWatch {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), syscall.O_NONBLOCK, 0)
	if errno != 0 {
		return nil
	}
	syscall.CloseOnExec(int(fd))
	// Non-blocking, so os.NewFile gives it to the runtime's poller.
	return &exitWatch{f: os.NewFile(fd, "pidfd")}
}

// wait blocks, without holding a thread, until the process has exited; it
// does not reap it.
func (e *exitWatch) wait() error {
	rc, err := e.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		var info [128]byte // siginfo_t; si_signo, first, is SIGCHLD once it has exited
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPIDFD, fd,
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT|syscall.WNOHANG, 0, 0)
		for errno == syscall.EINTR {
			_, _, errno = syscall.Syscall6(syscall.SYS_WAITID, pPIDFD, fd,
				uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT|syscall.WNOHANG, 0, 0)
		}
		switch errno {
		case 0:
			return *(*int32)(unsafe.Pointer(&info[0])) != 0
		case syscall.EAGAIN:
			return false // not yet: the exit makes the pidfd readable
		default:
			werr = errno
			return true
		}
	})
	if err != nil {
		return err
	}
	return werr
}

// close closes the pidfd.
func (e *exitWatch) close() { e.f.Close() }
