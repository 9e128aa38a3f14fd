package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// outputs are where a run's stdout and stderr go and the buffers that keep
// their tails: a pipe of the run's own per stream, as a command expects
// (reopening /dev/stderr opens the same pipe). No pipe outlives its run, so
// nothing a process of one run writes can reach another run's result.
//
// No goroutine per run reads them, and the runtime's poller does not watch
// them: while the run lasts, the one drainer of the process (drains) reads
// whatever a pipe holds as it arrives; once the run's processes are gone
// (or killed), the run takes its pipes back from the drainer and reads
// what is left without waiting (collect): there is no end of file to wait
// for, so a process that left the run's group and cell and still holds a
// pipe keeps nothing waiting; what it writes after that is not kept.
type outputs struct {
	streams [2]stream // stdout, stderr
	// w are the write ends, for the command; -1 once closed. This process
	// keeps them open until collect, so that no pipe ends (no EPOLLHUP)
	// while the drainer watches it: else the drainer would wake for the
	// end of each pipe of each run, output or not, two thread wake-ups
	// per short task; the two descriptors cost the forks nothing, as the
	// file table is copied by the child (clonePidfd).
	w [2]int
	// detached: the drainer no longer reads the pipes (detach).
	detached bool
}

// stream is one output pipe's read end and the tail kept of it.
type stream struct {
	fd  int // the read end, non-blocking; -1 once closed
	buf *tailBuffer
	// watched: the drainer reads it (guarded by drains.mu).
	watched bool
}

// openOutputs makes the outputs of a run that keeps limit bytes of each
// stream, and has the drainer read them.
func openOutputs(limit int) (*outputs, error) {
	d, err := theDrainer()
	if err != nil {
		return nil, err
	}
	o := &outputs{w: [2]int{-1, -1}}
	for i := range o.streams {
		s := &o.streams[i]
		s.fd, s.buf = -1, newTailBuffer(limit)
		var p [2]int
		if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
			o.close()
			return nil, os.NewSyscallError("pipe2", err)
		}
		s.fd, o.w[i] = p[0], p[1]
		// The command's end blocks, as a command expects of its stdout.
		if _, err := unix.FcntlInt(uintptr(p[1]), syscall.F_SETFL, 0); err != nil {
			o.close()
			return nil, os.NewSyscallError("fcntl", err)
		}
	}
	if err := d.watch(&o.streams[0], &o.streams[1]); err != nil {
		o.close()
		return nil, err
	}
	return o, nil
}

// files returns the descriptors the command's stdout and stderr get.
func (o *outputs) files() (stdout, stderr int) { return o.w[0], o.w[1] }

// started is told whether the command started: if not, the pipes are
// closed.
func (o *outputs) started(ok bool) {
	if !ok {
		o.close()
	}
}

// detach takes the pipes back from the drainer, under its lock once: from
// then on only the run reads them. It reads nothing itself.
func (o *outputs) detach() {
	if o.detached {
		return
	}
	o.detached = true
	drains.mu.Lock()
	defer drains.mu.Unlock()
	for i := range o.streams {
		drains.unwatchLocked(&o.streams[i])
	}
}

// collect returns what the run wrote, once its processes are gone (or
// killed): the tail of each stream and whether earlier bytes were
// dropped. It reads what the pipes hold without waiting, and closes them.
func (o *outputs) collect() (stdout, stderr []byte, outTrunc, errTrunc bool) {
	o.detach()
	o.closeWrites() // a pipe that no other process holds now ends
	for i := range o.streams {
		s := &o.streams[i]
		if s.fd >= 0 {
			s.buf.ReadFrom(&pipeReader{fd: s.fd, left: -1})
		}
	}
	o.close()
	out, errs := o.streams[0].buf, o.streams[1].buf
	return out.Bytes(), errs.Bytes(), out.Truncated(), errs.Truncated()
}

// close closes every pipe end still open, once the drainer no longer
// reads them (detach, unless collect did).
func (o *outputs) close() {
	o.detach()
	for i := range o.streams {
		if s := &o.streams[i]; s.fd >= 0 {
			syscall.Close(s.fd)
			s.fd = -1
		}
	}
	o.closeWrites()
}

// closeWrites closes the write ends that the worker still holds.
func (o *outputs) closeWrites() {
	for i, fd := range o.w {
		if fd >= 0 {
			syscall.Close(fd)
			o.w[i] = -1
		}
	}
}

