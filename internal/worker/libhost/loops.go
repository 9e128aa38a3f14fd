package libhost

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"trellis/internal/worker/sandbox"
	"trellis/sdk/go/library/wire"
)

// ioBuffer is the size of the buffered reader and writer on the pipes.
const ioBuffer = 64 << 10

// waitLoop waits for the process to exit, kills what is left of its group,
// reaps it, waits for readLoop, then fails the calls still in flight and
// closes done. It exits after that; it is the last goroutine to finish.
func (h *Host) waitLoop() {
	if h.child.WaitExited() == nil {
		// The leader is a zombie: the group id cannot be reused until the
		// Wait below, and kill refuses from now on.
		h.mu.Lock()
		h.child.Kill()
		h.reaped, h.stoppedFirst = true, h.stopping
		h.mu.Unlock()
		close(h.exited)
		_ = h.child.Wait() // waits for stderr too, at most ioGrace
	} else {
		_ = h.child.Wait() // kills the group after the reap, as sandbox.Run does off Linux
		h.mu.Lock()
		h.reaped, h.stoppedFirst = true, h.stopping
		h.mu.Unlock()
		close(h.exited)
	}
	// Results written just before the exit are still in the pipe.
	t := time.NewTimer(ioGrace)
	select {
	case <-h.readerDone:
	case <-t.C:
		h.stdout.Close() // a process that left the group holds the pipe
		<-h.readerDone
	}
	t.Stop()
	h.stdout.Close()
	h.stdin.Close() // unblocks writeLoop should an escaped process hold the pipe

	status := exitStatus(h.cmd.ProcessState)
	stderr := errorTail(h.stderr.Bytes())
	h.mu.Lock()
	e := &ExitError{Kind: h.killKind, Reason: h.killWhy, Status: status, Stderr: stderr}
	switch {
	case !h.started:
		e.Kind = ErrStartFailed
		if e.Reason == "" {
			e.Reason = "exited before its handshake"
		}
	case e.Kind != nil:
	case h.stoppedFirst:
		e.Kind = ErrStopped
	default:
		e.Kind = ErrCrashed
	}
	h.dead = e
	calls := h.calls
	h.calls, h.queue, h.waiting = nil, nil, nil
	var failed, unsent []*call
	for _, c := range calls {
		if c.state == waiting || c.state == queued {
			unsent = append(unsent, c)
		} else {
			failed = append(failed, c) // abandoned ones too: abandon waits for it
		}
		c.state = answered
	}
	h.mu.Unlock()
	for _, c := range failed {
		c.res <- outcome{err: e}
	}
	for _, c := range unsent {
		c.res <- outcome{err: fmt.Errorf("%w: %w", ErrNotSent, e)}
	}
	close(h.done)
}

// readLoop reads the handshake, reports it on ready, then reads frames until
// the library's stdout ends, breaks, or carries a malformed frame (then it
// kills the library). It exits then.
func (h *Host) readLoop() {
	defer close(h.readerDone)
	r := bufio.NewReaderSize(h.stdout, ioBuffer)
	hs, err := wire.ReadHandshake(r)
	if err != nil {
		switch {
		case errors.Is(err, wire.ErrHandshake):
			h.kill(ErrStartFailed, err.Error())
		case err != io.EOF:
			h.kill(ErrStartFailed, "read handshake: "+err.Error())
		}
		h.ready <- err
		return
	}
	h.fns = hs.Functions
	h.fnSet = make(map[string]bool, len(hs.Functions))
	for _, fn := range hs.Functions {
		h.fnSet[fn] = true
	}
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
	h.ready <- nil

	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			var me *wire.MalformedError
			switch {
			case errors.As(err, &me):
				h.kill(ErrProtocol, me.Reason)
			case err == io.EOF:
			default: // the pipe was closed after the process exited
			}
			return
		}
		if !h.handle(&f) {
			return
		}
	}
}

// handle acts on one frame from the library. It returns false after a
// protocol error.
func (h *Host) handle(f *wire.Frame) bool {
	switch f.Header.Type {
	case wire.TypeResult:
		id := f.Header.ID
		h.mu.Lock()
		c := h.calls[id]
		if c == nil || c.state == waiting || c.state == queued {
			h.mu.Unlock()
			h.kill(ErrProtocol, fmt.Sprintf("result for unknown call id %d", id))
			return false
		}
		delete(h.calls, id)
		c.state = answered
		stopping := h.stopping
		wake := h.releaseLocked()
		h.mu.Unlock()
		if wake {
			signal(h.wake)
		}
		c.res <- outcome{hdr: f.Header, body: f.Body, stopping: stopping} // an abandoned call's abandon waits for it
	case wire.TypeLog:
		if h.spec.OnLog != nil {
			h.spec.OnLog(f.Header.Msg)
		} else {
			h.stderr.Write([]byte("log: " + f.Header.Msg + "\n"))
		}
	default:
		// Frame types from later protocol versions are ignored.
	}
	return true
}

