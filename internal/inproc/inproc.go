// Package inproc connects two parts of one process with a stream of
// protobuf messages, as an HTTP/2 stream would, without the network: the
// embedded cluster (local.Start) joins its client and workers to
// its manager this way. Messages are cloned on the way, so that each side
// owns what it receives, as it would after decoding.
package inproc

import (
	"errors"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"
)

// ErrClosed is what Send returns once either end has closed.
var ErrClosed = errors.New("inproc: stream closed")

// half is one direction of a stream.
type half[M proto.Message] struct {
	ch       chan M
	sendDone chan struct{} // closed when the sender will send no more
	once     sync.Once
}

func newHalf[M proto.Message]() *half[M] {
	return &half[M]{ch: make(chan M, 256), sendDone: make(chan struct{})}
}

func (h *half[M]) closeSend() { h.once.Do(func() { close(h.sendDone) }) }

// End is one end of a stream: it sends Out and receives In.
type End[Out, In proto.Message] struct {
	out    *half[Out]
	in     *half[In]
	closed chan struct{} // shared by both ends: Close of either
	once   *sync.Once
}

// Pipe returns the two ends of a new stream.
func Pipe[A, B proto.Message]() (*End[A, B], *End[B, A]) {
	ab, ba := newHalf[A](), newHalf[B]()
	closed, once := make(chan struct{}), new(sync.Once)
	return &End[A, B]{out: ab, in: ba, closed: closed, once: once}, &End[B, A]{out: ba, in: ab, closed: closed, once: once}
}

// Send sends a copy of m. It blocks while the other end is 256 messages
// behind, and fails once either end has closed or this end half-closed.
func (e *End[Out, In]) Send(m Out) error {
	c := proto.Clone(m).(Out)
	select {
	case <-e.out.sendDone:
		return ErrClosed
	case <-e.closed:
		return ErrClosed
	default:
	}
	select {
	case e.out.ch <- c:
		return nil
	case <-e.closed:
		return ErrClosed
	}
}

// Receive returns the next message; io.EOF once the other end has
// half-closed and everything it sent is read, ErrClosed after a Close.
func (e *End[Out, In]) Receive() (In, error) {
	var zero In
	select {
	case m := <-e.in.ch:
		return m, nil
	case <-e.closed:
		return zero, ErrClosed
	case <-e.in.sendDone:
		select { // what was sent before the half-close is still due
		case m := <-e.in.ch:
			return m, nil
		default:
			return zero, io.EOF
		}
	}
}

// CloseSend tells the other end that no more messages come.
func (e *End[Out, In]) CloseSend() error {
	e.out.closeSend()
	return nil
}

// Close ends the stream both ways, for both ends.
func (e *End[Out, In]) Close() {
	e.once.Do(func() { close(e.closed) })
}
