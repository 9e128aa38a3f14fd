package trellis

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	pb "trellis/internal/proto/trellisv1"
)

// submitStream carries a client's submits to the manager on one Submits
// stream that stays open, so that a submit (the first hop of a blocking
// call) pays for no new HTTP/2 stream: no request headers, no handler
// goroutine at the manager, no response trailers. One submit at a time
// uses it; a submit that finds it in use, or whose stream broke before
// the answer, goes as a unary Submit (task keys make a resend harmless),
// as every submit does to a manager that does not serve Submits.
type submitStream struct {
	open func(ctx context.Context) *connect.BidiStreamForClient[pb.SubmitRequest, pb.SubmitResponse]
	base context.Context // the streams' context: close cancels it
	stop context.CancelFunc
	off  atomic.Bool // the manager does not serve Submits

	mu     sync.Mutex // held by the submit that uses the stream; guards stream and cancel
	stream *connect.BidiStreamForClient[pb.SubmitRequest, pb.SubmitResponse]
	cancel context.CancelFunc // ends stream
}

// maxStreamSubmit bounds the submits that go on the stream: a burst of
// large specs gains little from it, and one this small never waits for
// HTTP/2 flow control in Send, which a context's end could not interrupt.
const maxStreamSubmit = 256 << 10

func newSubmitStream(open func(ctx context.Context) *connect.BidiStreamForClient[pb.SubmitRequest, pb.SubmitResponse]) *submitStream {
	base, stop := context.WithCancel(context.Background())
	return &submitStream{open: open, base: base, stop: stop}
}

// submit sends req on the stream and returns the manager's answer. used
// is false when it did not answer: the stream was in use, is not served,
// or broke; the caller then sends req as a unary Submit. An error with
// used true is the manager's refusal (as Submit's) or ctx's end.
func (s *submitStream) submit(ctx context.Context, req *pb.SubmitRequest) (resp *pb.SubmitResponse, used bool, err error) {
	if s == nil || s.off.Load() || s.base.Err() != nil || goproto.Size(req) > maxStreamSubmit || !s.mu.TryLock() {
		return nil, false, nil
	}
	defer s.mu.Unlock()
	if s.stream == nil {
		sctx, cancel := context.WithCancel(s.base)
		s.stream, s.cancel = s.open(sctx), cancel
	}
	// ctx's end (or close) breaks the stream, which the next submit opens
	// anew: a stream's Receive cannot be given up otherwise. Cancelling the
	// stream's context alone does not end a Receive while the request
	// side is open (HTTP/2 watches the context once the request body has
	// ended), so the request side is closed too, never during Send.
	stream, cancel := s.stream, s.cancel
	var mu sync.Mutex // guards the three below
	sent, abandoned, finished := false, false, false
	abandon := func() {
		mu.Lock()
		defer mu.Unlock()
		if finished {
			return
		}
		abandoned = true
		cancel()
		if sent {
			stream.CloseRequest()
		}
	}
	watching, closing := context.AfterFunc(ctx, abandon), context.AfterFunc(s.base, abandon)
	defer watching()
	defer closing()
	err = stream.Send(req)
	mu.Lock()
	sent = true
	if abandoned {
		stream.CloseRequest()
	}
	mu.Unlock()
	if errors.Is(err, io.EOF) {
		err = nil // the manager ended the stream: Receive says why
	}
	if err == nil {
		resp, err = stream.Receive()
	}
	mu.Lock()
	finished = true // abandon does nothing from here on
	mu.Unlock()
	if abandoned || err != nil {
		s.dropLocked() // not to be used again
	}
	switch {
	case err == nil:
		return resp, true, nil
	case ctx.Err() != nil:
		return nil, true, ctx.Err()
	case abandoned: // close
		return nil, false, nil
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnimplemented: // a manager older than Submits
		s.off.Store(true)
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeUnauthenticated,
		connect.CodeResourceExhausted, connect.CodeNotFound, connect.CodePermissionDenied:
		return nil, true, err // the manager's answer to this submit
	}
	return nil, false, nil
}

// dropLocked ends the stream; the next submit opens another.
func (s *submitStream) dropLocked() {
	s.cancel()
	s.stream.CloseRequest()
	s.stream.CloseResponse()
	s.stream, s.cancel = nil, nil
}

// close ends the stream, for good, once the submit using it has returned.
func (s *submitStream) close() {
	if s == nil {
		return
	}
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		s.dropLocked()
	}
}
