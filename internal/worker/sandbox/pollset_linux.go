package sandbox

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollSet is an epoll set whose own descriptor is given to the Go
// runtime's poller, so that a goroutine waits on it (wait) parked in the
// poller, with a deadline where it needs one, and no thread blocked in
// epoll_wait: a thread blocked in a system call costs the runtime a hand-off
// of its processor at every wait, and a wake-up of a thread at every event
// (docs/benchmarks.md, capacity). The descriptors in it are watched
// level-triggered for reading; the set also holds an eventfd of its own
// that poke makes ready, to end a wait at once. One goroutine waits on a
// set at a time; add, del and poke may be called from any.
//
// Its users: the sampler's set of the v1 cells' out-of-memory eventfds,
// and the output drainer's set of the runs' pipes.
type pollSet struct {
	f    *os.File // the epoll descriptor, non-blocking; never closed
	ep   int      // f's descriptor, for epoll_ctl without the runtime's Control
	rc   syscall.RawConn
	wake int // the poking eventfd, in the set
	buf  [64]unix.EpollEvent
	// until is the read deadline set last (wait's goroutine's), so that a
	// wait with the same one, as the drainer's with none, sets none.
	until time.Time
}

// newPollSet makes an empty set; an error where it cannot, or where the
// runtime's poller will not take the epoll descriptor (no read deadline,
// so wait could neither park nor end at a deadline).
func newPollSet() (*pollSet, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(wake)
		unix.Close(ep)
		return nil, os.NewSyscallError("fcntl", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(wake)
		unix.Close(ep)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	f := os.NewFile(uintptr(ep), "epoll")
	rc, err := f.SyscallConn()
	if err == nil {
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		unix.Close(wake)
		return nil, err
	}
	return &pollSet{f: f, ep: ep, rc: rc, wake: wake}, nil
}

// add puts fd into the set, watched for reading.
func (e *pollSet) add(fd int) error {
	if err := e.ctl(unix.EPOLL_CTL_ADD, fd); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// del takes fd out of the set, before it is closed.
func (e *pollSet) del(fd int) { _ = e.ctl(unix.EPOLL_CTL_DEL, fd) }

// ctl calls epoll_ctl on the set directly: it is never closed, so the
// runtime's Control (a closure and a reference count per call, twice a
// run for the drainer) guards nothing here.
func (e *pollSet) ctl(op, fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	return unix.EpollCtl(e.ep, op, fd, &ev)
}

// poke makes the set ready, so that wait returns.
func (e *pollSet) poke() {
	var one [8]byte
	one[0] = 1 // little-endian 1; any value will do: it is drained whole
	_, _ = unix.Write(e.wake, one[:])
}

// wait waits until a descriptor in the set is readable, the set is poked,
// or until (the zero time: no deadline); it appends the readable
// descriptors (not the poking one) to ready. It reads none of them: the
// caller does, or the set stays ready for them. The error is epoll_wait's
// where it failed (a bug: a bad descriptor or buffer).
func (e *pollSet) wait(until time.Time, ready []int) ([]int, error) {
	if !until.Equal(e.until) {
		_ = e.f.SetReadDeadline(until)
		e.until = until
	}
	var werr error
	_ = e.rc.Read(func(ep uintptr) bool {
		n, err := unix.EpollWait(int(ep), e.buf[:], 0)
		for err == syscall.EINTR {
			n, err = unix.EpollWait(int(ep), e.buf[:], 0)
		}
		if err == nil && n == 0 {
			return false // nothing yet: park until the set is ready
		}
		if err != nil {
			werr = os.NewSyscallError("epoll_wait", err)
			return true
		}
		for _, ev := range e.buf[:n] {
			if int(ev.Fd) == e.wake {
				var b [8]byte
				_, _ = unix.Read(e.wake, b[:])
				continue
			}
			ready = append(ready, int(ev.Fd))
		}
		return true
	})
	return ready, werr
}