// writeLoop writes queued frames, flushing when the queue is empty, until
// Stop is called (then it closes stdin, the library's signal to exit), a
// write fails (then it kills the library), or the host is done.
func (h *Host) writeLoop() {
	defer func() {
		h.wmu.Lock() // a call writing its own frame finishes first
		h.stdin.Close()
		h.wmu.Unlock()
	}()
	var batch []outFrame
	for {
		select {
		case <-h.wake:
		case <-h.done:
			return
		}
		// Calls often come in bursts (a batch of them from the manager):
		// let the other callers queue theirs, and write them all at once.
		runtime.Gosched()
		h.mu.Lock()
		if h.stopping {
			// Frames not yet written stay unsent: their calls fail with
			// ErrStopped once the library has exited.
			h.mu.Unlock()
			return
		}
		batch, h.queue = h.queue, batch[:0]
		for i := range batch {
			f := &batch[i]
			switch {
			case f.cancel:
				if f.c.cancelSent || f.c.state != abandoned {
					f.c = nil // answered meanwhile
				}
				if f.c != nil {
					f.c.cancelSent = true
				}
			case f.c.state == queued:
				f.c.state = sent
			default:
				f.c = nil // abandoned before it was sent
			}
		}
		h.wmu.Lock() // held by a call writing its own small frame, if at all
		h.mu.Unlock()
		w := h.bw
		now := time.Now()
		for _, f := range batch {
			if f.c == nil {
				continue
			}
			var err error
			if f.cancel {
				err = wire.WriteFrame(w, &wire.Header{Type: wire.TypeCancel, ID: f.c.id}, nil)
			} else {
				err = wire.WriteFrame(w, &wire.Header{Type: wire.TypeCall, ID: f.c.id, Fn: f.c.fn, Dir: f.c.dir, Key: f.c.key, TimeoutMS: f.c.timeoutMS(now)}, f.c.args)
			}
			if err != nil {
				h.wmu.Unlock()
				h.kill(ErrCrashed, "write to library: "+err.Error())
				return
			}
		}
		clear(batch) // drop the references to arguments
		err := w.Flush()
		h.wmu.Unlock()
		if err != nil {
			h.kill(ErrCrashed, "write to library: "+err.Error())
			return
		}
	}
}

// superviseLoop samples the group's memory, kills the library when a
// cancelled call has not answered within CancelGrace, and kills it when its
// output ended but it did not exit. It exits when the process has exited.
func (h *Host) superviseLoop() {
	var tick <-chan time.Time
	var mem *sandbox.GroupMemory
	if h.spec.MemoryMB > 0 {
		t := time.NewTicker(h.spec.PollInterval)
		defer t.Stop()
		tick = t.C
		mem = sandbox.NewGroupMemory(h.pgid)
		defer mem.Close()
	}
	limit := mbToBytes(h.spec.MemoryMB)
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	var eof <-chan time.Time
	readerDone := h.readerDone
	for {
		select {
		case <-h.exited:
			return
		case <-tick:
			if rss := mem.RSS(); rss > limit {
				h.kill(ErrResourceExceeded, fmt.Sprintf("resident memory %d MB exceeded the limit of %d MB", ceilMB(rss), h.spec.MemoryMB))
				tick = nil
			}
			continue
		case <-readerDone:
			readerDone = nil
			t := time.NewTimer(ioGrace)
			defer t.Stop()
			eof = t.C
			continue
		case <-eof:
			h.kill(ErrCrashed, "closed its standard output")
			continue
		case <-h.poke:
		case <-grace.C:
		}
		if c, next := h.overdue(time.Now()); c != nil {
			h.kill(ErrUnresponsive, fmt.Sprintf("call %d (%s) did not stop within %v of its cancel", c.id, c.fn, h.spec.CancelGrace))
		} else if !next.IsZero() {
			grace.Reset(time.Until(next))
		}
	}
}

// overdue returns an abandoned call whose grace has passed, or else the
// earliest grace deadline still to come (zero if none).
func (h *Host) overdue(now time.Time) (*call, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var next time.Time
	for _, c := range h.calls {
		if c.state != abandoned {
			continue
		}
		if !now.Before(c.cancelDue) {
			return c, time.Time{}
		}
		if next.IsZero() || c.cancelDue.Before(next) {
			next = c.cancelDue
		}
	}
	return nil, next
}
