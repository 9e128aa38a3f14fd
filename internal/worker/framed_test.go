package worker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"trellis/internal/framed"
	"trellis/internal/proto"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/worker/resources"
)

// A manager that does not serve the framed transport (an older version:
// 404) gets the Work stream over HTTP/2 from a worker with TransportAuto,
// from then on; one with TransportFramed fails with a message that says
// what to do.
func TestFramedFallsBackToHTTP2(t *testing.T) {
	asked := 0
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == framed.Path {
			asked++
		}
		http.NotFound(w, r)
	}))
	defer old.Close()
	mk := func(transport string) *Worker {
		w, err := New(Config{Manager: strings.TrimPrefix(old.URL, "http://"), Secret: "s", Name: "w", Transport: transport,
			Resources: resources.Resources{MilliCores: 1000, MemoryMB: 64, DiskMB: 64}, Workdir: t.TempDir(), FileServer: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	auto := mk(TransportAuto)
	for i := range 2 {
		if s, ok := auto.openStream(ctx).(httpStream); !ok {
			t.Fatalf("auto, stream %d: %T; want the HTTP/2 stream", i, s)
		}
	}
	if asked != 1 {
		t.Errorf("auto asked the manager for the framed transport %d times; want once, then HTTP/2 from then on", asked)
	}

	err := mk(TransportFramed).openStream(ctx).Send(nil)
	if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), "start the worker without --transport framed") {
		t.Errorf("framed against a manager without it: %v; want unimplemented, saying what to do", err)
	}
}

// A framed Calls stream (Worker.Calls on a connection of its own): a call
// with its lease's token is answered on it (here refused as Unavailable:
// the lease's instance 3 does not run), matched by key; a wrong token ends
// the stream as Unauthenticated, as over HTTP/2; and the worker's stopping
// ends a stream its server handed over (the server's Close does not see
// it).
func TestCallsFramed(t *testing.T) {
	w := &Worker{}
	w.stopping, w.stopServing = context.WithCancel(context.Background())
	token := grantOne(&w.leases, 1)
	srv := httptest.NewServer(w.withDirect(http.NotFoundHandler()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func() *framed.Stream[*pb.DirectCallRequest, *pb.DirectCallResponse] {
		t.Helper()
		conn, br, err := framed.Dial(ctx, strings.TrimPrefix(srv.URL, "http://"), nil, framed.CallsPath, framed.CallsUpgrade, http.Header{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		s := framed.New[*pb.DirectCallRequest, *pb.DirectCallResponse](conn, br, proto.MaxMessageBytes, 0,
			func() *pb.DirectCallResponse { return new(pb.DirectCallResponse) })
		t.Cleanup(func() { s.Close() })
		return s
	}

	s := open()
	if err := s.Send(&pb.DirectCallRequest{Lease: 1, Token: token, Key: "k1", Function: "f"}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Receive()
	if err != nil || resp.Key != "k1" || !strings.HasPrefix(resp.Refused, "unavailable") {
		t.Fatalf("a call on the lease: %v, %v; want k1 refused as unavailable (no instance 3 here)", resp, err)
	}
	if err := s.Send(&pb.DirectCallRequest{Lease: 1, Token: "not the lease's", Key: "k2"}); err != nil {
		t.Fatal(err)
	}
	if resp, err := s.Receive(); connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "token of lease 1") {
		t.Fatalf("a call with a wrong token: %v, %v; want the stream ended as unauthenticated, naming the lease", resp, err)
	}

	idle := open()
	if err := idle.Send(&pb.DirectCallRequest{Lease: 1, Token: token, Key: "k3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Receive(); err != nil {
		t.Fatal(err)
	}
	w.stopServing()
	ended := make(chan error, 1)
	go func() { // exits when the stream ends or gives a message
		_, err := idle.Receive()
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("after the worker stopped, the stream gave a message; want it ended")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream is still open 10 s after the worker stopped")
	}
}
