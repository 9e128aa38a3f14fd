package trellis

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"trellis/internal/framed"
	"trellis/internal/manager"
)

// startNetManager runs a manager on 127.0.0.1 with secret "s".
func startNetManager(t *testing.T) *manager.Manager {
	t.Helper()
	m, err := manager.Listen(manager.Config{Listen: "127.0.0.1:0", Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }() // exits when the test ends
	t.Cleanup(func() { cancel(); <-done })
	return m
}

// A client over the network watches its session on a framed connection
// (its events arrive there), and over HTTP/2 from then on when the manager
// does not serve framed event streams (here a proxy answers 404 for it, as
// an older manager would).
func TestWatchFramed(t *testing.T) {
	m := startNetManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(addr string, wantFramed bool) {
		t.Helper()
		c, err := Dial(ctx, addr, WithSecret("s"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// No worker: the task waits until cancelled, and its end comes
		// back on the event stream.
		hs, err := c.Submit(ctx, NewTask("true"))
		if err != nil {
			t.Fatal(err)
		}
		if err := hs[0].Cancel(ctx); err != nil {
			t.Fatal(err)
		}
		if r, err := hs[0].Wait(ctx); err != nil || r.Kind != Cancelled {
			t.Fatalf("a cancelled task: %v, %v; want it cancelled, by the event stream", r, err)
		}
		if got := c.framedWatch.upgrades.Load() > 0; got != wantFramed || c.framedWatch.refused.Load() == wantFramed {
			t.Errorf("client of %s: framed streams opened %v, refused %v; want framed %v", addr, got, c.framedWatch.refused.Load(), wantFramed)
		}
	}
	check(m.Addr(), true)

	target, _ := url.Parse("http://" + m.Addr())
	proxy := httputil.NewSingleHostReverseProxy(target)
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	proxy.Transport = &http.Transport{Protocols: h2c}
	proxy.FlushInterval = -1
	mux := http.NewServeMux()
	mux.Handle("/", proxy)
	mux.HandleFunc(framed.WatchPath, http.NotFound)
	check(serveBoth(t, mux), false)
}

// serveBoth serves h on 127.0.0.1 over HTTP/1.1 and h2c until the test
// ends, and returns its address.
func serveBoth(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	both := new(http.Protocols)
	both.SetHTTP1(true)
	both.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: both}
	go srv.Serve(ln) // exits when the test's cleanup closes the server
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
