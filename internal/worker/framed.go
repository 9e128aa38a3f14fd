package worker

import (
	"context"
	"net/http"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// framedStream is the Work stream on a connection of its own (Config.Transport).
type framedStream struct {
	*framed.Stream[*pb.WorkerMessage, *pb.ManagerMessage]
}

// CloseSend tells the manager the worker sends no more: its Receive ends.
func (s framedStream) CloseSend() error { return s.End(nil) }

// failedStream is a stream that could not be opened: it fails as one that
// broke at once, with the reason.
type failedStream struct{ err error }

func (s failedStream) Send(*pb.WorkerMessage) error         { return s.err }
func (s failedStream) Receive() (*pb.ManagerMessage, error) { return nil, s.err }
func (s failedStream) CloseSend() error                     { return nil }

// dialFramed connects to the manager, over TLS when Config.TLS says so,
// and asks to upgrade the connection to a framed Work stream with the
// secret; the connection closes when ctx ends. A dead manager's host is
// found by keepalives after proto.PingIdle of silence, as HTTP/2's pings
// do. A refusal comes back as the connect error an HTTP/2 stream would
// carry (a wrong secret: Unauthenticated), so that the session treats both
// alike.
func (w *Worker) dialFramed(ctx context.Context) (framedStream, error) {
	h := http.Header{}
	w.authorize(h)
	conn, br, err := framed.Dial(ctx, w.cfg.Manager, w.cfg.TLS, framed.Path, framed.Upgrade, h, proto.PingIdle)
	if err != nil {
		return framedStream{}, err
	}
	return framedStream{framed.New[*pb.WorkerMessage, *pb.ManagerMessage](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.ManagerMessage { return new(pb.ManagerMessage) })}, nil
}
