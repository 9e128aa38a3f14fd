package trellis

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// scriptedSubmits serves Submits by the request's session: "refuse" is
// refused, "break" breaks the stream, "hang" waits for the stream's end;
// any other is answered with the number of its tasks.
type scriptedSubmits struct {
	trellisv1connect.UnimplementedManagerHandler
	streams atomic.Int32
	hung    chan struct{} // a "hang" request arrived
}

func (f *scriptedSubmits) Submits(ctx context.Context, stream *connect.BidiStream[pb.SubmitRequest, pb.SubmitResponse]) error {
	f.streams.Add(1)
	for {
		req, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch req.Session {
		case "refuse":
			return connect.NewError(connect.CodeInvalidArgument, errors.New("refused"))
		case "break":
			return connect.NewError(connect.CodeUnavailable, errors.New("going away"))
		case "hang":
			f.hung <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		if err := stream.Send(&pb.SubmitResponse{TaskIds: []uint64{uint64(len(req.Tasks))}}); err != nil {
			return err
		}
	}
}

// submitsTo returns a submit stream to h served over h2c.
func submitsTo(t *testing.T, h trellisv1connect.ManagerHandler) *submitStream {
	t.Helper()
	_, handler := trellisv1connect.NewManagerHandler(h)
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	s := newSubmitStream(trellisv1connect.NewManagerClient(&http.Client{Transport: tr}, srv.URL).Submits)
	t.Cleanup(s.close)
	return s
}

func TestSubmitStream(t *testing.T) {
	ctx := context.Background()
	f := &scriptedSubmits{hung: make(chan struct{}, 1)}
	s := submitsTo(t, f)
	answered := func(t *testing.T, tasks int) {
		t.Helper()
		resp, used, err := s.submit(ctx, &pb.SubmitRequest{Session: "s", Tasks: make([]*pb.TaskSpec, tasks)})
		if !used || err != nil || len(resp.GetTaskIds()) != 1 || resp.TaskIds[0] != uint64(tasks) {
			t.Fatalf("submit of %d tasks: got %v, used %v, %v; want [%d] on the stream", tasks, resp, used, err, tasks)
		}
	}
	streams := func(t *testing.T, want int32) {
		t.Helper()
		if got := f.streams.Load(); got != want {
			t.Errorf("streams opened: got %d, want %d", got, want)
		}
	}

	t.Run("one stream for many submits", func(t *testing.T) {
		answered(t, 1)
		answered(t, 2)
		answered(t, 3)
		streams(t, 1)
	})
	t.Run("a refusal is the answer; the next submit opens a stream", func(t *testing.T) {
		_, used, err := s.submit(ctx, &pb.SubmitRequest{Session: "refuse"})
		if !used || connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("refused submit: got used %v, %v; want used, invalid argument", used, err)
		}
		answered(t, 1)
		streams(t, 2)
	})
	t.Run("a broken stream is no answer: the submit goes unary", func(t *testing.T) {
		if _, used, err := s.submit(ctx, &pb.SubmitRequest{Session: "break"}); used || err != nil {
			t.Errorf("submit on a broken stream: got used %v, %v; want not used, no error", used, err)
		}
		answered(t, 1)
		streams(t, 3)
	})
	t.Run("busy, then the waiting submit's context ends", func(t *testing.T) {
		hctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type result struct {
			used bool
			err  error
		}
		done := make(chan result, 1)
		go func() { // exits when the server answers or hctx ends
			_, used, err := s.submit(hctx, &pb.SubmitRequest{Session: "hang"})
			done <- result{used, err}
		}()
		<-f.hung
		if _, used, err := s.submit(ctx, &pb.SubmitRequest{Session: "s"}); used || err != nil {
			t.Errorf("submit while the stream is in use: got used %v, %v; want not used (unary)", used, err)
		}
		cancel()
		if r := <-done; !r.used || !errors.Is(r.err, context.Canceled) {
			t.Errorf("submit whose context ended: got used %v, %v; want used, context canceled", r.used, r.err)
		}
		answered(t, 1)
		streams(t, 4)
	})
	t.Run("a large submit goes unary", func(t *testing.T) {
		big := &pb.SubmitRequest{Session: "s", Tasks: []*pb.TaskSpec{{Command: strings.Repeat("x", maxStreamSubmit)}}}
		if _, used, err := s.submit(ctx, big); used || err != nil {
			t.Errorf("submit of %d bytes: got used %v, %v; want not used", maxStreamSubmit, used, err)
		}
		streams(t, 4)
	})
	t.Run("closed", func(t *testing.T) {
		s.close()
		if _, used, err := s.submit(ctx, &pb.SubmitRequest{Session: "s"}); used || err != nil {
			t.Errorf("submit after close: got used %v, %v; want not used", used, err)
		}
	})
}

// With a manager that does not serve Submits, a submit goes unary, and
// the later ones do not try the stream again.
func TestSubmitStreamNotServed(t *testing.T) {
	s := submitsTo(t, trellisv1connect.UnimplementedManagerHandler{})
	for i := range 2 {
		if _, used, err := s.submit(context.Background(), &pb.SubmitRequest{Session: "s"}); used || err != nil {
			t.Errorf("submit %d: got used %v, %v; want not used", i, used, err)
		}
		if !s.off.Load() {
			t.Errorf("submit %d: the stream is still tried", i)
		}
	}
}
