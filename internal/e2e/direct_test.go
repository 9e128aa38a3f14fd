package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	goproto "google.golang.org/protobuf/proto"

	"trellis"
	"trellis/internal/journal/journaltest"
	pb "trellis/internal/proto/trellisv1"
	"trellis/internal/proto/trellisv1/trellisv1connect"
)

// directCluster starts a manager with flags, a worker named worker and a
// client that sends calls straight to workers, and installs lib.
func directCluster(t *testing.T, ctx context.Context, worker string, lib *trellis.Library, flags ...string) (*cluster, *proc, *trellis.Client) {
	t.Helper()
	needPython(t)
	c := newCluster(t, flags...)
	w := c.worker(worker, nil, "--cores", "1")
	cl := c.directClient()
	c.waitWorkers(cl, 1)
	if err := cl.Install(ctx, lib); err != nil {
		t.Fatal(err)
	}
	return c, w, cl
}

// directClient connects a client that sends calls straight to workers.
func (c *cluster) directClient() *trellis.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := trellis.Dial(ctx, c.addr, trellis.WithSecret(c.secret()), trellis.WithDirectCalls())
	if err != nil {
		c.t.Fatalf("Dial: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// repeatUntilDirect calls lib.repeat until a call went direct, checking
// each result, and returns how many calls it made.
func repeatUntilDirect(t *testing.T, ctx context.Context, cl *trellis.Client, lib string) (calls int) {
	t.Helper()
	waitFor(t, 30*time.Second, "a call sent straight to the worker", func() bool {
		calls++
		out, err := cl.Call(ctx, lib, "repeat", []byte("ab"))
		if err != nil || string(out) != "ababab" {
			t.Fatalf("repeat: %q, %v", out, err)
		}
		sent, fell := cl.DirectStats()
		return sent > fell
	})
	return calls
}

// TestDirectCalls: with WithDirectCalls, calls go straight to the worker
// that hosts the library's instance once the manager lent a lease; their
// results are right, and the manager counts every one (trellis status).
func TestDirectCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, cl := directCluster(t, ctx, "w", pythonLibrary("slow"))
	made := repeatUntilDirect(t, ctx, cl, "slow")
	sent0, fell0 := cl.DirectStats()
	const n = 40
	for i := range n {
		arg := fmt.Sprintf("%d.", i)
		out, err := cl.Call(ctx, "slow", "repeat", []byte(arg))
		if err != nil || string(out) != arg+arg+arg {
			t.Fatalf("call %d: %q, %v", i, out, err)
		}
	}
	// The same as one Submit: async calls on the lease.
	calls := make([]*trellis.Task, n)
	for i := range calls {
		calls[i] = trellis.NewCall("slow", "repeat", fmt.Appendf(nil, "%d,", i))
	}
	hs, err := cl.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		r, err := h.Wait(ctx)
		if arg := fmt.Sprintf("%d,", i); err != nil || !r.OK() || string(r.Output) != arg+arg+arg {
			t.Fatalf("submitted call %d: %v, %v", i, r, err)
		}
	}
	sent, fell := cl.DirectStats()
	if sent-sent0 != 2*n || fell != fell0 {
		t.Errorf("of %d calls, %d went direct and %d of those fell back to the manager; want all direct", 2*n, sent-sent0, fell-fell0)
	}
	// Every call, direct or not, is counted by the manager (its report
	// comes after the worker answered the client: wait for it).
	var total int
	waitFor(t, 20*time.Second, "the manager to count every call", func() bool {
		s, err := cl.Status(ctx)
		if err != nil || len(s.Libraries) != 1 {
			return false
		}
		total = s.Libraries[0].CallsDone
		return total == made+2*n && s.Calls.Finished == total && s.Calls.Succeeded == total && s.Calls.Failed == 0
	})
	code, out := runTrellis(t, "status", c.addr, "--secret-file", c.secretFile)
	if want := fmt.Sprintf("%d finished (%d succeeded, 0 failed)", total, total); code != 0 || !strings.Contains(out, want) {
		t.Errorf("trellis status (exit %d) does not say %q:\n%s", code, want, out)
	}
}

