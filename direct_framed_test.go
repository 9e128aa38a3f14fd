package trellis

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// echoWorker is a worker's Worker service as an older version serves it
// (HTTP/2 only): each call's answer is its function's name.
type echoWorker struct {
	trellisv1connect.UnimplementedWorkerHandler
}

func (echoWorker) Calls(ctx context.Context, s *connect.BidiStream[pb.DirectCallRequest, pb.DirectCallResponse]) error {
	for {
		req, err := s.Receive()
		if err != nil {
			return nil
		}
		out := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Result: []byte(req.Function)}
		if err := s.Send(&pb.DirectCallResponse{Key: req.Key, Outcome: out}); err != nil {
			return err
		}
	}
}

// framedEcho serves framed Calls streams as a worker of this version
// does: each call's answer is its function's name.
func framedEcho(w http.ResponseWriter, r *http.Request) {
	conn, br, ok := framed.Accept(w, r, framed.CallsUpgrade, time.Minute)
	if !ok {
		return
	}
	s := framed.New[*pb.DirectCallResponse, *pb.DirectCallRequest](conn, br, proto.MaxMessageBytes, 0, func() *pb.DirectCallRequest { return new(pb.DirectCallRequest) })
	defer s.Close()
	for {
		req, err := s.Receive()
		if err != nil {
			return
		}
		out := &pb.Outcome{Kind: pb.ResultKind_RESULT_KIND_SUCCESS, Result: []byte(req.Function)}
		if err := s.Send(&pb.DirectCallResponse{Key: req.Key, Outcome: out}); err != nil {
			return
		}
	}
}

// A worker that does not serve framed call streams (an older version: 404)
// gets a lease's calls over HTTP/2; the client asks it once, and opens its
// further streams to it over HTTP/2 from then on. A worker of this
// version, in the same cluster, still gets framed streams.
func TestCallsFallBackToHTTP2(t *testing.T) {
	var asked atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc(framed.CallsPath, func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.NotFound(w, r)
	})
	mux.Handle(trellisv1connect.NewWorkerHandler(echoWorker{}))
	older := serveBoth(t, mux)
	current := http.NewServeMux()
	current.HandleFunc(framed.CallsPath, framedEcho)
	newer := serveBoth(t, current)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newClient("127.0.0.1:1", []Option{WithDirectCalls()}) // no manager: only the workers are asked
	d := c.direct
	for i, s := range []struct{ fn, addr string }{{"first", older}, {"second", older}, {"third", newer}} {
		d.mu.Lock()
		l := &clientLease{}
		d.openLocked(c, l, &pb.LeaseResponse{Lease: uint64(i + 1), WorkerAddr: s.addr, Token: "t", Slots: 1})
		d.mu.Unlock()
		resp := l.rpc.call(ctx, &pb.DirectCallRequest{Lease: l.id, Token: l.token, Key: s.fn, Function: s.fn})
		if got := string(resp.GetOutcome().GetResult()); got != s.fn {
			t.Fatalf("call %q on stream %d: %v; want its answer", s.fn, i+1, resp)
		}
		l.rpc.stop()
	}
	if n := asked.Load(); n != 1 || d.framedStreams.Load() != 1 || d.http2Streams.Load() != 2 {
		t.Errorf("the older worker was asked for a framed stream %d times; streams %d framed, %d over HTTP/2; want asked once, its two over HTTP/2 and the newer one's framed",
			n, d.framedStreams.Load(), d.http2Streams.Load())
	}
	d.close()
}
