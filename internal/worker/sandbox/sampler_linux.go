package sandbox

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// oomEvents is the sampler's epoll set of the cells' out-of-memory
// eventfds (cgroup v1), and an eventfd of its own that pokes the sampler.
// The epoll descriptor is itself given to the Go runtime's poller, so the
// sampler waits for it (and for its next due time, a read deadline)
// without a thread blocked.
type oomEvents struct {
	f    *os.File // the epoll descriptor, non-blocking
	rc   syscall.RawConn
	wake int // the poking eventfd, in the set
	buf  [32]unix.EpollEvent
}

// newOOMEvents makes the set; nil where it cannot, or where the runtime's
// poller will not take the epoll descriptor (no read deadline, so wait
// could not end at the next due time): the sampler then waits on its
// timer and samples every run.
func newOOMEvents() *oomEvents {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil
	}
	if unix.SetNonblock(ep, true) != nil || unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}) != nil {
		unix.Close(wake)
		unix.Close(ep)
		return nil
	}
	f := os.NewFile(uintptr(ep), "epoll")
	rc, err := f.SyscallConn()
	if err != nil || f.SetReadDeadline(time.Time{}) != nil {
		f.Close()
		unix.Close(wake)
		return nil
	}
	return &oomEvents{f: f, rc: rc, wake: wake}
}

// add puts the eventfd fd into the set; false where it cannot.
func (e *oomEvents) add(fd int) bool {
	return e.ctl(unix.EPOLL_CTL_ADD, fd) == nil
}

// del takes the eventfd fd out of the set, before it is closed.
func (e *oomEvents) del(fd int) { _ = e.ctl(unix.EPOLL_CTL_DEL, fd) }

func (e *oomEvents) ctl(op, fd int) error {
	var cerr error
	err := e.rc.Control(func(ep uintptr) {
		cerr = unix.EpollCtl(int(ep), op, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	})
	if err != nil {
		return err
	}
	return cerr
}

// poke makes the set ready, so that wait returns.
func (e *oomEvents) poke() {
	var one [8]byte
	one[0] = 1 // little-endian 1; any value will do: it is drained whole
	_, _ = unix.Write(e.wake, one[:])
}

// wait waits until an eventfd in the set is readable, the set is poked,
// or until; it appends the readable eventfds (not the poking one) to
// ready. It reads none of them: the caller drains each (oomNotes.count),
// or the set stays ready. The set takes deadlines (newOOMEvents).
func (e *oomEvents) wait(until time.Time, ready []int) []int {
	_ = e.f.SetReadDeadline(until)
	_ = e.rc.Read(func(ep uintptr) bool {
		n, err := unix.EpollWait(int(ep), e.buf[:], 0)
		if err != nil || n == 0 {
			return err != nil && err != syscall.EINTR && err != syscall.EAGAIN
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
	return ready
}