// TestDirectCallWrongToken: the worker refuses a direct call whose token
// is not that of the lease on it.
func TestDirectCallWrongToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, cl := directCluster(t, ctx, "w", pythonLibrary("slow"))
	if _, err := cl.Call(ctx, "slow", "repeat", []byte("x")); err != nil { // starts an instance
		t.Fatal(err)
	}
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: h2c}}
	secret := c.secret()
	mgr := trellisv1connect.NewManagerClient(hc, "http://"+c.addr, connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+secret)
			return next(ctx, req)
		}
	})))
	var lease *pb.LeaseResponse
	waitFor(t, 20*time.Second, "a lease", func() bool {
		r, err := mgr.Lease(ctx, connect.NewRequest(&pb.LeaseRequest{Session: cl.Session(), Library: "slow", Slots: 2}))
		if err == nil {
			lease = r.Msg
		}
		return err == nil
	})
	w := trellisv1connect.NewWorkerClient(hc, "http://"+lease.WorkerAddr)
	call := func(id uint64, token string) error {
		r, err := w.Call(ctx, connect.NewRequest(&pb.DirectCallRequest{Lease: id, Token: token, Key: "k", Function: "repeat", Args: []byte("y")}))
		if err == nil && string(r.Msg.GetOutcome().GetResult()) != "yyy" {
			return fmt.Errorf("result %q", r.Msg.GetOutcome().GetResult())
		}
		return err
	}
	for _, bad := range []struct {
		name  string
		id    uint64
		token string
	}{
		{"no token", lease.Lease, ""},
		{"a forged token", lease.Lease, "00" + lease.Token[2:]},
		{"the token of another lease", lease.Lease + 1, lease.Token},
	} {
		if err := call(bad.id, bad.token); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s: %v; want unauthenticated", bad.name, err)
		}
	}
	if err := call(lease.Lease, lease.Token); err != nil {
		t.Errorf("the lease's own token: %v", err)
	}
	// The same on the stream: a forged token ends it.
	st := w.Calls(ctx)
	if err := st.Send(&pb.DirectCallRequest{Lease: lease.Lease, Token: "00" + lease.Token[2:], Key: "k", Function: "repeat", Args: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Receive(); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("a forged token on Worker.Calls: %v; want unauthenticated", err)
	}
	st.CloseRequest()
	st.CloseResponse()
	// A packed message (more) whose second call has a forged token ends
	// the stream too, before either runs.
	st = w.Calls(ctx)
	good := &pb.DirectCallRequest{Lease: lease.Lease, Token: lease.Token, Key: "k1", Function: "repeat", Args: []byte("y")}
	if err := st.Send(&pb.DirectCallRequest{Lease: lease.Lease, Token: lease.Token, Key: "k0", Function: "repeat", Args: []byte("y"),
		More: []*pb.DirectCallRequest{{Lease: lease.Lease, Token: "00" + lease.Token[2:], Key: "k1", Function: "repeat", Args: []byte("y")}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Receive(); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("a forged token in a packed message on Worker.Calls: %v, %v; want unauthenticated", r, err)
	}
	st.CloseRequest()
	st.CloseResponse()
	// Packed calls with good tokens each get their answer, by key.
	st = w.Calls(ctx)
	if err := st.Send(&pb.DirectCallRequest{Lease: lease.Lease, Token: lease.Token, Key: "k0", Function: "repeat", Args: []byte("z"), More: []*pb.DirectCallRequest{good}}); err != nil {
		t.Fatal(err)
	}
	answers := map[string]string{}
	for len(answers) < 2 {
		r, err := st.Receive()
		if err != nil {
			t.Fatalf("packed calls on Worker.Calls: %v after answers %v", err, answers)
		}
		for _, a := range append([]*pb.DirectCallResponse{r}, r.More...) {
			answers[a.Key] = string(a.GetOutcome().GetResult()) + a.Refused
		}
	}
	if want := map[string]string{"k0": "zzz", "k1": "yyy"}; !maps.Equal(answers, want) {
		t.Errorf("packed calls answered %v, want %v", answers, want)
	}
	st.CloseRequest()
	st.CloseResponse()

	// Released by its client, the lease ends on the worker too.
	if _, err := mgr.Lease(ctx, connect.NewRequest(&pb.LeaseRequest{Session: cl.Session(), Library: "slow", Release: lease.Lease})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the released lease to end on the worker", func() bool {
		return connect.CodeOf(call(lease.Lease, lease.Token)) == connect.CodeNotFound
	})
}

// TestDirectCallsSurviveWorkerKill: SIGKILL the worker during a burst of
// direct calls: every call still ends with its own result, through the
// manager, in an instance on another worker.
func TestDirectCallsSurviveWorkerKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, victim, cl := directCluster(t, ctx, "victim", pythonLibrary("slow"))
	repeatUntilDirect(t, ctx, cl, "slow")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { // exits when the call ends
			defer wg.Done()
			out, err := cl.Call(ctx, "slow", "nap", fmt.Appendf(nil, `{"i":%d,"s":0.5}`, i))
			if want := fmt.Sprintf(`{"i":%d,`, i); err == nil && (len(out) < len(want) || string(out[:len(want)]) != want) {
				err = fmt.Errorf("returned %s", out)
			}
			errs[i] = err
		}()
	}
	waitFor(t, 30*time.Second, "direct calls running in the victim's library", func() bool {
		sent, _ := cl.DirectStats()
		return sent >= 2
	})
	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	c.worker("rescuer", nil, "--cores", "1")
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if _, fell := cl.DirectStats(); fell == 0 {
		t.Errorf("no direct call fell back to the manager: the worker was killed before any ran")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}

