package manager

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// workFramed serves a worker's Work stream over its own connection
// (package framed): an HTTP/1.1 request that asks to upgrade to
// framed.Upgrade, whose secret requireSecret checked, is answered 101 and
// the connection is handed to the same session code as an HTTP/2 stream.
func (m *Manager) workFramed(w http.ResponseWriter, r *http.Request) {
	conn, br, ok := framed.Accept(w, r, framed.Upgrade, 0) // the liveness sweep pings the worker
	if !ok {
		return
	}
	defer conn.Close()
	stream := &framedWork{framed.New[*pb.ManagerMessage, *pb.WorkerMessage](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.WorkerMessage { return new(pb.WorkerMessage) })}
	ctx, cancel := m.untilStopping(r.Context())
	defer cancel()
	if err := m.work(ctx, stream, r.RemoteAddr); err != nil {
		stream.End(err) // the worker reads it as the error an HTTP/2 stream's end carries
		return
	}
	stream.End(nil)
}

// framedWork is a Work stream over a connection of its own.
type framedWork struct {
	*framed.Stream[*pb.ManagerMessage, *pb.WorkerMessage]
}

// Abort closes the connection, so that a Receive blocked on it returns
// (an HTTP/2 stream's ends when its handler returns).
func (s *framedWork) Abort() { s.Close() }

// aborter is a stream whose blocked Receive must be ended by hand.
type aborter interface{ Abort() }

var _ aborter = (*framedWork)(nil)

// watchFramed serves a client's Watch stream over its own connection, as
// workFramed does a worker's Work stream: the first frame is the
// WatchRequest, then the manager sends TaskEvents, and ends the stream
// with the error that ends the watch (a session that ended:
// FailedPrecondition). The client's closing the connection ends it.
func (m *Manager) watchFramed(w http.ResponseWriter, r *http.Request) {
	// Keepalives find a client whose host died after about 54 s of
	// silence (45 s idle, two probes 4.5 s apart: set, not measured), as
	// HTTP/2's pings did after 55 s.
	conn, br, ok := framed.Accept(w, r, framed.WatchUpgrade, proto.PingIdle)
	if !ok {
		return
	}
	defer conn.Close()
	stream := framed.New[*pb.TaskEvents, *pb.WatchRequest](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.WatchRequest { return new(pb.WatchRequest) })
	conn.SetReadDeadline(time.Now().Add(helloTimeout))
	req, err := stream.Receive()
	if n := goproto.Size(req); err == nil && n > smallRequestBytes { // the Watch RPC's bound
		err = fmt.Errorf("%w: a watch request of %d bytes, the limit is %d", framed.ErrTooLarge, n, smallRequestBytes)
	}
	if err != nil {
		stream.End(connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("read the watch request: %w", err)))
		return
	}
	conn.SetReadDeadline(time.Time{})
	ctx, cancel := m.untilStopping(r.Context())
	defer cancel()
	go func() { // exits when the client goes (its connection closes) or the watch ends (conn.Close)
		stream.Receive() // nothing more comes: any frame, or the end, ends the watch
		cancel()
	}()
	stream.End(m.WatchEvents(ctx, req, stream.Send))
}

// untilStopping returns a context that ends with ctx or when the manager
// stops: a hijacked connection is the manager's to end, as the server's
// shutdown does not see it.
func (m *Manager) untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() { // exits when the manager stops or ctx ends
		select {
		case <-m.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
