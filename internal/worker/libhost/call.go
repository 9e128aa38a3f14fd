package libhost

import (
	"context"
	"fmt"
	"slices"
	"time"

	"trellis/sdk/go/library/wire"
)

// callState is where a call is; it changes under Host.mu.
type callState int

const (
	waiting   callState = iota // in Host.waiting, without a slot
	queued                     // holds a slot; in Host.queue, not yet taken by writeLoop
	sent                       // taken by writeLoop: the library has, or will have, it
	abandoned                  // the caller gave up after it was sent; awaiting the library's answer
	answered                   // its outcome is in res, or will be at once
)

// directWriteMax bounds the arguments of a call that writes its own frame:
// far below a pipe's buffer.
const directWriteMax = 16 << 10

// call is one call from Call until the library answers it or dies.
type call struct {
	id       uint64
	fn       string
	dir      string
	key      string // idempotency key, for the library
	args     []byte
	timeout  time.Duration
	deadline time.Time    // zero without a time limit
	res      chan outcome // buffered: the one outcome

	// Guarded by Host.mu.
	state      callState
	cancelDue  time.Time // for an abandoned call: when the library must have answered
	cancelSent bool
}

// outcome is a result frame, or the error of a dead host.
type outcome struct {
	hdr      wire.Header
	body     []byte
	stopping bool // Stop had been called when the result arrived
	err      error
}

// outFrame is a frame for writeLoop: a call or its cancel.
type outFrame struct {
	c      *call
	cancel bool
}

// Call sends one call and waits for its result.
//
// With Slots calls already in the library, Call waits in line for a slot
// (first come, first served). timeout, when positive, is the call's time
// limit, counted from the start of Call, waiting included; the time left
// when the call is sent is passed to the library as timeout_ms.
//
// Errors: a *CallError when the function failed; an error matching
// ErrTimeout when the time limit passed, or ErrCancelled (and ctx's error)
// when ctx ended, in both cases after sending the library a cancel if it had
// the call; an *ExitError when the library died (Kind ErrCrashed,
// ErrUnresponsive, ErrResourceExceeded, ErrProtocol or ErrStopped);
// ErrUnknownFunction when the library did not announce fn. When the library
// does not answer a cancelled call within Spec.CancelGrace, the host kills
// it, and the calls still in flight fail with ErrUnresponsive.
//
// Call does not modify args; it may still be writing them to the library
// when it returns early because of ctx or the time limit, so the caller must
// not modify them either.
func (h *Host) Call(ctx context.Context, fn string, args []byte, timeout time.Duration) ([]byte, error) {
	return h.CallIn(ctx, "", "", fn, args, timeout)
}

