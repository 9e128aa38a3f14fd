package library

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"trellis/internal/sysmon"
	"trellis/sdk/go/library/wire"
)

// Bounds on what a result header carries, so that it stays under
// wire.MaxHeader however long an error message is.
const (
	maxErrorText = 16 << 10
	maxTraceback = 32 << 10
)

// ioBuffer is the size of the buffered reader and writer.
const ioBuffer = 64 << 10

// ServeIO speaks the protocol on r and w: it runs the set-up step, writes the
// handshake, and serves calls until r ends (nil) or carries a malformed
// frame (an error). Cancelling ctx cancels the running calls, but ServeIO
// still returns only when r ends. Use it in tests; Serve uses the process's
// standard input and output.
func (l *Library) ServeIO(ctx context.Context, r io.Reader, w io.Writer) error {
	if err := checkProtocol(); err != nil {
		return err
	}
	// The worker may start a library with the Go runtime monitor's setting
	// in GODEBUG (it keeps the monitor out of the deep sleep between
	// calls); what the library starts sees GODEBUG as the library was given it.
	sysmon.Restore()
	if l.setup != nil {
		if err := l.setup(ctx); err != nil {
			return fmt.Errorf("set-up: %w", err)
		}
	}
	line, err := wire.FormatHandshake(wire.Handshake{Version: wire.Version, Name: l.name, Functions: l.order})
	if err != nil {
		return err
	}
	s := &server{
		lib:       l,
		sem:       make(chan struct{}, slotsFromEnv()),
		bw:        bufio.NewWriterSize(w, ioBuffer),
		calls:     make(map[uint64]*call),
		followers: make(chan struct{}),
		ended:     make(chan struct{}),
	}
	s.bw.WriteString(line)
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}

	// Calls derive from a context that nothing cancels, so that starting
	// one registers nothing with a parent; ServeIO cancels them itself.
	base := context.WithValue(context.WithoutCancel(ctx), serverKey{}, s)
	abandoned := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { // exits after abandonAll; waited for below
		defer close(abandoned)
		s.abandonAll()
	})
	defer func() {
		if !stop() {
			<-abandoned
		}
	}()
	var wg sync.WaitGroup
	readErr := make(chan error, 1)
	wg.Add(1)
	go s.readLoop(ctx, base, bufio.NewReaderSize(r, ioBuffer), &wg, readErr) // exits when r has ended and it is done with its call
	err = <-readErr
	// The input ended (or broke): abandon the running calls, which answer
	// as cancelled into a writer that may be gone, and wait for them.
	s.abandonAll()
	wg.Wait()
	s.wmu.Lock()
	werr := s.werr
	s.wmu.Unlock()
	if err == nil && werr != nil {
		err = fmt.Errorf("write to worker: %w", werr)
	}
	return err
}

// server is the state of one ServeIO.
type server struct {
	lib *Library
	sem chan struct{} // one token per running call

	mu    sync.Mutex       // guards calls
	calls map[uint64]*call // running or waiting calls by id

	// followers hands the reading to a goroutine that waits for it, done
	// with its call (readLoop); ended is closed once the input has ended.
	followers chan struct{}
	ended     chan struct{}

	pending atomic.Int32  // goroutines that want wmu to write a frame
	wmu     sync.Mutex    // guards bw, werr
	bw      *bufio.Writer // frames to the worker
	werr    error         // the first write error; later writes are skipped
}

// call is one call in flight in the library.
type call struct {
	cancel    context.CancelFunc
	cancelled atomic.Bool // the worker sent cancel
}

// abandonAll cancels every running call, which is then answered as
// cancelled.
func (s *server) abandonAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		c.cancelled.Store(true)
		c.cancel()
	}
}

