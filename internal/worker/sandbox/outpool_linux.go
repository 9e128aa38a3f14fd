package sandbox

import (
	"io"
	"os"
	"sync"
	"syscall"
)

// outPool keeps the output pipes of runs in cells for reuse, and drains
// them all from one goroutine: a run that writes nothing costs no
// goroutine, no poller registration and no pipe of its own, only a read
// at its end that finds the pipe empty. (A pipe per stream and run, with
// a goroutine each to drain it to end of file, was a sixth of what the
// worker spent per short task: docs/benchmarks.md, capacity.) The pool
// holds both ends of each pipe, so no read ever sees end of file: what a
// run wrote is all in the pipe once the run's cell is empty, and the
// run's end drains it. A pipe goes back to the pool only then; one whose
// run may have left a writer (Result.Lingering) is closed.
type outPool struct {
	epfd int

	mu    sync.Mutex
	pipes map[int32]*outPipe // by read end, every pipe open
	free  []*outPipe
}

// outPipe is one pooled pipe: r, the read end, non-blocking and in the
// pool's epoll set; w, the write end, blocking, for the command.
type outPipe struct {
	r int
	w *os.File

	mu  sync.Mutex  // guards buf; held while draining
	buf *tailBuffer // the run's, while one writes to the pipe; else nil
}

// pooledOutputs is the process's pool, made at its first use; nil where
// it cannot be (Run then uses a pipe per stream and run).
var pooledOutputs = sync.OnceValue(func() *outPool {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	p := &outPool{epfd: epfd, pipes: make(map[int32]*outPipe)}
	go p.drainLoop() // exits only with the process: the pool's pipes live as long
	return p
})

// get returns a pipe that drains into buf.
func (p *outPool) get(buf *tailBuffer) (*outPipe, error) {
	p.mu.Lock()
	var op *outPipe
	if n := len(p.free); n > 0 {
		op, p.free = p.free[n-1], p.free[:n-1]
	}
	p.mu.Unlock()
	if op == nil {
		var err error
		if op, err = p.newPipe(); err != nil {
			return nil, err
		}
	}
	op.mu.Lock()
	op.buf = buf
	op.mu.Unlock()
	return op, nil
}

func (p *outPool) newPipe() (*outPipe, error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, os.NewSyscallError("fcntl", err)
	}
	op := &outPipe{r: fds[0], w: os.NewFile(uintptr(fds[1]), "|1")}
	p.mu.Lock()
	p.pipes[int32(op.r)] = op
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(op.r)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, op.r, &ev); err != nil {
		p.close(op)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return op, nil
}

// put drains what is left in op into its run's buffer and takes op back:
// for reuse, or, unless reuse, closed (a writer may be left).
func (p *outPool) put(op *outPipe, reuse bool) {
	op.mu.Lock()
	op.drainLocked()
	op.buf = nil
	op.mu.Unlock()
	if !reuse {
		p.close(op)
		return
	}
	p.mu.Lock()
	p.free = append(p.free, op)
	p.mu.Unlock()
}

// close takes op out of the pool and closes it.
func (p *outPool) close(op *outPipe) {
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, op.r, nil)
	p.mu.Lock()
	delete(p.pipes, int32(op.r))
	p.mu.Unlock()
	op.mu.Lock()
	syscall.Close(op.r)
	op.r = -1
	op.mu.Unlock()
	op.w.Close()
}

// drainLoop drains each pipe as data arrives, so that a run that writes
// more than a pipe holds is never blocked for long.
func (p *outPool) drainLoop() {
	var events [64]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, events[:], -1)
		if err != nil {
			continue // EINTR
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			op := p.pipes[ev.Fd]
			p.mu.Unlock()
			if op != nil {
				op.mu.Lock()
				op.drainLocked()
				op.mu.Unlock()
			}
		}
	}
}

// drainLocked reads all that is in the pipe now into its run's buffer, or
// drops it when no run is attached. Its caller holds op.mu.
func (op *outPipe) drainLocked() {
	if op.r < 0 {
		return
	}
	if op.buf != nil {
		if cap(op.buf.buf) == 0 {
			// Most commands write nothing: look before the buffer's first
			// allocation (a stack buffer, as the reads are direct).
			var first [minGrow]byte
			n, _ := nonBlocking(op.r).Read(first[:])
			if n == 0 {
				return
			}
			op.buf.Write(first[:n])
		}
		op.buf.ReadFrom(nonBlocking(op.r))
		return
	}
	io.Copy(io.Discard, nonBlocking(op.r))
}

// nonBlocking reads a non-blocking descriptor and reports end of file
// once it is empty (EAGAIN).
type nonBlocking int

func (fd nonBlocking) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == nil && n == 0:
			return 0, io.EOF
		case err != nil:
			return 0, err
		}
		return n, nil
	}
}