// CallIn is Call for a call with its own directory (absolute; "" for
// none), which the library is told of: its input files are there, its
// outputs go there; and with its idempotency key ("" for none), which the
// library's functions read from their context.
func (h *Host) CallIn(ctx context.Context, dir, key, fn string, args []byte, timeout time.Duration) ([]byte, error) {
	if !h.fnSet[fn] {
		return nil, fmt.Errorf("%w %q", ErrUnknownFunction, fn)
	}
	if len(args) > wire.MaxBody {
		return nil, fmt.Errorf("libhost: call %s: arguments of %d bytes are over the limit of %d", fn, len(args), wire.MaxBody)
	}
	if ctx.Err() != nil {
		return nil, cancelled(ctx)
	}
	c := &call{fn: fn, dir: dir, key: key, args: args, res: make(chan outcome, 1)}
	var expired <-chan time.Time
	if timeout > 0 {
		c.timeout = timeout
		c.deadline = time.Now().Add(timeout)
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	h.mu.Lock()
	if h.dead != nil || h.stopping {
		h.mu.Unlock()
		return nil, h.refusal()
	}
	h.nextID++
	c.id = h.nextID
	h.calls[c.id] = c
	send := h.inFlight < h.spec.Slots
	// A lone call writes its own frame: waking writeLoop would cost a
	// hand-off between threads, a good part of a short call's latency.
	// Only when no other call is in the library (its input pipe is then
	// drained, so the write cannot block) and the frame is small.
	direct := send && h.inFlight == 0 && len(h.queue) == 0 && len(args) <= directWriteMax && h.wmu.TryLock()
	switch {
	case direct:
		h.inFlight++
		c.state = sent
	case send:
		h.inFlight++
		c.state = queued
		h.queue = append(h.queue, outFrame{c: c})
	default:
		c.state = waiting
		h.waiting = append(h.waiting, c)
	}
	h.mu.Unlock()
	switch {
	case direct:
		err := wire.WriteFrame(h.bw, &wire.Header{Type: wire.TypeCall, ID: c.id, Fn: c.fn, Dir: c.dir, Key: c.key, TimeoutMS: c.timeoutMS(time.Now())}, c.args)
		if err == nil {
			err = h.bw.Flush()
		}
		h.wmu.Unlock()
		if err != nil {
			h.kill(ErrCrashed, "write to library: "+err.Error())
		}
	case send:
		signal(h.wake)
	}

	select {
	case o := <-c.res:
		return c.result(o)
	case <-ctx.Done():
		return h.abandon(c, cancelled(ctx))
	case <-expired:
		return h.abandon(c, fmt.Errorf("%w after %v", ErrTimeout, timeout))
	}
}

// releaseLocked frees a slot and gives it to the first waiting call, which
// it queues for writeLoop; it reports whether it did, and so whether
// writeLoop must be woken.
func (h *Host) releaseLocked() bool {
	h.inFlight--
	if len(h.waiting) == 0 || h.dead != nil {
		return false
	}
	c := h.waiting[0]
	h.waiting[0] = nil
	h.waiting = h.waiting[1:]
	h.inFlight++
	c.state = queued
	h.queue = append(h.queue, outFrame{c: c})
	return true
}

// cancelled is the error of a call whose context ended.
func cancelled(ctx context.Context) error {
	return fmt.Errorf("%w: %w", ErrCancelled, context.Cause(ctx))
}

// refusal is the error for a call on a stopped or dead host.
func (h *Host) refusal() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, h.dead)
	}
	return fmt.Errorf("%w: %w", ErrNotSent, ErrStopped)
}

// abandon gives up on c with err: a call not yet sent is dropped (freeing
// its slot, if it had one); one the library has is cancelled, and
// superviseLoop kills the library if it has not answered within
// CancelGrace; abandon returns once it has answered or died. A call
// answered before abandon returns its result.
func (h *Host) abandon(c *call, err error) ([]byte, error) {
	h.mu.Lock()
	switch c.state {
	case waiting:
		c.state = abandoned
		delete(h.calls, c.id)
		if i := slices.Index(h.waiting, c); i >= 0 {
			h.waiting = slices.Delete(h.waiting, i, i+1)
		}
		h.mu.Unlock()
		return nil, err
	case queued:
		c.state = abandoned
		delete(h.calls, c.id) // writeLoop skips it
		wake := h.releaseLocked()
		h.mu.Unlock()
		if wake {
			signal(h.wake)
		}
		return nil, err
	case sent:
		c.state = abandoned
		c.cancelDue = time.Now().Add(h.spec.CancelGrace)
		h.queue = append(h.queue, outFrame{c: c, cancel: true})
		h.mu.Unlock()
		signal(h.wake)
		signal(h.poke)
		// The call holds its slot until the library answers the cancel or
		// is killed: return only then, so that whoever counts slots from
		// outside (the manager's scheduler) never counts it free too soon.
		<-c.res
		return nil, err
	default: // answered: the outcome is in c.res
		h.mu.Unlock()
		return c.result(<-c.res)
	}
}

// result turns an outcome into Call's return values.
func (c *call) result(o outcome) ([]byte, error) {
	h := &o.hdr
	switch {
	case o.err != nil:
		return nil, o.err
	case h.OK:
		return o.body, nil
	case h.Cancelled && o.stopping:
		return nil, ErrStopped
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		// The library's own deadline (started later than ours) fired first.
		return nil, fmt.Errorf("%w after %v: %s", ErrTimeout, c.timeout, h.Error)
	}
	msg := h.Error
	if msg == "" {
		msg = "function failed"
		if h.Cancelled {
			msg = "cancelled by the library"
		}
	}
	return nil, &CallError{Message: msg, Traceback: h.Traceback}
}

// timeoutMS is the time limit to send with c: what is left of it, rounded
// up to a millisecond; 0 for none.
func (c *call) timeoutMS(now time.Time) int64 {
	if c.deadline.IsZero() {
		return 0
	}
	return max(1, int64((c.deadline.Sub(now)+time.Millisecond-1)/time.Millisecond))
}
