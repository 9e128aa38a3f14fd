package trellis

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
)

// watchKeepIdle is how long a framed Watch stream may be silent before
// keepalives probe it: a dead manager's host is then found after about
// 18 s (15 s idle, two probes 1.5 s apart: set, not measured), where the
// HTTP/2 client's pings took 15 s and 10 s more.
const watchKeepIdle = 15 * time.Second

// framedWatch opens a session's event stream on a connection of its own
// (package framed: less CPU per message on both ends than an HTTP/2
// stream), and falls back to the Watch RPC, from then on, with a manager
// that does not serve it (an older version).
type framedWatch struct {
	c        *Client
	http2    func(ctx context.Context, req *pb.WatchRequest) (eventStream, error)
	refused  atomic.Bool
	upgrades atomic.Int64 // framed streams opened (tests)
}

func (f *framedWatch) open(ctx context.Context, req *pb.WatchRequest) (eventStream, error) {
	if f.refused.Load() {
		return f.http2(ctx, req)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+f.c.secret)
	conn, br, err := framed.Dial(ctx, f.c.addr, f.c.tls, framed.WatchPath, framed.WatchUpgrade, h, watchKeepIdle)
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		f.refused.Store(true)
		f.c.log.Info("the manager does not serve framed event streams (an older version): watching over HTTP/2")
		return f.http2(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	s := framed.New[*pb.WatchRequest, *pb.TaskEvents](conn, br, proto.MaxMessageBytes, proto.CompressMinBytes,
		func() *pb.TaskEvents { return new(pb.TaskEvents) })
	if err := s.Send(req); err != nil {
		s.Close()
		return nil, err
	}
	f.upgrades.Add(1)
	return &framedEvents{s: s}, nil
}

// framedEvents is an eventStream on a framed connection.
type framedEvents struct {
	s   *framed.Stream[*pb.WatchRequest, *pb.TaskEvents]
	msg *pb.TaskEvents
	err error
}

func (e *framedEvents) Receive() bool {
	m, err := e.s.Receive()
	if err != nil {
		if err != io.EOF {
			e.err = err
		}
		return false
	}
	e.msg = m
	return true
}

func (e *framedEvents) Msg() *pb.TaskEvents { return e.msg }
func (e *framedEvents) Err() error          { return e.err }
func (e *framedEvents) Close() error        { return e.s.Close() }