// readLoop reads frames until r ends, and reports nil at the end of r, or
// an error for a malformed or unexpected frame, on done. Calls that start
// once ctx is done are cancelled at once. It runs counted in wg.
//
// A goroutine that reads a call runs it itself, after handing the reading
// on to another (leader and followers): the call starts with no hand-off
// between threads, which is most of a short call's latency. The reading
// goes to a goroutine done with its call that waits for it, or else to a
// new one; a goroutine done with its call waits to read again until the
// input ends. (A new goroutine per call cost a library a fifth of its CPU
// growing its stack, docs/benchmarks.md, "Direct calls: CPU per call".)
func (s *server) readLoop(ctx, base context.Context, r *bufio.Reader, wg *sync.WaitGroup, done chan<- error) {
	defer wg.Done()
	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			if err == io.EOF {
				err = nil
			} else {
				err = fmt.Errorf("read from worker: %w", err)
			}
			close(s.ended) // the followers waiting to read exit
			done <- err
			return
		}
		h := &f.Header
		switch h.Type {
		case wire.TypeCall:
			fn, ok := s.lib.funcs[h.Fn]
			if !ok {
				s.send(&wire.Header{Type: wire.TypeResult, ID: h.ID, Error: fmt.Sprintf("unknown function %q", h.Fn)}, nil)
				continue
			}
			cctx, cancel := callContext(base, h.TimeoutMS)
			if h.Dir != "" {
				cctx = context.WithValue(cctx, dirKey{}, h.Dir)
			}
			if h.Key != "" {
				cctx = context.WithValue(cctx, keyKey{}, h.Key)
			}
			c := &call{cancel: cancel}
			s.mu.Lock()
			_, dup := s.calls[h.ID]
			if !dup {
				s.calls[h.ID] = c
			}
			s.mu.Unlock()
			if dup {
				cancel()
				close(s.ended)
				done <- fmt.Errorf("read from worker: call id %d is already in flight", h.ID)
				return
			}
			if ctx.Err() != nil { // abandonAll may have run before the call was added
				c.cancelled.Store(true)
				cancel()
			}
			select {
			case s.followers <- struct{}{}: // a goroutine done with its call reads next
			default:
				wg.Add(1)
				go s.readLoop(ctx, base, r, wg, done) // the next reader; exits when r has ended and it is done with its call
			}
			s.run(cctx, h.ID, c, fn, f.Body)
			select {
			case <-s.followers: // the reading is handed to this one
			case <-s.ended:
				return
			}
		case wire.TypeCancel:
			s.mu.Lock()
			c := s.calls[h.ID]
			s.mu.Unlock()
			if c != nil { // else it has finished already
				c.cancelled.Store(true)
				c.cancel()
			}
		default:
			// Frame types from later protocol versions are ignored.
		}
	}
}

// callContext returns the context of one call.
func callContext(ctx context.Context, timeoutMS int64) (context.Context, context.CancelFunc) {
	if timeoutMS > 0 {
		return context.WithTimeout(ctx, time.Duration(timeoutMS)*time.Millisecond)
	}
	return context.WithCancel(ctx)
}

// run waits for a slot, runs the call and sends its result.
func (s *server) run(ctx context.Context, id uint64, c *call, fn Func, args []byte) {
	var body []byte
	var err error
	select {
	case s.sem <- struct{}{}:
		body, err = invoke(ctx, fn, args)
		<-s.sem
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	c.cancel()
	s.mu.Lock()
	delete(s.calls, id)
	s.mu.Unlock()

	h := wire.Header{Type: wire.TypeResult, ID: id}
	switch {
	case c.cancelled.Load():
		h.Cancelled, h.Error, body = true, "cancelled", nil
	case err != nil:
		h.Error, body = truncate(err.Error(), maxErrorText), nil
		var pe *panicError
		if errors.As(err, &pe) {
			h.Traceback = truncate(pe.stack, maxTraceback)
		}
		if h.Error == "" {
			h.Error = "error"
		}
	case len(body) > wire.MaxBody:
		h.Error = fmt.Sprintf("result of %d bytes is over the limit of %d", len(body), wire.MaxBody)
		body = nil
	default:
		h.OK = true
	}
	s.send(&h, body)
}

// panicError is a recovered panic.
type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// invoke calls fn, turning a panic into a *panicError.
func invoke(ctx context.Context, fn Func, args []byte) (body []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			body, err = nil, &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	return fn(ctx, args)
}

// send writes one frame. The writer is flushed by the last of a burst of
// concurrent senders: one that finds no other sender waiting.
func (s *server) send(h *wire.Header, body []byte) {
	s.pending.Add(1)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr == nil {
		s.werr = wire.WriteFrame(s.bw, h, body)
	}
	if s.pending.Add(-1) == 0 && s.werr == nil {
		s.werr = s.bw.Flush()
	}
}

// truncate cuts s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "... (truncated)"
}

// serverKey keys the *server in a call's context.
type serverKey struct{}

// dirKey keys a call's directory in its context.
type dirKey struct{}

// Dir returns the absolute path of the call's own directory: its input
// files are there, at the paths the caller gave, and the output files it
// declared must be written there. It is "" for a call without files.
func Dir(ctx context.Context) string {
	d, _ := ctx.Value(dirKey{}).(string)
	return d
}

// keyKey keys a call's idempotency key in its context.
type keyKey struct{}

// IdempotencyKey returns the call's idempotency key, "SESSION/KEY": the
// same for every attempt of the call (a retry after a crash, a manager's
// restart with --state), so that a function with an external effect can
// apply it once per key. It is "" outside a call, or from a worker that
// gives none.
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(keyKey{}).(string)
	return k
}

// Log sends msg to the worker as a log frame when ctx is a call's context,
// and writes it to stderr otherwise.
func Log(ctx context.Context, msg string) {
	s, _ := ctx.Value(serverKey{}).(*server)
	if s == nil {
		fmt.Fprintln(os.Stderr, msg)
		return
	}
	s.send(&wire.Header{Type: wire.TypeLog, Msg: truncate(msg, maxErrorText)}, nil)
}
