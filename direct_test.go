package trellis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis"
	"trellis/local"
)

// startDirect starts a local cluster over the network with one worker and
// a client WithDirectCalls, installs testlib with slots, and calls it until
// the client holds a lease on it. The client is closed at the test's end.
func startDirect(ctx context.Context, t *testing.T, slots int) *trellis.Client {
	t.Helper()
	return startDirectTTL(ctx, t, slots, 0)
}

// startDirectTTL is startDirect with leases of the given TTL (0: the
// manager's default).
func startDirectTTL(ctx context.Context, t *testing.T, slots int, ttl time.Duration) *trellis.Client {
	t.Helper()
	c, err := local.Start(ctx, local.Config{Workers: 1, Workdir: t.TempDir(), Network: true, LeaseTTL: ttl}, trellis.WithDirectCalls())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Install(ctx, testLibrary("testlib", slots)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.DirectLease("testlib") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no lease on testlib within 30 s")
		}
		if got, err := c.Call(ctx, "testlib", "add", []byte("[1,2]")); err != nil || string(got) != "3" {
			t.Fatalf("add(1,2) = %q, %v", got, err)
		}
	}
	return c
}

// TestDirectCallsOverTheNetwork: with WithDirectCalls, concurrent blocking
// calls go straight to the worker once a lease is lent (more calls than
// leased slots go through the manager), with their own results; a
// function's error comes back as a CallError. Run it with -race: the
// client's lease and stream, the worker's lease table and the manager meet.
func TestDirectCallsOverTheNetwork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startDirect(ctx, t, 4)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() { // exits when its calls end
			defer wg.Done()
			for i := range 25 {
				got, err := c.Call(ctx, "testlib", "add", fmt.Appendf(nil, "[%d,%d]", g, i))
				if err != nil || string(got) != fmt.Sprint(g+i) {
					t.Errorf("add(%d,%d) = %q, %v", g, i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	_, err := c.Call(ctx, "testlib", "fail", []byte(`"fly"`))
	var ce *trellis.CallError
	if !errors.As(err, &ce) || ce.Result.Kind != trellis.Failed || !strings.Contains(ce.Result.Message, "cannot fly") {
		t.Fatalf("fail(fly) = %v; want a failed call saying cannot fly", err)
	}
	if sent, fell := c.DirectStats(); sent-fell < 100 {
		t.Errorf("%d calls went direct (%d fell back); want most of the 200", sent, fell)
	}
	if framed, http2 := trellis.DirectStreams(c); framed == 0 || http2 != 0 {
		t.Errorf("lease streams: %d framed, %d over HTTP/2; want them framed", framed, http2)
	}
}

// TestDirectCallCancelledKeepsLease: one of several concurrent direct
// calls on a lease is cancelled while it runs; it returns the context's
// error, the lease stays (the same one, its stream open), the others
// complete direct and so does the next call: none fell back.
func TestDirectCallCancelledKeepsLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startDirect(ctx, t, 8)
	deadline := time.Now().Add(30 * time.Second)
	lease := c.DirectLease("testlib")
	sent0, fell0 := c.DirectStats()
	cctx, ccancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { // exits when the call returns (it is cancelled)
		_, err := c.Call(cctx, "testlib", "sleep", []byte("60000"))
		cancelled <- err
	}()
	const others = 4
	var wg sync.WaitGroup
	for i := range others {
		wg.Add(1)
		go func() { // exits when its call ends
			defer wg.Done()
			if got, err := c.Call(ctx, "testlib", "sleep", []byte("1000")); err != nil || string(got) != "1000" {
				t.Errorf("call %d: sleep(1000) = %q, %v", i, got, err)
			}
		}()
	}
	for sent, _ := c.DirectStats(); sent < sent0+others+1; sent, _ = c.DirectStats() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls sent direct within 30 s", sent-sent0, others+1)
		}
		time.Sleep(time.Millisecond)
	}
	ccancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled call returned %v; want context.Canceled", err)
	}
	if got := c.DirectLease("testlib"); got != lease {
		t.Fatalf("after one call was cancelled, the client's lease is %d; want %d still", got, lease)
	}
	wg.Wait()
	if got, err := c.Call(ctx, "testlib", "add", []byte("[2,3]")); err != nil || string(got) != "5" {
		t.Fatalf("add(2,3) = %q, %v", got, err)
	}
	if sent, fell := c.DirectStats(); sent != sent0+others+2 || fell != fell0 {
		t.Errorf("%d calls sent direct, %d fell back, since the lease was lent; want %d and none", sent-sent0, fell-fell0, others+2)
	}
	if got := c.DirectLease("testlib"); got != lease {
		t.Errorf("the client's lease is %d at the end; want %d still", got, lease)
	}
}