// drainer reads every watched output pipe of the process as data arrives,
// from one goroutine waiting on one epoll set (a pollSet, itself parked
// in the runtime's poller: no thread blocked in epoll_wait), not a
// goroutine per pipe in the runtime's poller (whose registration, wake-ups
// and goroutines were a tenth of the worker's CPU per short task:
// docs/benchmarks.md, capacity, eighth part). Pipes are watched
// level-triggered: per wake-up the drainer reads each ready pipe until a
// read comes back short (the pipe held no more then; new data wakes the
// drainer again) or drainBudget bytes were read, so that one chatty task
// cannot hold the others up.
type drainer struct {
	set *pollSet
	mu  sync.Mutex
	// streams are the watched pipes by read end (guarded by mu): an event
	// for a descriptor not here (taken back meanwhile) is ignored.
	streams map[int32]*stream
}

// drainBudget bounds what the drainer reads from one pipe per wake-up.
const drainBudget = 64 << 10

// drains is the process's drainer, once theDrainer made it.
var (
	drains      drainer
	drainsReady kept[*drainer]
)

// theDrainer starts the drainer the first time it is called, and returns
// it; an error if it has no epoll instance, and the next call tries again
// (its goroutine starts once, with its epoll instance).
func theDrainer() (*drainer, error) {
	return drainsReady.get(func() (*drainer, error) {
		set, err := newPollSet()
		if err != nil {
			return nil, fmt.Errorf("the output drainer's epoll set: %w", err)
		}
		drains.set, drains.streams = set, make(map[int32]*stream)
		go drains.run() // exits only with the process: it serves every run's outputs
		return &drains, nil
	})
}

// watch has the drainer read ss (a run's two streams: its lock is taken
// once per run, not once per stream). Where one cannot be watched, those
// before it stay watched until the outputs are closed (detach).
func (d *drainer) watch(ss ...*stream) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range ss {
		d.streams[int32(s.fd)] = s
		if err := d.set.add(s.fd); err != nil {
			delete(d.streams, int32(s.fd))
			return err
		}
		s.watched = true
	}
	return nil
}

// unwatchLocked stops the drainer reading s, if it does.
func (d *drainer) unwatchLocked(s *stream) {
	if !s.watched {
		return
	}
	s.watched = false
	delete(d.streams, int32(s.fd))
	d.set.del(s.fd)
}

func (d *drainer) run() {
	var ready []int
	for {
		var err error
		ready, err = d.set.wait(time.Time{}, ready[:0])
		if err != nil {
			// Only a bad epoll descriptor or buffer fails here: a bug, and
			// every run writing more than a pipe holds would hang.
			panic("sandbox: the output drainer's wait failed: " + err.Error())
		}
		d.mu.Lock()
		for _, fd := range ready {
			s := d.streams[int32(fd)]
			if s == nil {
				continue
			}
			if _, err := s.buf.ReadFrom(&pipeReader{fd: s.fd, left: drainBudget}); err != errAgain {
				// End of file (every writer is gone) or a failed read:
				// nothing more to wait for.
				d.unwatchLocked(s)
			}
		}
		d.mu.Unlock()
	}
}

// errAgain is what a pipeReader returns once the pipe is empty for now, or
// its budget is spent.
var errAgain = errors.New("sandbox: no more output for now")

// pipeReader reads a non-blocking pipe until it is empty (errAgain), at
// end of file (io.EOF), or once left bytes were read (unless left < 0).
//
// A read that returns less than asked for emptied the pipe (a pipe's read
// stops short only once it is empty, or where a write raced it), so the
// next Read returns errAgain without a system call: the read that would
// say EAGAIN is spared. For the drainer, a byte left or written meanwhile
// wakes it again (level-triggered); for
// collect, once the run's processes are gone or killed, only a process
// still alive can write meanwhile, and what it writes from then on is not
// kept, with or without that read. The state is the reader's, not the
// stream's: each ReadFrom (the drainer's per wake-up, collect's) makes a
// new one and reads at least once.
type pipeReader struct {
	fd    int
	left  int
	empty bool // the last read stopped short: the pipe was empty
}

func (r *pipeReader) Read(p []byte) (int, error) {
	if r.left == 0 || r.empty {
		return 0, errAgain
	}
	if r.left > 0 && len(p) > r.left {
		p = p[:r.left]
	}
	for {
		n, err := syscall.Read(r.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errAgain
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		if r.left > 0 {
			r.left -= n
		}
		r.empty = n < len(p)
		return n, nil
	}
}
