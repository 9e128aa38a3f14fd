package trellis

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
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

// A worker that does not serve framed call streams (an older version: 404)
// gets a lease's calls over HTTP/2; the client asks it once, and opens its
// further streams over HTTP/2 from then on.
func TestCallsFallBackToHTTP2(t *testing.T) {
	var asked atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc(framed.CallsPath, func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.NotFound(w, r)
	})
	mux.Handle(trellisv1connect.NewWorkerHandler(echoWorker{}))
	addr := serveBoth(t, mux)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newClient("127.0.0.1:1", []Option{WithDirectCalls()}) // no manager: only the worker is asked
	d := c.direct
	for i, fn := range []string{"first", "second"} {
		d.mu.Lock()
		l := &clientLease{}
		d.openLocked(c, l, &pb.LeaseResponse{Lease: uint64(i + 1), WorkerAddr: addr, Token: "t", Slots: 1})
		d.mu.Unlock()
		resp := l.rpc.call(ctx, &pb.DirectCallRequest{Lease: l.id, Token: l.token, Key: fn, Function: fn})
		if got := string(resp.GetOutcome().GetResult()); got != fn {
			t.Fatalf("call %q on stream %d: %v; want its answer over HTTP/2", fn, i+1, resp)
		}
		l.rpc.stop()
	}
	if n := asked.Load(); n != 1 || d.framedStreams.Load() != 0 || d.http2Streams.Load() != 2 {
		t.Errorf("the worker was asked for a framed stream %d times; streams %d framed, %d over HTTP/2; want asked once, both over HTTP/2",
			n, d.framedStreams.Load(), d.http2Streams.Load())
	}
	d.close()
}