// TestDirectSubmit: with WithDirectCalls, a Submit of plain calls of one
// library goes on the lease: more calls than its slots queue at the client
// and go as slots free, each handle gets its own result (a function's
// failure too), and none went through the manager (handles without IDs). A
// Submit with a call that cannot go direct (a key of its own) goes through
// the manager. A direct call's handle cannot cancel it. Two Submits at once
// share the lease. Run it with -race.
func TestDirectSubmit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startDirect(ctx, t, 4)
	sent0, fell0 := c.DirectStats()
	const n = 300
	calls := make([]*trellis.Task, n)
	for i := range calls {
		calls[i] = trellis.NewCall("testlib", "add", fmt.Appendf(nil, "[%d,1]", i))
	}
	calls = append(calls, trellis.NewCall("testlib", "fail", []byte(`"fly"`)))
	hs, err := c.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		r, err := h.Wait(ctx)
		switch {
		case err != nil:
			t.Fatalf("call %d: %v", i, err)
		case h.ID != 0:
			t.Errorf("call %d has task ID %d; want 0 (direct)", i, h.ID)
		case i < n && (!r.OK() || string(r.Output) != fmt.Sprint(i+1)):
			t.Errorf("add(%d,1) = %q, %v", i, r.Output, r.Err())
		case i == n && (r.Kind != trellis.Failed || !strings.Contains(r.Message, "cannot fly")):
			t.Errorf("fail(fly) = %v, %q; want a failed call saying cannot fly", r.Kind, r.Message)
		}
	}
	if err := hs[0].Cancel(ctx); !errors.Is(err, trellis.ErrInvalid) {
		t.Errorf("Cancel of a direct call: %v; want ErrInvalid (it cannot be cancelled)", err)
	}
	if sent, fell := c.DirectStats(); sent-sent0 != n+1 || fell != fell0 {
		t.Errorf("%d calls sent direct, %d fell back; want %d and none", sent-sent0, fell-fell0, n+1)
	}
	// Two Submits at once share the lease's window: both finish, direct.
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() { // exits when its calls are done
			defer wg.Done()
			calls := make([]*trellis.Task, 100)
			for i := range calls {
				calls[i] = trellis.NewCall("testlib", "add", fmt.Appendf(nil, "[%d,%d]", g, i))
			}
			hs, err := c.Submit(ctx, calls...)
			if err != nil {
				t.Error(err)
				return
			}
			for i, h := range hs {
				if r, err := h.Wait(ctx); err != nil || string(r.Output) != fmt.Sprint(g+i) {
					t.Errorf("Submit %d, add(%d,%d) = %v, %v", g, g, i, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if sent, fell := c.DirectStats(); sent-sent0 != n+201 || fell != fell0 {
		t.Errorf("%d calls sent direct, %d fell back; want %d and none", sent-sent0, fell-fell0, n+201)
	}
	keyed := trellis.NewCall("testlib", "add", []byte("[2,2]"))
	keyed.Key = "mine"
	hs, err = c.Submit(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := hs[0].Wait(ctx); err != nil || string(r.Output) != "4" || hs[0].ID == 0 {
		t.Errorf("a keyed call: ID %d, %v, %v; want 4 through the manager (an ID)", hs[0].ID, r, err)
	}
}

// TestDirectSubmitSpreads: a Submit of more calls than one lease's window
// takes further leases on the library's other ready instances and spreads
// its calls over them: every call goes direct, with its own result.
func TestDirectSubmitSpreads(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := local.Start(ctx, local.Config{Workers: 1, Cores: 2, Workdir: t.TempDir(), Network: true}, trellis.WithDirectCalls())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lib := testLibrary("testlib", 2)
	lib.Resources.Cores, lib.Eager = 0.5, 2
	if err := c.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ready := 0; ready < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 instances ready after 30 s", ready)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ready = 0
		for _, in := range st.Libraries[0].Instances {
			if in.Ready {
				ready++
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	const n = 200
	calls := make([]*trellis.Task, n)
	for i := range calls {
		calls[i] = trellis.NewCall("testlib", "add", fmt.Appendf(nil, "[%d,2]", i))
	}
	hs, err := c.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if r, err := h.Wait(ctx); err != nil || !r.OK() || string(r.Output) != fmt.Sprint(i+2) {
			t.Fatalf("add(%d,2) = %v, %v", i, r, err)
		}
	}
	if sent, fell := c.DirectStats(); sent != n || fell != 0 {
		t.Errorf("%d calls sent direct, %d fell back; want %d and none", sent, fell, n)
	}
	if got := c.DirectLeases("testlib"); got != 2 {
		t.Errorf("the client holds %d leases on testlib; want 2, one per instance", got)
	}
}

// TestDirectSubmitOnBrokenStream: the stream of the client's lease breaks
// while no call is on it (its worker's connection lost); a Submit of two
// calls then takes the lease, fails to send them, and sends both through
// the manager: they finish, with their results.
func TestDirectSubmitOnBrokenStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startDirect(ctx, t, 4)
	trellis.BreakDirectStream(c, "testlib")
	_, fell0 := c.DirectStats()
	hs, err := c.Submit(ctx, trellis.NewCall("testlib", "add", []byte("[1,1]")), trellis.NewCall("testlib", "add", []byte("[1,2]")))
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second) // a hang, not a speed: they finish in about a second
	defer wcancel()
	for i, h := range hs {
		if r, err := h.Wait(wctx); err != nil || !r.OK() || string(r.Output) != fmt.Sprint(i+2) {
			t.Errorf("add(1,%d) after the lease's stream broke = %v, %v; want %d through the manager", i+1, r, err, i+2)
		}
	}
	if _, fell := c.DirectStats(); fell-fell0 != 2 {
		t.Errorf("%d calls fell back to the manager; want 2", fell-fell0)
	}
}

// TestDirectSubmitWhileClosing: Submits of calls on a lease go on while
// the client closes, without waiting for their calls. Each Submit either
// returns ErrClosed or handles whose calls end (with their results, or
// ErrClosed); once Close and the Submits have returned, no stream of a
// lease is open. Run it with -race: Close waits for the Submits' pumps as
// they start.
func TestDirectSubmitWhileClosing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startDirect(ctx, t, 4)
	var wg sync.WaitGroup
	handles := make([][]*trellis.Handle, 4)
	for g := range handles {
		wg.Add(1)
		go func() { // exits when a Submit says the client closed
			defer wg.Done()
			for i := 0; ; i++ {
				hs, err := c.Submit(ctx, trellis.NewCall("testlib", "add", fmt.Appendf(nil, "[%d,%d]", g, i)))
				if errors.Is(err, trellis.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Submit while the client closes: %v; want handles or ErrClosed", err)
					return
				}
				handles[g] = append(handles[g], hs...)
			}
		}()
	}
	for sent, _ := c.DirectStats(); sent < 100; sent, _ = c.DirectStats() { // some went direct
		if ctx.Err() != nil {
			t.Fatalf("%d calls sent direct within a minute", sent)
		}
		time.Sleep(time.Millisecond)
	}
	c.Close()
	wg.Wait()
	for _, hs := range handles {
		for _, h := range hs {
			if _, err := h.Wait(ctx); err != nil && !errors.Is(err, trellis.ErrClosed) {
				t.Fatalf("a call submitted while the client closes: %v; want its result or ErrClosed", err)
			}
		}
	}
	if n := trellis.DirectStreamsOpen(c); n != 0 {
		t.Errorf("%d lease streams open after Close; want none", n)
	}
}

// TestSubmitAfterClose: a client WithDirectCalls runs a command (not a
// call: through the manager); once it closed, a Submit says so
// (ErrClosed), whether its tasks would go on a lease or through the
// manager.
func TestSubmitAfterClose(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := startDirect(ctx, t, 4)
	hs, err := c.Submit(ctx, trellis.NewTask("true"))
	if err != nil {
		t.Fatalf("Submit of a command: %v", err)
	}
	if r, err := hs[0].Wait(ctx); err != nil || !r.OK() {
		t.Fatalf("a command: %v, %v; want it done", r, err)
	}
	c.Close()
	keyed := trellis.NewCall("testlib", "add", []byte("[2,2]"))
	keyed.Key = "mine"
	for name, task := range map[string]*trellis.Task{"a call on the lease": trellis.NewCall("testlib", "add", []byte("[1,1]")), "a keyed call": keyed, "a command": trellis.NewTask("true")} {
		if hs, err := c.Submit(ctx, task); !errors.Is(err, trellis.ErrClosed) {
			t.Errorf("Submit of %s after Close = %d handles, %v; want ErrClosed", name, len(hs), err)
		}
	}
}

// TestDirectLargeResult: a direct call whose result is over what a worker
// sends inline through the manager (1 MiB) has it inline in its answer, by
// Call and by Submit. One over what an answer carries (16 MiB) ran on the
// worker, which says so: that call alone runs again through the manager,
// by Call and by Submit (the Submit's other calls stay on the lease), the
// lease is kept, and the manager counts both runs.
func TestDirectLargeResult(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A lease outlasts the slowest call here: under the race detector on a
	// slow machine a 20 MB result takes longer than the default 10 s, and
	// a lease that ends while it runs is not what this test is about.
	c := startDirectTTL(ctx, t, 2, time.Minute)
	want := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }
	sent0, fell0 := c.DirectStats()
	if got, err := c.Call(ctx, "testlib", "big", []byte("3000000")); err != nil || string(got) != want(3000000) {
		t.Fatalf("big(3000000) = %d bytes, %v", len(got), err)
	}
	hs, err := c.Submit(ctx, trellis.NewCall("testlib", "big", []byte("3000000")), trellis.NewCall("testlib", "big", []byte("5")))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []int{3000000, 5} {
		r, err := hs[i].Wait(ctx)
		if err != nil || !r.OK() || string(r.Output) != want(n) {
			t.Fatalf("submitted big(%d): %d bytes, %v, %v", n, len(r.Output), r.Err(), err)
		}
	}
	if sent, fell := c.DirectStats(); sent-sent0 != 3 || fell != fell0 {
		t.Errorf("%d calls went direct, %d fell back; want 3 direct", sent-sent0, fell-fell0)
	}
	done0 := callsDone(ctx, t, c)
	lease := c.DirectLease("testlib")
	if got, err := c.Call(ctx, "testlib", "big", []byte("20000000")); err != nil || string(got) != want(20000000) {
		t.Fatalf("big(20000000) = %d bytes, %v", len(got), err)
	}
	if sent, fell := c.DirectStats(); sent-sent0 != 4 || fell-fell0 != 1 {
		t.Errorf("after a result of 20 MB: %d calls went direct, %d fell back; want 4 and 1", sent-sent0, fell-fell0)
	}
	if got := c.DirectLease("testlib"); got != lease {
		t.Errorf("after a result of 20 MB by Call: lease %d; want lease %d kept", got, lease)
	}
	// A Submit with more calls than the lease's window: the 20 MB one
	// through the manager, the others on the lease.
	tasks := []*trellis.Task{trellis.NewCall("testlib", "big", []byte("20000000"))}
	for range 20 {
		tasks = append(tasks, trellis.NewCall("testlib", "big", []byte("5")))
	}
	hs, err = c.Submit(ctx, tasks...)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		n := 5
		if i == 0 {
			n = 20000000
		}
		r, err := h.Wait(ctx)
		if err != nil || !r.OK() || string(r.Output) != want(n) {
			t.Fatalf("submitted call %d, big(%d): %d bytes, %v, %v", i, n, len(r.Output), r.Err(), err)
		}
	}
	if sent, fell := c.DirectStats(); sent-sent0 != 4+21 || fell-fell0 != 2 {
		t.Errorf("after a Submit with a result of 20 MB: %d calls went direct, %d fell back; want 25 and 2", sent-sent0, fell-fell0)
	}
	if got := c.DirectLease("testlib"); got != lease {
		t.Errorf("after a result of 20 MB by Submit: lease %d; want lease %d kept", got, lease)
	}
	// Each 20 MB call ran twice: on the worker (reported) and through the
	// manager.
	deadline := time.Now().Add(10 * time.Second)
	for done := callsDone(ctx, t, c); done != done0+2+2+20; done = callsDone(ctx, t, c) {
		if time.Now().After(deadline) {
			t.Fatalf("the manager counts %d calls done since the 20 MB ones began; want %d (each 20 MB call twice)", done-done0, 2+2+20)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// callsDone returns how many calls of testlib the manager counts done.
func callsDone(ctx context.Context, t *testing.T, c *trellis.Client) int {
	t.Helper()
	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range s.Libraries {
		if l.Name == "testlib" {
			return l.CallsDone
		}
	}
	t.Fatal("no library testlib in the status")
	return 0
}