// TestDirectSubmitSurvivesWorkerKill: SIGKILL the worker while the calls
// of one Submit run on its lease (more than its slots: the rest wait at the
// client): every handle still gets its own result, those the worker had
// not answered through the manager, on another worker.
func TestDirectSubmitSurvivesWorkerKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, victim, cl := directCluster(t, ctx, "victim", pythonLibrary("slow"))
	repeatUntilDirect(t, ctx, cl, "slow")
	sent0, _ := cl.DirectStats()
	const n = 12
	calls := make([]*trellis.Task, n)
	for i := range calls {
		calls[i] = trellis.NewCall("slow", "nap", fmt.Appendf(nil, `{"i":%d,"s":0.5}`, i))
	}
	hs, err := cl.Submit(ctx, calls...)
	if err != nil {
		t.Fatal(err)
	}
	if sent, _ := cl.DirectStats(); sent-sent0 != n {
		t.Fatalf("%d of the %d submitted calls went direct; want all", sent-sent0, n)
	}
	victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 10*time.Second)
	c.worker("rescuer", nil, "--cores", "1")
	for i, h := range hs {
		r, err := h.Wait(ctx)
		if want := fmt.Sprintf(`{"i":%d,`, i); err != nil || !r.OK() || len(r.Output) < len(want) || string(r.Output[:len(want)]) != want {
			t.Errorf("call %d: %v, %v", i, r, err)
		}
	}
	if _, fell := cl.DirectStats(); fell == 0 {
		t.Errorf("no direct call fell back to the manager: the worker was killed before any ran")
	}
}

