package worker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"trellis/internal/framed"
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