// TestDirectCallsOverTLS: in a cluster with TLS, direct calls go to the
// worker's file server over TLS (its certificate signed by the cluster CA,
// which the client trusts), with their results right.
func TestDirectCallsOverTLS(t *testing.T) {
	needPython(t)
	c := newCluster(t, "--tls", "auto", "--tls-dir", t.TempDir())
	ca, _ := tlsLine(t, c.manager)
	c.worker("w", nil, "--cores", "1", "--tls-ca", ca)
	cfg, err := trellis.ClusterTLS(c.addr, ca, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := trellis.Dial(ctx, c.addr, trellis.WithSecret(c.secret()), trellis.WithTLS(cfg), trellis.WithDirectCalls())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c.waitWorkers(cl, 1)
	if err := cl.Install(ctx, pythonLibrary("slow")); err != nil {
		t.Fatal(err)
	}
	repeatUntilDirect(t, ctx, cl, "slow")
	for i := range 10 {
		arg := fmt.Sprintf("tls%d.", i)
		if out, err := cl.Call(ctx, "slow", "repeat", []byte(arg)); err != nil || string(out) != arg+arg+arg {
			t.Fatalf("call %d: %q, %v", i, out, err)
		}
	}
	if sent, fell := cl.DirectStats(); fell != 0 || sent < 11 {
		t.Errorf("%d calls went direct, %d fell back; want 11 or more and none", sent, fell)
	}
}

// TestDirectCallsJournaled: with --state, the manager journals each direct
// call's end, and a snapshot folds those ends into counts: after a restart
// it counts them all again.
func TestDirectCallsJournaled(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, cl := directCluster(t, ctx, "w", pythonLibrary("slow"), "--state", state, "--snapshot-records", "8")
	made := repeatUntilDirect(t, ctx, cl, "slow")
	more := 20
	for i := range more {
		if _, err := cl.Call(ctx, "slow", "repeat", []byte("j")); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// The compactor looks each second and takes a snapshot once 8 records
	// came after the last one: while fewer did, a further call adds one.
	waitFor(t, time.Minute, "a snapshot of every record", func() bool {
		s, err := cl.Status(ctx)
		if err != nil || s.Journal == nil {
			return false
		}
		if s.Journal.LastSnapshot != nil && s.Journal.SinceSnapshot == 0 {
			return true
		}
		if s.Journal.SinceSnapshot < 8 {
			if _, err := cl.Call(ctx, "slow", "repeat", []byte("j")); err != nil {
				t.Fatalf("call %d: %v", more, err)
			}
			more++
		}
		return false
	})
	counted := func(cl *trellis.Client, total *int) func() bool {
		return func() bool {
			s, err := cl.Status(ctx)
			if err != nil || len(s.Libraries) != 1 {
				return false
			}
			*total = s.Libraries[0].CallsDone
			return *total == made+more && s.Calls.Succeeded == *total && s.Calls.Finished == *total
		}
	}
	var before, after int
	waitFor(t, 20*time.Second, "the manager to count every call", counted(cl, &before))
	sent, fell := cl.DirectStats()
	if sent < 20 {
		t.Fatalf("only %d calls went direct", sent)
	}
	cl.Close()
	c.manager.signal(t, syscall.SIGTERM)
	c.manager.wait(t, 20*time.Second)
	// The journal holds the direct calls' ends folded into counts, and the
	// ends of those that came after the snapshot (fewer than 8).
	var ends, folded uint64
	for _, b := range journaltest.Read(t, state) {
		var r pb.JournalRecord
		if err := goproto.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.GetDirectCallEnded() != nil {
			ends++
		}
		for _, n := range r.GetDirectCalls().GetCounts() {
			folded += n.Calls
		}
	}
	if ends+folded != sent-fell || ends >= 8 {
		t.Errorf("the journal holds the ends of %d direct calls and counts of %d more; want %d in all, most of them counted", ends, folded, sent-fell)
	}
	c.restartManager(t, state)
	waitFor(t, 20*time.Second, "the restarted manager to listen", func() bool {
		return strings.Contains(c.manager.Output(), "trellis manager listening on")
	})
	cl2 := c.client()
	waitFor(t, 20*time.Second, "the restarted manager to count every call", counted(cl2, &after))
	if after != before {
		t.Errorf("after a restart the manager counts %d calls, before it %d", after, before)
	}
}

// markLibrary's mark writes the file its arguments name (the call has
// reached the library), then sleeps.
const markLibrary = `import time
import trellis_library as tl
lib = tl.Library("mark")

@lib.function
def mark(args):
    with open(args["path"], "w") as f:
        f.write("running")
    time.sleep(args["s"])
    return args["i"]

@lib.function(raw=True)
def repeat(body):
    return body * 3

if __name__ == "__main__":
    lib.serve()
`

// TestDirectCallEndedAcrossManagerRestart: the manager (--state) is killed
// while a direct call runs on a worker; the call still returns to its
// client, and the worker reports its end to the restarted manager, which
// counts it.
func TestDirectCallEndedAcrossManagerRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lib := pythonLibrary("slow")
	lib.Name, lib.Inputs[1].File = "mark", trellis.Buffer([]byte(markLibrary))
	c, _, cl := directCluster(t, ctx, "w", lib, "--state", state)
	made := repeatUntilDirect(t, ctx, cl, "mark")
	calls := func(cl *trellis.Client, n int) func() bool {
		return func() bool {
			s, err := cl.Status(ctx)
			if err == nil && s.Calls.Succeeded != n {
				t.Logf("calls %+v, want %d", s.Calls, n)
			}
			return err == nil && s.Calls.Succeeded == n && s.Calls.Finished == n
		}
	}
	waitFor(t, 20*time.Second, "the manager to count the calls", calls(cl, made))
	marker := filepath.Join(t.TempDir(), "running")
	result := make(chan error, 1)
	go func() { // exits when the call returns
		out, err := cl.Call(ctx, "mark", "mark", fmt.Appendf(nil, `{"i":7,"s":2,"path":%q}`, marker))
		if err == nil && string(out) != "7" {
			err = fmt.Errorf("returned %s", out)
		}
		result <- err
	}()
	waitFor(t, 20*time.Second, "the call to run in the library", func() bool {
		_, err := os.Stat(marker)
		return err == nil
	})
	c.killManager(t)
	if err := <-result; err != nil {
		t.Fatalf("the direct call across the manager's loss: %v", err)
	}
	if sent, fell := cl.DirectStats(); fell != 0 {
		t.Errorf("%d of %d direct calls fell back to the manager; want none", fell, sent)
	}
	c.restartManager(t, state)
	waitFor(t, 20*time.Second, "the restarted manager to listen", func() bool {
		return strings.Contains(c.manager.Output(), "trellis manager listening on")
	})
	cl2 := c.client()
	waitFor(t, 30*time.Second, "the restarted manager to count the call that ended while it was down", calls(cl2, made+1))
}
